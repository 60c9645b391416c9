"""A fake VASP for the tests: the executable ``fake_vasp.py`` (ASE EMT/LJ, writes the files aiida-vasp parses)
registered as a ``vasp.vasp`` code, and the header-only POTCAR family ``FAKE_PBE`` (H, C, O, Si, Li, Mg, Al). No real
POTCAR is shipped or needed."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAMILY = "FAKE_PBE"


def fake_potcar_family(root: Path, family: str = FAMILY) -> str:
    """Upload the fake family once per profile (writing its files under ``root``); return its name."""
    from aiida_vasp.data.potcar import PotcarData

    sys.path.insert(0, str(HERE))
    try:
        import fake_potcars
    finally:
        sys.path.remove(str(HERE))
    group = PotcarData.get_potcar_group(family)
    # a family uploaded before elements were added to the fake set gets the new ones (uploading adds what is missing)
    if group is None or set(fake_potcars.ELEMENTS) - {node.element for node in group.nodes}:
        folder = Path(root) / family
        fake_potcars.write_family(folder)
        PotcarData.upload_potcar_family(
            str(folder), family, "header-only fake POTCARs for tests", stop_if_existing=False
        )
    return family


def fake_vasp_code(computer, label: str = "fake-vasp"):
    """The fake executable as an ``InstalledCode`` of the ``vasp.vasp`` plugin on ``computer``."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_code(f"{label}@{computer.label}")
    except NotExistent:
        return orm.InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=str(HERE / "fake_vasp.py"),
            default_calc_job_plugin="vasp.vasp",
            description="fake VASP (ASE EMT / Lennard-Jones) for tests",
            # the fake's `#!/usr/bin/env python3` must find the Python that has ASE
            prepend_text=f"export PATH={Path(sys.executable).parent}:$PATH",
        ).store()


def fake_vasp_on_localhost() -> tuple:
    """What the example scripts' ``--fake`` uses: the fake executable as the code ``fake-vasp@localhost`` and the
    fake POTCAR family (files under ``~/.aiida-physgen/fake_potcars``), as ``(code, family name)``."""
    from aiida import orm

    return fake_vasp_code(orm.load_computer("localhost")), fake_potcar_family(
        Path.home() / ".aiida-physgen" / "fake_potcars"
    )
