"""Skip-if-done for relaxations: a content key per (structure, engine, code, settings), kept as an extra.

A screening launched again (after a crash, a killed daemon, or to extend a finished one) must not pay for a
relaxation it has already done. Each relaxation process the screening submits gets the extra
``physgen_relaxation_key``: a SHA-256 over the structure's content hash (AiiDA's node hash: cell, sites,
kinds, not the UUID, so the same structure made again by a re-run generation has the same key), the engine,
the code's UUID, the protocol, the overrides and the DOS flag. Before submitting, the screening looks for a
process with that key that *finished OK* and uses its outputs instead (the provenance then shows the earlier
relaxation feeding this screening's de-duplication). Failed, killed or still-running relaxations are never
reused. AiiDA's caching would do the same for the calculation jobs when the profile enables it; the extra
works without any configuration and for every engine, and it skips the whole relaxation work chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from aiida import orm

__all__ = ["RELAXATION_KEY", "relaxation_key", "finished_relaxation"]

#: the extra holding the key on every relaxation process a screening submits
RELAXATION_KEY = "physgen_relaxation_key"


def relaxation_key(
    structure: orm.StructureData,
    engine: str,
    code: orm.AbstractCode,
    protocol: str,
    overrides: Mapping[str, Any] | None,
    dos: bool,
) -> str:
    """The content key of one relaxation (see the module docstring)."""
    payload = {
        "structure": structure.base.caching.get_hash(),
        "engine": engine,
        "code": code.uuid,
        "protocol": protocol,
        "overrides": overrides or {},
        "dos": bool(dos),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def finished_relaxation(key: str) -> orm.ProcessNode | None:
    """The newest process with this relaxation key that finished OK, or ``None``."""
    query = (
        orm.QueryBuilder()
        .append(
            orm.ProcessNode,
            filters={
                f"extras.{RELAXATION_KEY}": key,
                "attributes.process_state": "finished",
                "attributes.exit_status": 0,
            },
            tag="process",
        )
        .order_by({"process": {"ctime": "desc"}})
        .limit(1)
    )
    found = query.first(flat=True)
    return found
