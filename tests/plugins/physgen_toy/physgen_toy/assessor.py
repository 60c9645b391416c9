"""An assessor: the energies of the cheap tier and of DFT side by side, with a histogram.

The contract (:class:`aiida_physgen.screening.assessors.Assessor`): a ``name``, a ``title`` (the report's
heading), a settings dataclass, ``requires`` (the reference sets it reads, checked at launch) and
``assess(data, settings)``, which reads a finished screening as arrays
(:class:`~aiida_physgen.screening.assessors.ScreeningData`: generated, valid, representatives, cheap,
relaxed, basins, funnel, references, ...) and returns an
:class:`~aiida_physgen.screening.assessors.Assessment`: flat metrics, table rows, the table as text, and
figures as PNG bytes. The screening stores them as ``assessments.<name>`` and ``figures.<name>_<figure>``.

Registered in ``pyproject.toml``::

    [project.entry-points."aiida_physgen.assessors"]
    toy_energy = "physgen_toy.assessor:EnergyAssessor"

and chosen with ``assessors={'toy_energy': {'bins': 8}}``.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from aiida_physgen.screening.assessors import Assessment, Assessor


@dataclasses.dataclass
class EnergySettings:
    """:param bins: bins of the cheap-energy histogram."""

    bins: int = 10

    def __post_init__(self):
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 1:
            raise ValueError(f"bins: got {self.bins!r}, expected a positive number of bins")


class EnergyAssessor(Assessor):
    name = "toy_energy"
    title = "Energies: cheap tier and DFT"
    settings_class = EnergySettings

    def assess(self, data, settings):
        if data.relaxed is None or not len(data.relaxed):
            raise ValueError("relaxed: no DFT-relaxed structure to assess")
        generated = sum(len(batch) for batch in data.generated.values())
        metrics = {
            "n_generated": generated,
            "n_valid": len(data.valid) if data.valid is not None else generated,
            "n_representatives": len(data.representatives),
            "n_dft": len(data.relaxed),
            "lowest_dft_energy": float(np.min(data.relaxed.info["energy"])),
            "n_dft_basins": len(data.basins),
        }
        rows = [
            {
                "structure": i,
                "formula": atoms.get_chemical_formula(),
                "energy": float(atoms.info["energy"]),
                "basin": data.basins[int(atoms.info["basin"])]["key"],
            }
            for i, atoms in enumerate(data.relaxed)
        ]
        figures = {}
        if data.cheap is not None:
            cheap = np.asarray(data.cheap.info["cheap_energy"], dtype=float)
            finite = cheap[np.isfinite(cheap)]
            metrics.update(
                {
                    "n_cheap": len(cheap),
                    "n_cheap_failed": int(np.sum(data.cheap.info["cheap_failed"])),
                    "lowest_cheap_energy": float(finite.min()) if finite.size else None,
                }
            )
            figures["cheap_energies"] = self.histogram(finite, settings.bins)
        text = "\n".join(
            f"{row['structure']:>3}  {row['formula']:<8} {row['energy']:>12.4f} eV  {row['basin']}" for row in rows
        )
        return Assessment(metrics=metrics, rows=rows, text=text, figures=figures)

    @staticmethod
    def histogram(energies, bins) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4, 3))
        ax.hist(energies, bins=bins)
        ax.set_xlabel("cheap energy (eV)")
        ax.set_ylabel("structures")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        return buffer.getvalue()
