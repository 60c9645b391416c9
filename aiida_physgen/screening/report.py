"""The report of a screening run: a table of the unique minima and figures written to files.

Used by ``aiida-physgen report <pk>`` and by the example scripts. Reads only what the
``physgen.screening`` workflow stored, so it works on any finished run in the database.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
from aiida import orm

from ..ml.atomic_files import atomic_path, check_output_path

__all__ = ["report_rows", "timing", "format_table", "write_figures", "print_report"]


def _screening_node(node_or_pk) -> orm.WorkflowNode:
    node = orm.load_node(node_or_pk) if not isinstance(node_or_pk, orm.Node) else node_or_pk
    if not isinstance(node, orm.WorkflowNode) or "report" not in node.outputs:
        raise ValueError(f"pk: node {node.pk} is not a finished physgen.screening run (it has no 'report' output)")
    return node


def load_screening(node_or_pk) -> orm.WorkflowNode:
    """A screening run, finished or not (a baseline stopped by the funnel before DFT still has metrics)."""
    node = orm.load_node(node_or_pk) if not isinstance(node_or_pk, orm.Node) else node_or_pk
    if not isinstance(node, orm.WorkflowNode) or "generation" not in node.inputs:
        raise ValueError(f"pk: node {node.pk} is not a physgen.screening run")
    return node


def latest_screening(statuses: tuple[int, ...] = (0,), **extras) -> orm.WorkflowNode | None:
    """The newest screening (highest pk) whose exit status is one of ``statuses`` and whose extras hold every value
    in ``extras``: how a study script finds its finished runs again instead of running them twice."""
    filters = {
        "attributes.process_label": "ScreeningWorkChain",
        "attributes.exit_status": {"in": list(statuses)},
        **{f"extras.{key}": value for key, value in extras.items()},
    }
    nodes = orm.QueryBuilder().append(orm.WorkChainNode, filters=filters, project="*").all(flat=True)
    return max(nodes, key=lambda n: n.pk) if nodes else None


def report_rows(node) -> list[dict[str, Any]]:
    """One row per basin, lowest energy per atom first, with the pk of the minimum's structure."""
    node = _screening_node(node)
    rows = [dict(row) for row in node.outputs.report["rows"]]
    for row in rows:
        row["pk"] = node.outputs.minima[row["name"]].pk
    return rows


def _descendants(node, label: str):
    return [n for n in node.called_descendants if n.process_label == label]


def _called(node, link_label: str) -> list:
    return [link.node for link in node.base.links.get_outgoing(link_label_filter=link_label).all()]


def _engine_name(node) -> str:
    """The screening's per-structure relaxation engine (its input's default when the node has none)."""
    from ..engines import DEFAULT_ENGINE

    return node.inputs.engine.value if "engine" in node.inputs else DEFAULT_ENGINE


def dft_relaxations(node, finished_only: bool = True) -> list:
    """The per-structure relaxations of a screening (link labels ``relax_<label>``, of whatever engine): those its
    ``physgen.relax_set`` ran, and those it reused from earlier runs (they are the relaxations its basins came from)."""
    found = {}
    parents = [node, *[link.node for link in node.base.links.get_outgoing(link_label_filter="relax").all()]]
    for parent in parents:  # the relax_set chain; a screening stored before it existed called them itself
        for link in parent.base.links.get_outgoing().all():
            if (
                link.link_label.startswith("relax_")
                and link.link_label != "relax_cheap"
                and isinstance(link.node, orm.ProcessNode)
            ):
                found[link.node.pk] = link.node
        table = (
            parent.base.extras.get("physgen_relaxations", {}).get("relaxations", {})
            if isinstance(parent, orm.WorkflowNode)
            else {}
        )
        for row in table.values():
            if row.get("reused") and row.get("pk"):
                found[row["pk"]] = orm.load_node(row["pk"])
    found = sorted(found.values(), key=lambda n: n.pk)
    return [n for n in found if n.is_finished_ok] if finished_only else found


