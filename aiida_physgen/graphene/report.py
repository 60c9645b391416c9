"""The report of a ``physgen.rugan`` run: the label check (KS table), the models, the figures.

``aiida-physgen report PK`` calls :func:`print_rugan_report` when PK is a ``physgen.rugan`` run.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import IO

from aiida import orm

from ..ml.atomic_files import atomic_path
from ..screening.report import plot_loss_curves

__all__ = ["is_rugan_run", "rugan_summary", "print_rugan_report"]


def is_rugan_run(node) -> bool:
    node = orm.load_node(node) if not isinstance(node, orm.Node) else node
    return isinstance(node, orm.WorkflowNode) and node.process_type == "aiida.workflows:physgen.rugan"


def _load(node_or_pk) -> orm.WorkflowNode:
    node = orm.load_node(node_or_pk) if not isinstance(node_or_pk, orm.Node) else node_or_pk
    if not is_rugan_run(node):
        raise ValueError(f"pk: node {node.pk} is not a physgen.rugan run")
    if "table" not in node.outputs:
        state = node.process_state.value if node.process_state else "unknown"
        raise ValueError(f"pk: physgen.rugan run {node.pk} has no label check yet (state {state}, exit status "
                         f"{node.exit_status})")
    return node


def rugan_summary(node_or_pk) -> dict:
    """Sizes, the EDNN's held-out error, the RUGAN models' training and the KS rows of a finished run."""
    node = _load(node_or_pk)
    training = node.outputs.training
    ednn = node.outputs.ednn
    config = ednn.get_config() if hasattr(ednn, "get_config") else {}
    lattice = training.base.attributes.get("lattice", None)
    rugan = dict(node.outputs.rugan)
    return {
        "n_training": len(training),
        "lattice": lattice,
        "ednn_held_out": config.get("held_out"),
        "ednn_steps": ednn.base.attributes.get("steps", None),
        "rugan_steps": {label: model.base.attributes.get("steps", None) for label, model in rugan.items()},
        "generated": {key: len(value) for key, value in node.outputs.generated.items()},
        "rows": node.outputs.table["rows"],
        "text": node.outputs.table["text"],
    }


def _write_figures(node, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:

        def temporary(name: str, key: str) -> Path:
            written[key] = out / name
            return stack.enter_context(atomic_path(out / name))

        for key, figure in sorted(node.outputs.figures.items()):
            with figure.open(mode="rb") as source, temporary(f"{key}.png", key).open("wb") as target:
                shutil.copyfileobj(source, target)
        models = {"ednn": node.outputs.ednn, **{f"rugan_{k}": v for k, v in node.outputs.rugan.items()}}
        plot_loss_curves({k: v for k, v in models.items() if k.startswith("rugan")},
                         temporary("rugan_losses.png", "rugan_losses"))
        if "dos" in node.outputs:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            xy = node.outputs.dos
            fig, ax = plt.subplots(figsize=(6, 3.5))
            ax.plot(xy.get_x()[1], xy.get_y()[0][1], lw=1)
            ax.axvline(0.0, color="k", lw=0.5, ls="--")
            ax.set_xlabel("E − E_F (eV)")
            ax.set_ylabel("DOS (states/eV)")
            ax.set_title(f"GPAW DOS of a generated sheet ({len(node.outputs.dos_sheet.sites)} atoms)")
            fig.tight_layout()
            fig.savefig(temporary("dos.png", "dos"), dpi=120, format="png")
            plt.close(fig)
    return written


def print_rugan_report(node_or_pk, output_dir: str | Path | None = None, file: IO[str] | None = None) -> dict:
    """Print the summary and KS table of a ``physgen.rugan`` run; write its figures to ``output_dir``."""
    file = file or sys.stdout
    node = _load(node_or_pk)
    summary = rugan_summary(node)
    lattice = summary["lattice"]
    size = f" of {lattice['nx']} × {lattice['ny']} cells" if lattice else ""
    print(f"RUGAN run {node.process_label}<{node.pk}>: {summary['n_training']} training sheets{size}; "
          f"generated {', '.join(f'{k} {v}' for k, v in summary['generated'].items())}", file=file)
    held_out = summary["ednn_held_out"]
    if held_out:
        print(f"EDNN held-out error against the reference ({held_out['count']} sheets): median "
              f"{held_out['median_ae']:.3f} meV/Å², mean {held_out['mae']:.3f} meV/Å² (per-atom baseline alone: median "
              f"{held_out['baseline_median_ae']:.3f}; the paper, against DFT: median 1.685 meV/Å²)", file=file)
    print(f"RUGAN training steps: {summary['rugan_steps']}", file=file)
    print(summary["text"], file=file)
    written = {}
    if output_dir is not None:
        written = _write_figures(node, Path(output_dir))
        for name, path in written.items():
            print(f"{name}: {path}", file=file)
    return written
