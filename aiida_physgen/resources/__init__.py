"""Data shipped with the package, so the examples run on a machine with nothing else.

``logan/``: training and target structures of the LoGAN study (Kovács, Heid, De Landsheere,
Madsen, Mach. Learn.: Sci. Technol. 5 035079 (2024)), published with that paper under the MIT
licence: 39 QM9 molecules (7 C4H10O + 32 C6H14O; no C5H12O) and, for six SiO2 polymorphs from
the Materials Project, the target structure and the training set with that target left out.

``graphene/dft_sheets.extxyz``: 101 small and 11 four-times-larger porous graphene sheets with GPAW PBE energies,
made here by ``scripts/graphene_dft_set.py`` (see :mod:`aiida_physgen.graphene.dft_set`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["resource_path", "sio2_target", "SIO2_TARGETS", "reference_smiles"]

ROOT = Path(__file__).parent

SIO2_TARGETS = ("mp-1188220", "mp-546546", "mp-546794", "mp-554151", "mp-555235", "mp-559550")


def resource_path(name: str) -> Path:
    """Path of a shipped file, e.g. ``resource_path('logan/C5H12O_training.extxyz')``."""
    path = ROOT / name
    if not path.is_file():
        available = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.extxyz"))
        raise FileNotFoundError(f"no shipped resource {name!r}; available: {available}")
    return path


def sio2_target(mp_id: str):
    """The SiO2 target ``mp_id`` as ``ase.Atoms`` (cell, pbc, composition and MP energy), and its
    training file (the other polymorphs, with this one left out)."""
    import ase.io

    if mp_id not in SIO2_TARGETS:
        raise ValueError(f"target: {mp_id!r} is not one of {SIO2_TARGETS}")
    return ase.io.read(resource_path(f"logan/sio2/{mp_id}_target.extxyz")), resource_path(
        f"logan/sio2/{mp_id}_training.extxyz"
    )


def reference_smiles(name: str = "C5H12O") -> list[str]:
    """Canonical RDKit SMILES (hydrogens implicit, no stereochemistry) of a shipped reference list,
    e.g. the 14 constitutional isomers of C5H12O (8 alcohols, 6 ethers) in ``logan/C5H12O_isomers.smi``,
    whose lines are ``SMILES name``."""
    available = sorted(p.name[: -len("_isomers.smi")] for p in (ROOT / "logan").glob("*_isomers.smi"))
    if name not in available:
        raise ValueError(f"name: no shipped reference list {name!r}; available: {available}")
    lines = (ROOT / "logan" / f"{name}_isomers.smi").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
