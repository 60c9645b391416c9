"""Element property vectors and atomic radii for the crystal GAN, from pymatgen's element data.

The *element table* is every element from H to Pu for which pymatgen has all of :data:`PROPERTIES`
(86 elements; the noble gases, At and Fr lack some). Each element's vector is its properties
standardised over the table (zero mean, unit spread per property) plus a one-hot of its block
(s, p, d, f). Radii are pymatgen's empirical atomic radii (Slater, 1964), in Å. No AiiDA.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["PROPERTIES", "BLOCKS", "table", "feature_size", "features", "radii", "check_elements", "canonical_order"]

#: pymatgen ``Element`` attributes in every vector, in this order
PROPERTIES = (
    "Z",
    "row",
    "group",
    "X",
    "atomic_radius",
    "atomic_mass",
    "mendeleev_no",
    "ionization_energy",
    "electron_affinity",
    "molar_volume",
)
BLOCKS = ("s", "p", "d", "f")


@functools.lru_cache(maxsize=1)
def table() -> dict[str, tuple[np.ndarray, float, float]]:
    """``symbol -> (vector, atomic radius in Å, Mendeleev number)`` for every element of the table."""
    from pymatgen.core import Element

    raw, radius, mendeleev, symbols = [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about every missing property
        for z in range(1, 95):
            element = Element.from_Z(z)
            try:
                values = [float(getattr(element, name)) for name in PROPERTIES]
            except (TypeError, ValueError, AttributeError):
                continue
            if not all(math.isfinite(v) for v in values) or element.block not in BLOCKS:
                continue
            symbols.append(element.symbol)
            raw.append(values + [float(element.block == b) for b in BLOCKS])
            radius.append(float(element.atomic_radius))
            mendeleev.append(float(element.mendeleev_no))
    raw = np.asarray(raw)
    n = len(PROPERTIES)
    mean, spread = raw[:, :n].mean(axis=0), raw[:, :n].std(axis=0)
    raw[:, :n] = (raw[:, :n] - mean) / np.where(spread > 0, spread, 1.0)
    return {s: (raw[i], radius[i], mendeleev[i]) for i, s in enumerate(symbols)}


def feature_size() -> int:
    return len(PROPERTIES) + len(BLOCKS)


def check_elements(symbols: Iterable[str], field: str = "elements") -> list[str]:
    """``symbols`` as a list, every one in the element table; ``ValueError`` naming ``field`` otherwise."""
    symbols = list(symbols)
    known = table()
    bad = [s for s in symbols if not isinstance(s, str) or s not in known]
    if bad:
        raise ValueError(
            f"{field}: {bad} not in the element table (elements H–Pu with all of pymatgen's {list(PROPERTIES)}; "
            "noble gases, At and Fr have no complete data)"
        )
    return symbols


def canonical_order(symbols: Sequence[str]) -> list[str]:
    """The elements of one crystal in the model's site order: by Mendeleev number, then symbol."""
    known = table()
    return sorted(symbols, key=lambda s: (known[s][2], s))


def features(symbols: Iterable[str]) -> np.ndarray:
    """Property vectors ``(n, feature_size())`` of known elements."""
    known = table()
    return np.stack([known[s][0] for s in symbols])


def radii(symbols: Iterable[str]) -> np.ndarray:
    """Empirical atomic radii in Å."""
    known = table()
    return np.array([known[s][1] for s in symbols])
