"""Make (or extend) the DFT-labelled set of porous graphene sheets shipped with the package.

    python scripts/graphene_dft_set.py                      # both parts, into the shipped file
    python scripts/graphene_dft_set.py --part large         # one part (run the two side by side on two cores)
    python scripts/graphene_dft_set.py --part small --limit 3 -o /tmp/try.extxyz
    python scripts/graphene_dft_set.py --part large --indices 9 10 -o large_b.extxyz   # a share on another core

Sheets and settings are in :mod:`aiida_physgen.graphene.dft_set`. Each sheet is appended to the file as soon as its
GPAW single point ends, so an interrupted run resumes where it stopped (sheets already in the file are skipped).
Cost here (one core, the other busy): 25-60 s per small sheet and 4-11 min per large one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ase.io import read, write

from aiida_physgen.graphene.dft_set import (
    PARTS,
    DftSettings,
    gpaw_energy,
    gpaw_parameters,
    part_sheets,
    settings_record,
)
from aiida_physgen.ml import graphene

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "graphene" / "dft_sheets.extxyz"


def done_indices(path: Path, part: str) -> set[int]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    return {int(a.info["index"]) for a in read(str(path), index=":") if a.info.get("part") == part}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=sorted(PARTS), action="append", help="part(s) to compute (default: all)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="extxyz file to append to")
    parser.add_argument("--limit", type=int, help="compute at most this many sheets per part (a quick try)")
    parser.add_argument("--indices", type=int, nargs="+", help="only these sheets of the part (to share it out)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit: got {args.limit}, expected a positive number of sheets")
    if args.indices is not None:
        parts = args.part or list(PARTS)
        largest = min(PARTS[name].count for name in parts)
        bad = [i for i in args.indices if not 0 <= i < largest]
        if bad:
            parser.error(f"--indices: got {bad}, expected sheet indices from 0 to {largest - 1} of part(s) {parts}")
    settings = DftSettings()
    record = json.dumps(settings_record(settings), sort_keys=True)
    for name in args.part or list(PARTS):
        part = PARTS[name]
        lattice = part.lattice
        parameters = gpaw_parameters(lattice, settings)
        sheets = part_sheets(part)
        done = done_indices(args.out, name)
        wanted = range(len(sheets)) if args.indices is None else args.indices
        todo = [i for i in wanted if i not in done][: args.limit]
        print(f"{name}: {len(sheets)} sheets of {lattice.nx} x {lattice.ny} cells, {len(done)} done, {len(todo)} to do")
        for i in todo:
            atoms = graphene.occupancy_to_atoms(sheets[i], lattice)
            energy, seconds = gpaw_energy(atoms, parameters)
            atoms.info.update(part=name, index=i, energy=energy, seconds=round(seconds, 2), settings=record)
            write(str(args.out), atoms, format="extxyz", append=True)
            print(f"{name} {i:3d}: {len(atoms):3d} atoms, E = {energy:.5f} eV, {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    start = time.time()
    code = main()
    print(f"done in {time.time() - start:.0f} s", file=sys.stderr)
    sys.exit(code)