def _ran_here(node) -> list:
    """The relaxations this screening ran itself (not the reused ones): what its DFT time is made of."""
    reused = set()
    for link in node.base.links.get_outgoing(link_label_filter="relax").all():
        table = link.node.base.extras.get("physgen_relaxations", {}).get("relaxations", {})
        reused |= {row["pk"] for row in table.values() if row.get("reused")}
    return [n for n in dft_relaxations(node, finished_only=False) if n.pk not in reused]


def _union_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, -np.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def timing(node) -> dict[str, float]:
    """Wall time of the run split into training, GPAW (union of the driver runs) and the rest
    (AiiDA and aiida-physgen overhead: generation, selection, provenance, scheduling); ``lost_s`` is the
    time of trainings a dead daemon worker left unfinished (run again by the work chain)."""
    node = _screening_node(node)
    total = (node.mtime - node.ctime).total_seconds()
    trainings = [n for label in ("train", "TrainingCalculation") for n in _descendants(node, label)]
    # a training calcfunction whose daemon worker died was ended as excepted when its step ran again
    # (workflows/orphans.py): its time, up to that moment, was lost, not spent on training or overhead
    lost = sum((n.mtime - n.ctime).total_seconds() for n in trainings if n.is_excepted)
    training = sum((n.mtime - n.ctime).total_seconds() for n in trainings if not n.is_excepted)
    cheap = sum((n.mtime - n.ctime).total_seconds() for n in _called(node, "relax_cheap") if not n.is_excepted)
    intervals = []
    for relaxation in _ran_here(node):
        for calc in [relaxation, *relaxation.called_descendants]:
            if not isinstance(calc, orm.CalcJobNode):
                continue
            params = calc.outputs.output_parameters.get_dict() if "output_parameters" in calc.outputs else {}
            if params.get("start_time") and params.get("end_time"):  # the driver's own clock: no queueing
                intervals.append((params["start_time"], params["end_time"]))
            elif calc.is_terminated:
                intervals.append((calc.ctime.timestamp(), calc.mtime.timestamp()))
    dft = _union_seconds(intervals)
    other = max(total - training - dft - cheap - lost, 0.0)
    return {
        "total_s": total,
        "training_s": training,
        "cheap_s": cheap,
        "dft_s": dft,
        "lost_s": lost,
        "other_s": other,
        "other_share": other / total if total else 0.0,
        "n_dft_runs": len(intervals),
    }


#: the stages of :func:`cpu_seconds` and the calcfunctions (process labels) that make them
CPU_STAGES = {
    "training": ("train",),
    "generation": ("generate", "generate_random"),
    "selection": ("select_representatives",),
    "cheap": ("relax_cheap",),
}


