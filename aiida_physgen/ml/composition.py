"""Chemical compositions as the generators use them: formulas ↔ ordered lists of symbols."""

from __future__ import annotations

import re
from collections.abc import Sequence

import ase.data

__all__ = ["parse_composition", "composition_string"]


def parse_composition(composition: str | Sequence[str]) -> list[str]:
    """``"C5H12O"`` or a list of symbols → symbols grouped by element in order of appearance."""
    if isinstance(composition, str):
        tokens = re.findall(r"([A-Z][a-z]?)(\d*)", composition)
        if not tokens or "".join(f"{s}{n}" for s, n in tokens) != composition.replace(" ", ""):
            raise ValueError(f"composition: cannot parse {composition!r}; expected a formula such as 'C5H12O'")
        counts: dict[str, int] = {}
        for symbol, n in tokens:
            counts[symbol] = counts.get(symbol, 0) + (int(n) if n else 1)
    elif isinstance(composition, Sequence) and all(isinstance(s, str) for s in composition):
        counts = {}
        for symbol in composition:
            counts[symbol] = counts.get(symbol, 0) + 1
    else:
        raise ValueError(f"composition: expected a formula string or a list of symbols, got {composition!r}")
    for symbol, n in counts.items():
        if symbol not in ase.data.atomic_numbers or symbol == "X":
            raise ValueError(f"composition: {symbol!r} is not a chemical element")
        if n < 1:
            raise ValueError(f"composition: element {symbol} needs a positive count")
    symbols = [s for s, n in counts.items() for _ in range(n)]
    if not symbols:
        raise ValueError("composition: expected at least one atom")
    return symbols


def composition_string(symbols: Sequence[str]) -> str:
    """``['Si', 'Si', 'O', 'O', 'O', 'O']`` → ``'Si2O4'`` (elements in order of appearance)."""
    symbols = list(symbols)
    return "".join(f"{x}{symbols.count(x) if symbols.count(x) > 1 else ''}" for x in dict.fromkeys(symbols))
