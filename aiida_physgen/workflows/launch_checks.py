"""Launch-time checks shared by the work chains' input validators (nothing is stored, no process runs)."""

from __future__ import annotations

from ..ml import settings as settings_module

__all__ = ["get_input", "dft_problem"]


def get_input(inputs, *path, default=None):
    """The input at the nested ``path`` of a work chain's inputs (a namespace or a dictionary), or ``default``."""
    node = inputs
    for key in path:
        if key not in node:
            return default
        node = node[key]
    return node


def dft_problem(inputs, base_overrides: dict, dos: bool, periodic: bool | None, what: str = "structures") -> str | None:
    """What is wrong with the ``dft`` namespace (``count``, ``code``, ``protocol``, ``overrides`` over the chain's
    ``base_overrides``), checked with the GPAW engine's own validation; ``None`` when it is fine or absent."""
    count = get_input(inputs, "dft", "count")
    if count is not None and count.value < 1:
        return f"dft.count: got {count.value}, expected a positive number of {what} for DFT"
    code = get_input(inputs, "dft", "code")
    if code is None:
        return None
    from ..engines import get_engine

    protocol = get_input(inputs, "dft", "protocol")
    overrides = get_input(inputs, "dft", "overrides")
    merged = settings_module.merge(base_overrides, overrides.get_dict() if overrides is not None else {})
    problem = get_engine("gpaw", "structure", "dft").validate(
        code, protocol.value if protocol is not None else "fast", merged, dos, periodic, None)
    return f"dft.{problem}" if problem else None