def cpu_seconds(node) -> dict[str, Any]:
    """CPU seconds a screening spent, by stage: ``training``, ``generation``, ``selection``, ``cheap`` (the
    calcfunctions' extra ``physgen_cpu_seconds``, every thread counted; a training job: its run time), ``dft`` (the
    relaxations this screening ran, not the reused ones: each GPAW run's ``cpu_time``, else its ``wall_time``,
    else the job's time from creation to end), and ``total``. Cached or reused steps cost nothing. ``counts`` holds
    the number of cheap and DFT relaxations run and ``missing`` the steps measured by wall time instead. A screening
    that stopped (e.g. a random baseline with no sound cheap basin, 405) has its costs too."""
    from ..calculations.functions import CPU_EXTRA

    node = load_screening(node)
    out: dict[str, Any] = {stage: 0.0 for stage in (*CPU_STAGES, "dft")}
    missing = []
    for stage, labels in CPU_STAGES.items():
        for label in labels:
            for step in _descendants(node, label):
                if step.base.caching.is_created_from_cache:
                    continue
                seconds = step.base.extras.get(CPU_EXTRA, None)
                if seconds is None:
                    missing.append(f"{label}<{step.pk}>")
                    seconds = (step.mtime - step.ctime).total_seconds()
                out[stage] += seconds
    for job in _descendants(node, "TrainingCalculation"):
        if not job.base.caching.is_created_from_cache:
            out["training"] += (job.mtime - job.ctime).total_seconds()
            missing.append(f"TrainingCalculation<{job.pk}>")
    n_dft = 0
    ran_here = _ran_here(node)
    for relaxation in ran_here:
        for calc in [relaxation, *relaxation.called_descendants]:
            if not isinstance(calc, orm.CalcJobNode) or not calc.is_terminated:
                continue
            n_dft += 1
            params = calc.outputs.output_parameters.get_dict() if "output_parameters" in calc.outputs else {}
            seconds = params.get("cpu_time") or params.get("wall_time")
            if params.get("cpu_time") is None:
                missing.append(f"{calc.process_label}<{calc.pk}>")
            out["dft"] += seconds if seconds is not None else (calc.mtime - calc.ctime).total_seconds()
    cheap = [step for step in _descendants(node, "relax_cheap") if step.is_finished_ok]
    out["total"] = sum(out[stage] for stage in (*CPU_STAGES, "dft"))
    out["counts"] = {
        "cheap_relaxations": sum(len(step.outputs.relaxed) for step in cheap),
        "dft_jobs": n_dft,
        "dft_relaxations": len(ran_here),
    }
    out["missing"] = missing
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    table = []
    for row in rows:
        note = "" if row["new_minimum"] else ("fell apart" if not row["connected"] else "no valid bonding")
        table.append(
            [
                row["name"],
                row["formula"],
                row["key"],
                f"{row['energy_per_atom']:.4f}",
                f"{row['relative_per_atom'] * 1000:.1f}",
                row["count"],
                row["pk"],
                note,
            ]
        )
    headers = [
        "minimum",
        "formula",
        "SMILES / space group",
        "E/atom (eV)",
        "ΔE/atom (meV)",
        "relaxations",
        "pk",
        "note",
    ]
    return tabulate(table, headers=headers)


def trained_models(node) -> dict[str, Any]:
    """The generator models of a screening run (outputs of its generation chain), by label."""
    if "generation" in node.outputs and "models" in node.outputs.generation:
        return dict(node.outputs.generation.models)
    return {}


