"""The ``discovery`` assessor: which isomers a molecule screening found, against a known list.

Registered as ``discovery`` in the entry-point group ``aiida_physgen.assessors`` and run by the screening's
``physgen.assess`` step (:mod:`aiida_physgen.screening.assessors`) once the DFT basins are known. It measures
the LoGAN study's discovery the way the paper counts it, at two levels:

* **DFT**: every DFT-relaxed structure (``data.relaxed``) grouped into basins by bond graph;
* **cheap**: every representative after the cheap tier (``data.cheap``; failed ones count, in no basin).

At each level, with :func:`aiida_physgen.screening.metrics.discovery_metrics`: how many structures, how many
valid, the distinct valid isomers (canonical SMILES), the novel ones (not in the training set), which of the
known isomers were recovered and which are missing, the isomers found that the known list does not hold, and
the relaxations spent per isomer. The known list is the reference set ``known`` (molecules) and/or the SMILES
of the settings; with neither, the package's shipped list of the composition when there is one
(:func:`aiida_physgen.resources.reference_smiles`, e.g. the 14 C5H12O isomers), else no recovery is measured.

The table puts the two levels side by side (:func:`~aiida_physgen.screening.metrics.format_metrics_table`)
and lists every isomer found with how many relaxations fell into it at each level; the figure shows the same
per isomer. Pure NumPy/RDKit/matplotlib: no AiiDA import.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from ..screening.assessors import Assessment, Assessor, ScreeningData

__all__ = ["Discovery", "DiscoverySettings", "KNOWN"]

#: the reference set the assessor reads as the known list, when the screening is given one
KNOWN = "known"


@dataclasses.dataclass
class DiscoverySettings:
    """Settings of the ``discovery`` assessor; each default is written here only.

    :param smiles: SMILES of the known isomers (joined with the reference set ``known`` when both are given).
    :param shipped_list: with neither ``smiles`` nor a ``known`` set, use the package's shipped list of the
        molecules' composition when there is one (C5H12O: the 14 constitutional isomers).
    :param charge: the molecules' total charge (bond orders and charge separation).
    :param figure: draw the per-isomer figure.
    """

    smiles: list = dataclasses.field(default_factory=list)
    shipped_list: bool = True
    charge: int = 0
    figure: bool = True

    def __post_init__(self) -> None:
        from ..screening.metrics import canonical_smiles

        if not isinstance(self.smiles, (list, tuple)):
            raise ValueError(f"smiles: got {self.smiles!r}, expected a list of SMILES strings, e.g. ['CCO', 'COC']")
        self.smiles = [canonical_smiles(item, f"smiles[{index}]") for index, item in enumerate(self.smiles)]
        for name in ("shipped_list", "figure"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: got {getattr(self, name)!r}, expected true or false")
            setattr(self, name, bool(getattr(self, name)))
        if isinstance(self.charge, (bool, np.bool_)) or not isinstance(self.charge, (int, np.integer)):
            raise ValueError(f"charge: got {self.charge!r}, expected the total charge as an integer")
        self.charge = int(self.charge)


def _molecules(batch, what: str) -> list:
    structures = list(batch)
    if any(atoms.pbc.any() for atoms in structures):
        raise ValueError(
            f"{what}: the discovery assessor measures molecules; these structures are periodic "
            "(use the formation assessor for crystals)"
        )
    return structures


class Discovery(Assessor):
    """Distinct valid isomers found at the cheap tier and after DFT, against a known list."""

    name = "discovery"
    title = "Discovery: isomers found against the known list"
    settings_class = DiscoverySettings

    def known(self, data: ScreeningData, settings: DiscoverySettings) -> tuple[list[str] | None, str]:
        """The canonical SMILES of the known isomers and where they come from (``None``: no known list)."""
        from ..screening.basins import molecule_graph

        keys, sources = list(settings.smiles), ["settings" if settings.smiles else ""]
        if KNOWN in data.references:
            for index, atoms in enumerate(_molecules(data.references[KNOWN], f"references.{KNOWN}")):
                graph = molecule_graph(atoms, charge=settings.charge)
                if not (graph.valid and graph.connected and graph.smiles):
                    raise ValueError(
                        f"references.{KNOWN}[{index}]: not a valid connected molecule "
                        f"({graph.error or 'several fragments'})"
                    )
                keys.append(graph.smiles)
            sources.append(f"reference set {KNOWN!r}")
        if not keys and settings.shipped_list:
            formula = self._formula(data)
            if formula is not None:
                from ..resources import reference_smiles

                try:
                    keys, sources = reference_smiles(formula), [f"the shipped {formula} list"]
                except ValueError:  # no shipped list for this composition: nothing to compare against
                    keys = []
        source = " and ".join(s for s in sources if s)
        return (list(dict.fromkeys(keys)) if keys else None), source

    @staticmethod
    def _formula(data: ScreeningData) -> str | None:
        for batch in (data.relaxed, data.cheap, data.representatives):
            if batch is not None and len(batch):
                formulas = set(batch.formulas())
                return formulas.pop() if len(formulas) == 1 else None
        return None

    def assess(self, data: ScreeningData, settings: DiscoverySettings) -> Assessment:
        from ..screening.metrics import discovery_metrics, format_metrics_table

        known, source = self.known(data, settings)
        training = _molecules(data.training, "training") if data.training is not None else None
        levels: dict[str, dict[str, Any]] = {}
        if data.cheap is not None and len(data.cheap):
            failed = np.asarray(data.cheap.info["cheap_failed"]).astype(bool)
            energies = [None if bad else float(e) for e, bad in zip(data.cheap.info["cheap_energy"], failed)]
            levels["cheap"] = discovery_metrics(
                _molecules(data.cheap, "cheap"),
                energies,
                training=training,
                reference=known,
                kind="molecule",
                failed=failed.tolist(),
                charge=settings.charge,
            )
        if data.relaxed is not None and len(data.relaxed):
            levels["dft"] = discovery_metrics(
                _molecules(data.relaxed, "relaxed"),
                [float(e) for e in data.relaxed.info["energy"]],
                training=training,
                reference=known,
                n_dft=len(data.relaxed),
                kind="molecule",
                charge=settings.charge,
            )
        if not levels:
            raise ValueError("relaxed: the screening has neither DFT-relaxed nor cheaply relaxed structures to assess")
        formula = self._formula(data) or "?"
        metrics: dict[str, Any] = {
            "formula": formula,
            "known_source": source or None,
            "n_known": len(known) if known is not None else None,
        }
        for level, values in levels.items():
            found = list(values["keys"])
            metrics[level] = {
                "n_structures": values["n_structures"],
                "n_valid": values["n_valid"],
                "validity": values["validity"],
                "n_isomers": values["n_unique"],
                "isomers": found,
                "n_novel": values["n_novel"],
                "novel": values["novel_keys"],
                "invalid": values["invalid"],
            }
            if known is not None:
                metrics[level].update(
                    {
                        "n_known_found": len(values["recovered"]),
                        "known_found": values["recovered"],
                        "known_missing": values["missing"],
                        "recovery": values["recovery"],
                        "not_in_known": [key for key in found if key not in known],
                    }
                )
            if level == "dft":
                metrics[level].update(
                    {
                        "n_dft": values["n_dft"],
                        "dft_per_new_basin": values["dft_per_new_basin"],
                        "isomers_per_dft": values["n_unique"] / values["n_dft"],
                    }
                )
        rows = self._rows(levels, known)
        names = {"cheap": "cheap tier", "dft": "DFT"}
        text = "\n\n".join(
            [
                self.summary(metrics),
                format_metrics_table({names[level]: values for level, values in levels.items()}),
                _isomer_table(rows),
            ]
        )
        figures = {"isomers": _figure(rows, formula)} if settings.figure and rows else {}
        return Assessment(metrics=metrics, rows=rows, text=text, figures=figures)

    @staticmethod
    def summary(metrics: dict[str, Any]) -> str:
        """One line per level: the distinct valid isomers found, how many known, with how many relaxations."""
        lines = []
        for level, what in (("dft", "DFT relaxations"), ("cheap", "cheap relaxations")):
            if level not in metrics:
                continue
            values = metrics[level]
            spent = values.get("n_dft", values["n_structures"])
            line = f"{what}: found {values['n_isomers']} distinct valid {metrics['formula']} isomers with {spent}"
            if metrics["n_known"] is not None:
                known = f"{values['n_known_found']} of the {metrics['n_known']} known"
                line += f" ({known}, from {metrics['known_source']})"
            lines.append(line)
        return "\n".join(lines)

    @staticmethod
    def _rows(levels: dict[str, dict[str, Any]], known: list[str] | None) -> list[dict[str, Any]]:
        """One row per isomer: the known ones in list order, then the others found, with the relaxations that
        fell into it at each level and the DFT energy relative to the lowest valid DFT basin."""
        counts = {
            level: {row["key"]: row["count"] for row in values["basins"] if row["sound"]}
            for level, values in levels.items()
        }
        novel = {row["key"]: row["novel"] for values in levels.values() for row in values["basins"] if row["sound"]}
        energies = {}
        if "dft" in levels:
            sound = [row for row in levels["dft"]["basins"] if row["sound"]]
            lowest = min((row["energy_per_atom"] for row in sound), default=None)
            energies = {row["key"]: 1000 * (row["energy_per_atom"] - lowest) for row in sound}
        keys = list(known or [])
        for level in ("dft", "cheap"):
            keys += [key for key in counts.get(level, {}) if key not in keys]
        rows = []
        for key in keys:
            rows.append(
                {
                    "smiles": key,
                    "known": key in (known or []) if known is not None else None,
                    "novel": novel.get(key),
                    "cheap": counts.get("cheap", {}).get(key, 0) if "cheap" in levels else None,
                    "dft": counts.get("dft", {}).get(key, 0) if "dft" in levels else None,
                    "dft_relative_mev_per_atom": energies.get(key),
                }
            )
        return rows


def _isomer_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    def mark(value):
        return "–" if value is None else ("yes" if value else "no")

    def count(value):
        return "–" if value is None else str(value)

    table = [
        [
            row["smiles"],
            mark(row["known"]),
            mark(row["novel"]),
            count(row["cheap"]),
            count(row["dft"]),
            "–" if row["dft_relative_mev_per_atom"] is None else f"{row['dft_relative_mev_per_atom']:.1f}",
        ]
        for row in rows
    ]
    return tabulate(
        table,
        headers=["isomer (SMILES)", "known", "novel", "cheap relaxations", "DFT relaxations", "ΔE/atom DFT (meV)"],
        disable_numparse=True,
    )


def _figure(rows: list[dict[str, Any]], formula: str) -> bytes:
    """Relaxations that fell into each isomer at the cheap tier and in DFT; known isomers never found stay empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = rows[:40]  # the known list first: a longer tail of new isomers would not be readable
    y = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.28 * len(shown)))
    for offset, level, colour, label in ((-0.2, "cheap", "tab:grey", "cheap tier"), (0.2, "dft", "tab:blue", "DFT")):
        values = [row[level] or 0 for row in shown]
        if any(row[level] is not None for row in shown):
            ax.barh(y + offset, values, height=0.38, color=colour, label=label)
    ax.set_yticks(
        y, [row["smiles"] + ("" if row["known"] in (None, True) else "  (not in list)") for row in shown], fontsize=7
    )
    ax.invert_yaxis()
    ax.set_xlabel("relaxations ending in the isomer")
    ax.set_title(f"{formula}: isomers found (empty row: known, not found)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format="png")
    plt.close(fig)
    return buffer.getvalue()
