"""docs/extending.md shows the code the tests run: every code block after a marker

    <!-- include: <path from the repository root> -->            the whole file
    <!-- include: <path>::<function or class name> -->            one top-level definition of a Python file

is that file (or definition), verbatim. After changing one of those files, refresh the page with

    python tests/test_docs_extending.py --write
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"
#: a marker, then the fenced block right after it (language tag and body)
BLOCK = re.compile(r"<!-- include: (?P<target>\S+) -->\n```(?P<language>\w*)\n(?P<body>.*?)```\n", re.DOTALL)


def source(target: str) -> str:
    """The text a marker names: a whole file, or one top-level definition (``path::name``) of a Python file."""
    path, _, name = target.partition("::")
    text = (ROOT / path).read_text(encoding="utf-8")
    if not name:
        return text
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            lines = text.splitlines(keepends=True)
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            return "".join(lines[start : node.end_lineno])
    raise ValueError(f"{target}: no top-level function or class {name!r} in {path}")


def refreshed(page: str) -> str:
    return BLOCK.sub(lambda m: f"<!-- include: {m['target']} -->\n```{m['language']}\n{source(m['target'])}```\n", page)


def test_every_marked_block_is_the_file_the_tests_run():
    page = PAGE.read_text(encoding="utf-8")
    blocks = list(BLOCK.finditer(page))
    targets = [m["target"] for m in blocks]
    # one example of each contract, and the package's pyproject that registers them
    for expected in (
        "tests/plugins/physgen_toy/pyproject.toml",
        "tests/plugins/physgen_toy/physgen_toy/family.py",
        "tests/plugins/physgen_toy/physgen_toy/validity.py",
        "tests/plugins/physgen_toy/physgen_toy/engine.py",
        "aiida_physgen/engines/vasp.py",
        "tests/plugins/physgen_toy/physgen_toy/assessor.py",
    ):
        assert expected in targets, expected
    assert page.count("<!-- include:") == len(blocks), "a marker without a fenced block right after it"
    stale = [m["target"] for m in blocks if m["body"] != source(m["target"])]
    assert not stale, f"docs/extending.md is out of date for {stale}: run python tests/test_docs_extending.py --write"


def test_the_examples_are_the_plugins_the_third_party_test_registers():
    import tomllib

    declared = tomllib.loads((ROOT / "tests/plugins/physgen_toy/pyproject.toml").read_text())["project"]
    modules = {value.split(":")[0] for group in declared["entry-points"].values() for value in group.values()}
    shown = {m["target"] for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8"))}
    for module in modules:
        assert f"tests/plugins/physgen_toy/{module.replace('.', '/')}.py" in shown, module


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    PAGE.write_text(refreshed(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"refreshed {PAGE}")