def plot_loss_curves(models: dict[str, Any], path: str | Path) -> Path:
    """The Wasserstein estimate (or each model's first logged loss) against training step, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    name = None
    for label, model in sorted(models.items()):
        curves = model.get_loss_curves()
        names = [key for key in curves if key != "steps"]
        if not names or not curves["steps"]:
            continue
        name = "wasserstein" if "wasserstein" in names else names[0]
        ax.plot(curves["steps"], curves[name], lw=1, label=f"{label} (seed {model.seed})")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{name or 'loss'}")
    ax.set_title("Training curves of the ensemble")
    if len(models) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return Path(path)


def write_figures(node, output_dir: str | Path) -> dict[str, Path]:
    """PCA clusters (from the selection), training curves, energy ranking and DOS of the minima, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    node = _screening_node(node)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir: {str(out)!r} is a file; expected a folder")
    out.mkdir(parents=True, exist_ok=True)
    check_output_path(out / "energy_ranking.png", "output_dir")
    written: dict[str, Path] = {}
    rows = report_rows(node)
    # the figures appear together or not at all: each is drawn to a temporary name, all are renamed at the end
    with contextlib.ExitStack() as stack:

        def temporary(name: str, key: str) -> Path:
            written[key] = out / name
            return stack.enter_context(atomic_path(out / name))

        if "generation" in node.outputs and "selection" in node.outputs.generation:
            plot_marked_selection(node, rows, temporary("pca_clusters.png", "pca"))
        elif "generation" in node.outputs and "pca_plot" in node.outputs.generation:
            with (
                node.outputs.generation.pca_plot.open(mode="rb") as source,
                temporary("pca_clusters.png", "pca").open("wb") as target,
            ):
                shutil.copyfileobj(source, target)

        for name in sorted(node.outputs.figures) if "figures" in node.outputs else []:
            with (
                node.outputs.figures[name].open(mode="rb") as source,
                temporary(f"{name}.png", name).open("wb") as target,
            ):
                shutil.copyfileobj(source, target)

        models = trained_models(node)
        if models:
            plot_loss_curves(models, temporary("training_losses.png", "training"))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        rel = [row["relative_per_atom"] * 1000 for row in rows]
        colours = ["tab:blue" if row["new_minimum"] else "tab:grey" for row in rows]
        ax.bar(range(len(rows)), rel, color=colours)
        ax.set_xticks(range(len(rows)), [f"{row['name']}\n×{row['count']}" for row in rows], fontsize=7)
        ax.set_ylabel("ΔE per atom (meV)")
        ax.set_title("Unique minima by energy (grey: fell apart / invalid)")
        fig.tight_layout()
        fig.savefig(temporary("energy_ranking.png", "energies"), dpi=120, format="png")
        plt.close(fig)

        if "dos" in node.outputs and len(node.outputs.dos):
            fig, ax = plt.subplots(figsize=(6, 4))
            for offset, row in enumerate(r for r in rows if r["name"] in node.outputs.dos):
                xy = node.outputs.dos[row["name"]]
                energy = xy.get_x()[1]
                dos = xy.get_y()[0][1]
                ax.plot(
                    energy,
                    dos + offset * (dos.max() * 1.1 if dos.max() > 0 else 1),
                    label=f"{row['name']} {row['key']}",
                )
            ax.axvline(0.0, color="k", lw=0.5, ls="--")
            ax.set_xlabel("E − E_F (eV)")
            ax.set_ylabel("DOS (states/eV, offset)")
            ax.legend(fontsize=6)
            fig.tight_layout()
            fig.savefig(temporary("dos.png", "dos"), dpi=120, format="png")
            plt.close(fig)
    return written


def _cluster_of(label: str, funnel) -> int | None:
    """The k-means cluster (representative index) a DFT structure came from: ``rep_07`` → 7; a funnel pick
    ``basin_02`` → the representative the funnel picked for it."""
    if label.startswith("rep_"):
        return int(label[4:])
    if funnel is not None and label in funnel.get("picked", {}):
        return int(funnel["picked"][label])
    return None


