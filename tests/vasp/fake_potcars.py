#!/usr/bin/env python
"""Write a header-only FAKE POTCAR family (``DIR/<symbol>/POTCAR``) for H, C, O, Si, Li, Mg, Al.

The files contain NO pseudopotential data - only the header lines that
aiida-vasp 5.1.0 / parsevasp 3.4.0 read when a POTCAR is uploaded:

* ``parsevasp.potcar.Potcar`` regex-searches the block between
  ``parameters from PSCTR are:`` and ``END of PSCTR-controll parameters`` for
  ``KEY = value`` pairs (values end at ``;`` or end of line).  ``TITEL`` is
  mandatory: its 2nd word is the *symbol* (``Si``), the part before ``_`` is the
  *element*.  ``LEXCH`` gives the functional (``PE`` -> PBE).  ``ZVAL``,
  ``ENMAX``, ``POMASS`` ... are parsed to floats if present.
* ``PotcarFileData.add_file`` requires the path ``<family_dir>/<symbol>/POTCAR``
  (``full_name`` = parent folder name, ``potential_set`` = grand-parent name);
  the parent folder should equal the symbol parsed from TITEL.
* ``MultiPotcarIo.read`` splits concatenated POTCARs at ``End of Dataset``, so
  each file ends with that line.
* Uniqueness is by sha512 of the whitespace-normalised text, so every file must
  differ (they do: different TITEL).

The fake VASP (``fake_vasp.py``) reads ZVAL from these headers to get NELECT.

Usage::

    python tests/vasp/fake_potcars.py DIR                                  # write DIR/<symbol>/POTCAR
    python tests/vasp/fake_potcars.py DIR --upload FAKE_PBE --profile presto   # and upload them as a family
"""

import argparse
import pathlib
import sys

# symbol: (ZVAL, ENMAX [eV], POMASS, VRHFIN valence string) - round, made-up-ish header numbers.
ELEMENTS = {
    "H": (1.0, 250.0, 1.000, "H: s1"),
    "C": (4.0, 400.0, 12.011, "C: s2p2"),
    "O": (6.0, 400.0, 16.000, "O: s2p4"),
    "Si": (4.0, 245.0, 28.085, "Si: s2p2"),
    # light metals of the crystal tests (tests/aiida/test_crystal_screening.py)
    "Li": (1.0, 140.0, 7.010, "Li: s1"),
    "Mg": (2.0, 200.0, 24.305, "Mg: s2"),
    "Al": (3.0, 240.0, 26.982, "Al: s2p1"),
    # a magnetic element: the spin-polarised defaults (tests/aiida/test_spin_defaults.py)
    "Fe": (8.0, 270.0, 55.845, "Fe: d7s1"),
}

TEMPLATE = """  PAW_PBE {symbol} FAKE
 {zval:.8f}
 FAKE header-only POTCAR written by fake_potcars.py - contains no pseudopotential data, for tests only
 parameters from PSCTR are:
   VRHFIN ={vrhfin}
   LEXCH  = PE
   EATOM  =     0.0000 eV,    0.0000 Ry

   TITEL  = PAW_PBE {symbol} FAKE
   LULTRA =        F    use ultrasoft PP ?
   IUNSCR =        1    unscreen: 0-lin 1-nonlin 2-no
   RPACOR =    0.000    partial core radius
   POMASS =  {pomass:7.3f}; ZVAL   =  {zval:7.3f}    mass and valenz
   RCORE  =    1.500    outmost cutoff radius
   RWIGS  =    1.500; RWIGS  =    0.794    wigner-seitz radius (au A)
   ENMAX  =  {enmax:7.3f}; ENMIN  =  {enmin:7.3f} eV
   ICORE  =        2    local potential
   LCOR   =        T    correct aug charges
   LPAW   =        T    paw PP
   EAUG   =    0.000
   DEXC   =    0.000
   RMAX   =    2.000    core radius for proj-oper
   RAUG   =    1.300    factor for augmentation sphere
   RDEP   =    1.500    radius for radial grids
   RDEPT  =    1.500    core radius for aug-charge

   END of PSCTR-controll parameters
 End of Dataset
"""


def write_family(root: pathlib.Path) -> list[pathlib.Path]:
    """Write ``root/<symbol>/POTCAR`` for every element; return the written paths."""
    paths = []
    for symbol, (zval, enmax, pomass, vrhfin) in ELEMENTS.items():
        path = root / symbol / "POTCAR"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            TEMPLATE.format(symbol=symbol, zval=zval, enmax=enmax, enmin=0.75 * enmax, pomass=pomass, vrhfin=vrhfin)
        )
        paths.append(path)
    return paths


def upload(root: pathlib.Path, family: str, profile: str) -> None:
    """Upload the folder as a POTCAR family (idempotent: re-uses existing nodes)."""
    from aiida import load_profile

    load_profile(profile)
    from aiida_vasp.data.potcar import PotcarData

    result = PotcarData.upload_potcar_family(
        str(root), family, "FAKE header-only POTCARs (H, C, O, Si, Li, Mg, Al) for testing", stop_if_existing=False
    )
    print(f"(files found, added to family, newly uploaded) = {result}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--upload", metavar="FAMILY", help="also upload as this family name")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    root = pathlib.Path(args.dir).resolve()
    for path in write_family(root):
        print(f"wrote {path}")
    if args.upload:
        upload(root, args.upload, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