def plot_marked_selection(node, rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The PCA map of the selection with what went on marked: the representatives relaxed with DFT, and those
    whose basin is a unique minimum (readable with hundreds of representatives)."""
    from .selection import Selection, plot_selection

    arrays = node.outputs.generation.selection
    selection = Selection.from_arrays({name: arrays.get_array(name) for name in arrays.get_arraynames()})
    funnel = node.outputs.funnel.get_dict() if "funnel" in node.outputs else None
    relaxed = [c for row in rows for c in (_cluster_of(m, funnel) for m in row["members"]) if c is not None]
    minima = [_cluster_of(row["representative"], funnel) for row in rows if row["new_minimum"]]
    marks = {"relaxed with DFT": sorted(set(relaxed)), "unique minimum": sorted({c for c in minima if c is not None})}
    n = arrays.base.attributes.get("n_candidates", len(selection.labels))
    return plot_selection(
        selection,
        path,
        title=f"{n} candidates → {selection.n_clusters} representatives → "
        f"{len(marks['relaxed with DFT'])} DFT → {len(marks['unique minimum'])} unique minima",
        marks=marks,
    )


def assessment_sections(node) -> list[str]:
    """Each assessor's section of the report: its title, its table, and its metrics not already in the table."""
    sections = []
    if "assessments" not in node.outputs:
        return sections
    for name in sorted(node.outputs.assessments):
        assessment = node.outputs.assessments[name].get_dict()
        title = assessment.get("title") or name
        text = assessment.get("text") or ""
        lines = [f"== {title} ==", text] if text else [f"== {title} =="]
        if not text:
            lines += [f"{key}: {value}" for key, value in sorted(assessment.get("metrics", {}).items())]
        sections.append("\n".join(lines))
    return sections


def funnel_line(node) -> str | None:
    """Where the candidates went, stage by stage, when the screening used the cheap-tier funnel."""
    node = _screening_node(node)
    report = node.outputs.report
    if "funnel" not in report.keys():
        return None
    funnel = report["funnel"]
    generation = node.outputs.generation
    n_candidates = len(generation.candidates) if "candidates" in generation else None
    selection = generation.selection if "selection" in generation else None
    n_kept = (
        selection.base.attributes.get("n_candidates") - selection.base.attributes.get("n_too_close")
        if selection is not None
        else None
    )
    n_representatives = len(generation.representatives) if "representatives" in generation else None
    return (
        f"funnel: {n_candidates} candidates → {n_kept} with atoms ≥ min_distance apart → {n_representatives} "
        f"representatives → cheap tier: {funnel['n_failed']} failed, {funnel['n_sound']} sound in "
        f"{funnel['n_sound_basins']} distinct sound basins (of {funnel['n_basins']}) → {funnel['n_picked']} DFT "
        f"relaxations (budget {funnel['budget']}) → {report['n_basins']} DFT basins, "
        f"{report.get('n_changed_in_dft', 0)} relaxation(s) changed basin in DFT"
    )


def discovery_line(node) -> str:
    """One line: how many distinct valid structures were found with how many DFT relaxations (and, for a
    composition with a shipped reference list, how many of the known isomers)."""
    from ..resources import reference_smiles

    node = _screening_node(node)
    report = node.outputs.report
    rows = report["rows"]
    formula = rows[0]["formula"] if rows else "?"
    kind = rows[0].get("kind", "molecule") if rows else "molecule"
    # a molecule's key (canonical SMILES) names its isomer; a crystal's or an amorphous cell's key (space group
    # and formula) does not tell two basins apart, so for them every unique minimum counts
    found = (
        {row["key"] for row in rows if row["new_minimum"]}
        if kind == "molecule"
        else [row["name"] for row in rows if row["new_minimum"]]
    )
    noun = "isomers" if kind == "molecule" else "structures"
    line = f"found {len(found)} distinct valid {formula} {noun} with {report['n_relaxed']} DFT relaxations"
    if kind == "molecule":
        try:
            reference = set(reference_smiles(formula))
        except ValueError:  # no shipped reference list for this composition
            return line
        line += f" ({len(found & reference)} of the {len(reference)} known {formula} isomers)"
    return line


def screening_metrics(node, reference: list | None = None) -> dict[str, dict[str, Any]]:
    """Discovery metrics of a screening (:func:`aiida_physgen.screening.metrics.discovery_metrics`), at the cheap
    tier (every cheaply relaxed representative) when the funnel ran, and at the DFT level (the relaxed
    structures of every DFT relaxation, with ``n_dft`` the number of relaxations). Novelty is measured
    against the screening's training set; recovery against ``reference`` (SMILES or structures, e.g. a
    target polymorph), by default the shipped reference list of the composition when there is one. A
    screening that ended before DFT has only the cheap level."""
    from ..resources import reference_smiles
    from .metrics import discovery_metrics

    node = load_screening(node)  # a failed screening has metrics too
    generation = node.inputs.generation
    training = list(generation.training)
    composition = generation.target.get_dict().get("composition")
    if reference is None:
        try:
            reference = reference_smiles(composition)
        except ValueError:
            reference = None
    levels: dict[str, dict[str, Any]] = {}
    if "cheap_relaxed" in node.outputs:
        relaxed = node.outputs.cheap_relaxed.get_batch()
        failed = relaxed.info["cheap_failed"].astype(bool)
        energies = [None if bad else float(e) for e, bad in zip(relaxed.info["cheap_energy"], failed)]
        levels["cheap"] = discovery_metrics(
            list(relaxed), energies, training=training, reference=reference, failed=failed.tolist()
        )
    if "report" in node.outputs:
        from ..engines import get_engine

        engine = get_engine(_engine_name(node), "structure")
        results = [engine.get_result(n) for n in dft_relaxations(node)]
        structures = [result.structure.get_ase() for result in results]
        energies = [result.energy for result in results]
        levels["dft"] = discovery_metrics(
            structures, energies, training=training, reference=reference, n_dft=node.outputs.report["n_relaxed"]
        )
    return levels


def run_name(node) -> str:
    """``random`` for a screening of the random baseline, else ``generator``."""
    generation = node.inputs.generation
    return "random" if "baseline" in generation and generation.baseline.value else "generator"


def _cheap_level_name(node) -> str:
    """What the cheap tier was: xTB or CHGNet for the shipped engine (by the structures' kind), else the engine."""
    engine = node.inputs.cheap_engine.value if "cheap_engine" in node.inputs else "cheap"
    if engine != "cheap":
        return engine
    pbc = node.inputs.generation.target.get_dict().get("pbc")
    periodic = any(pbc) if isinstance(pbc, (list, tuple)) else bool(pbc)
    return "CHGNet" if periodic else "xTB"


def compare_screenings(runs, reference: list | None = None) -> str:
    """The discovery metrics of several screenings side by side, at the cheap tier and after DFT: e.g. the
    generator and the random baseline through the same funnel and budgets.

    :param runs: screening nodes (or PKs), in a sequence (named ``generator``/``random`` by their
        ``baseline`` input, numbered when names repeat) or a mapping name → node.
    :param reference: as for :func:`screening_metrics`.
    """
    from .metrics import format_metrics_table

    if not isinstance(runs, Mapping):
        nodes = [load_screening(run) for run in runs]
        names = [run_name(n) for n in nodes]
        runs = {(f"{name} <{n.pk}>" if names.count(name) > 1 else name): n for name, n in zip(names, nodes)}
    columns = {}
    for name, node in runs.items():
        node = load_screening(node)
        for level, metrics in screening_metrics(node, reference).items():
            columns[f"{name} ({_cheap_level_name(node) if level == 'cheap' else 'DFT'})"] = metrics
    return format_metrics_table(columns)


def print_report(node, output_dir: str | Path | None = None, file: IO[str] | None = None) -> dict[str, Path]:
    """Print the table, summary and timing; write the figures to ``output_dir`` when given."""
    file = file or sys.stdout
    node = _screening_node(node)
    report = node.outputs.report
    rows = report_rows(node)
    print(
        f"Screening {node.process_label}<{node.pk}>: {report['n_relaxed']} relaxations → {report['n_basins']} "
        f"basins, {report['n_unique_minima']} unique minima (connected, valid)",
        file=file,
    )
    print(format_table(rows), file=file)
    line = funnel_line(node)
    if line:
        print(line, file=file)
    if not ("assessments" in node.outputs and "discovery" in node.outputs.assessments):  # else its section says it
        print(discovery_line(node), file=file)
    t = timing(node)
    cheap = f"cheap tier {t['cheap_s']:.0f} s, " if t["cheap_s"] else ""
    print(
        f"wall time {t['total_s']:.0f} s: training {t['training_s']:.0f} s, {cheap}DFT {t['dft_s']:.0f} s "
        f"({t['n_dft_runs']} {_engine_name(node)} runs), other {t['other_s']:.0f} s "
        f"({t['other_share']:.0%} of the total)"
        + (f", lost to a dead daemon worker {t['lost_s']:.0f} s" if t["lost_s"] else ""),
        file=file,
    )
    for section in assessment_sections(node):
        print(section, file=file)
    written = {}
    if output_dir is not None:
        written = write_figures(node, output_dir)
        for name, path in written.items():
            print(f"{name}: {path}", file=file)
    return written
