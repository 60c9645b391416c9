#!/usr/bin/env python3
"""fake_vasp.py - a cheap stand-in for the VASP executable, for testing aiida-vasp 5.1.0 work chains.

Run it in a directory that holds INCAR, POSCAR, KPOINTS and (optionally) POTCAR, exactly as
aiida-vasp's ``VaspCalculation`` prepares them.  It

1. reads POSCAR with ASE, INCAR with a small parser, KPOINTS (automatic Gamma/Monkhorst-Pack mesh or
   an explicit list), and the ZVAL of every POTCAR header (header-only fake POTCARs are fine) to get NELECT;
2. evaluates energy / forces / stress with a cheap ASE calculator: EMT when every element is one EMT
   knows (H C N O Al Ni Cu Pd Ag Pt Au), otherwise Lennard-Jones (e.g. Si); ``FAKE_VASP_CALC=emt|lj``
   forces one;
3. if NSW > 0 and IBRION in (1, 2, 3) relaxes for at most NSW ionic steps (BFGS for IBRION 1/2, FIRE for 3;
   ISIF >= 3 also relaxes the cell) until EDIFFG is met (EDIFFG < 0: max force < |EDIFFG| eV/A;
   EDIFFG > 0: energy change < EDIFFG eV; default EDIFFG = 10*EDIFF, EDIFF default 1e-4);
4. writes what aiida-vasp's parser reads:

   * ``vasprun.xml`` - generator/version 6.4.2, incar, kpoints, parameters (NELM, NSW, IBRION, NBANDS,
     ISPIN, ... in flat <separator>s), atominfo, initialpos, one <calculation> per ionic step (scstep
     energies, structure, forces, stress [kB], energy), eigenvalues + a total DOS (one set per spin;
     partial DOS too when LORBIT >= 10) with efermi in the last calculation, finalpos, ``</modeling>``;
   * ``OUTCAR`` - the "   NSW =", "   IBRION =", "   NELM =" and "NBANDS=" lines, one
     "Iteration  i(  j)" line per electronic step, TOTEN / forces blocks, and the final
     "General timing and accounting informations" block (run_stats);
   * ``CONTCAR`` (last evaluated geometry) and the stdout (aiida-vasp names it ``vasp_output``) with
     "vasp.6.4.2", DAV lines and "F= ... E0= ..." lines;
   * small placeholder ``WAVECAR``/``CHGCAR`` unless LWAVE/LCHARG = .FALSE. (so that aiida-vasp's
     restart logic, which looks for them in the remote folder, is exercised).

Eigenvalues and DOS are synthetic (a rigid band model with a gap above the highest occupied band,
NELECT/2 filled bands, absolute energies with E_F = VBM + 0.1 eV, as VASP writes absolute energies).

How aiida-vasp decides convergence (OUTCAR run_status, parsevasp 3.4.0), and how to trigger failures:

* electronic_converged  <=>  #electronic steps of the LAST ionic step < NELM.  The fake SCF needs
  ``FAKE_VASP_SCF_STEPS`` steps (default 12) in the first ionic step and about half in later ones; it
  stops at NELM.  So ``NELM <= 12`` in INCAR  -> "electronic structure not converged" (exit 701).
  ``FAKE_VASP_SCF_FAIL=1`` (environment) or the string ``FAKE_SCF_FAIL`` in INCAR SYSTEM -> never
  converges, whatever NELM.
* ionic_converged  <=>  #ionic steps < NSW (IBRION > 0).  The fake stops as soon as EDIFFG is met,
  so a small NSW (or ``FAKE_VASP_IONIC_FAIL=1``, which ignores EDIFFG) -> exactly NSW steps ->
  "ionic relaxation not converged" (exit 702).
* finished  <=>  OUTCAR has the timing block and vasprun.xml ends with ``</modeling>``.
  ``FAKE_VASP_CRASH=1`` writes both files truncated after the first ionic step (exit 700).

All ``FAKE_*`` variables can be set via ``metadata.options.environment_variables`` of the CalcJob.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")  # stdout+stderr are joined into vasp_output, keep it clean

VERSION = "6.4.2"
START = time.time()


# ----------------------------------------------------------------------------------------------
# input readers
# ----------------------------------------------------------------------------------------------
def _convert(token: str):
    low = token.lower()
    if low in (".true.", "t", ".t.", "true"):
        return True
    if low in (".false.", "f", ".f.", "false"):
        return False
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token.replace("d", "e").replace("D", "E"))
    except ValueError:
        return token


def read_incar(path: str = "INCAR") -> dict:
    """INCAR -> {TAG: value}; tags upper-case; lists for multi-token numeric values."""
    tags: dict = {}
    if not os.path.exists(path):
        return tags
    with open(path, encoding="utf8") as handle:
        text = handle.read()
    for raw in text.splitlines():
        line = re.split(r"[#!]", raw, maxsplit=1)[0]
        for stmt in line.split(";"):
            if "=" not in stmt:
                continue
            key, value = stmt.split("=", 1)
            key, value = key.strip().upper(), value.strip()
            if not key:
                continue
            tokens = value.split()
            if key == "SYSTEM" or len(tokens) == 0:
                tags[key] = value
            elif len(tokens) == 1:
                tags[key] = _convert(tokens[0])
            else:
                values = [_convert(tok) for tok in tokens]
                tags[key] = values if all(isinstance(v, (int, float)) for v in values) else value
    return tags


def read_zvals(path: str = "POTCAR") -> list[float]:
    """ZVAL of every dataset in a (possibly concatenated, possibly header-only) POTCAR."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf8", errors="replace") as handle:
        text = handle.read()
    return [float(m) for m in re.findall(r"ZVAL\s*=\s*([-0-9.]+)", text)]


def read_kpoints(path: str, cell: np.ndarray):
    """Return (points [direct], weights, divisions or None, generation label)."""
    default = (np.zeros((1, 3)), np.ones(1), [1, 1, 1], "Gamma")
    if not os.path.exists(path):
        return default
    with open(path, encoding="utf8") as handle:
        lines = [ln.strip() for ln in handle.readlines()]
    try:
        nkpt = int(lines[1].split()[0])
        mode = lines[2][:1].lower()
        if nkpt == 0 and mode in ("g", "m"):
            divisions = [int(x) for x in lines[3].split()[:3]]
            shift = [float(x) for x in lines[4].split()[:3]] if len(lines) > 4 and lines[4] else [0.0] * 3
            axes = []
            for n, s in zip(divisions, shift):
                if mode == "g":
                    ks = (np.arange(n) + s) / n
                else:
                    ks = (2 * np.arange(n) - n + 1) / (2.0 * n) + s / n
                ks = ks - np.round(ks)  # map to [-0.5, 0.5)
                axes.append(ks)
            grid = np.array(np.meshgrid(*axes, indexing="ij")).reshape(3, -1).T
            return grid, np.full(len(grid), 1.0 / len(grid)), divisions, "Gamma" if mode == "g" else "Monkhorst-Pack"
        if nkpt == 0 and mode == "a":  # fully automatic, length
            length = float(lines[3].split()[0])
            recip = np.linalg.norm(np.linalg.inv(cell).T, axis=1)
            divisions = [max(1, int(length * r + 0.5)) for r in recip]
            with open(path + ".tmp", "w", encoding="utf8") as out:
                out.write("auto\n0\nGamma\n{} {} {}\n0 0 0\n".format(*divisions))
            result = read_kpoints(path + ".tmp", cell)
            os.remove(path + ".tmp")
            return result
        if nkpt > 0:  # explicit list
            cart = lines[2][:1].lower() in ("c", "k")
            data = np.array([[float(x) for x in ln.split()[:4]] for ln in lines[3 : 3 + nkpt]])
            points = data[:, :3]
            if cart:
                points = points @ cell.T  # cartesian (2pi/a) -> direct, approximately
            weights = data[:, 3] / data[:, 3].sum()
            return points, weights, None, "explicit"
    except (IndexError, ValueError):
        pass
    return default


# ----------------------------------------------------------------------------------------------
# physics stand-ins
# ----------------------------------------------------------------------------------------------
def make_calculator(symbols):
    from ase.calculators.emt import EMT, parameters
    from ase.calculators.lj import LennardJones
    from ase.data import atomic_numbers, covalent_radii

    choice = os.environ.get("FAKE_VASP_CALC", "").lower()
    if choice == "emt" or (not choice and all(s in parameters for s in symbols)):
        return EMT(), "EMT"
    # one sigma for all species: minimum of the pair potential at the mean covalent bond length
    bond = 2 * np.mean([covalent_radii[atomic_numbers[s]] for s in symbols])
    sigma = bond / 2 ** (1 / 6)
    return LennardJones(sigma=sigma, epsilon=1.0, rc=2.5 * sigma, smooth=True), f"LennardJones(sigma={sigma:.3f})"


def scf_steps_needed(ionic_step: int, incar: dict) -> float:
    if os.environ.get("FAKE_VASP_SCF_FAIL") or "FAKE_SCF_FAIL" in str(incar.get("SYSTEM", "")).upper():
        return math.inf
    first = int(os.environ.get("FAKE_VASP_SCF_STEPS", "12"))
    return first if ionic_step == 1 else max(4, first // 2)


def scf_energies(e_final: float, nsteps: int, converged: bool) -> list[float]:
    """Decaying oscillating sequence ending at e_final (exactly, if converged)."""
    amp = 25.0
    values = [e_final + amp * (-0.45) ** j for j in range(nsteps)]
    if converged:
        values[-1] = e_final
    return values


def fake_bands(kpoints: np.ndarray, nelect: float, nbands: int, ispin: int, periodic: bool):
    """Rigid synthetic band structure -> eigenvalues (ispin, nk, nb), occupations, E_F."""
    nocc = int(math.ceil(nelect / 2.0))
    nocc = min(nocc, nbands - 1)
    e_vbm_nominal, gap = 5.0, (1.2 if periodic else 5.0)
    disp = 0.3 * np.cos(2 * np.pi * kpoints).mean(axis=1) if periodic else np.zeros(len(kpoints))
    eig = np.zeros((ispin, len(kpoints), nbands))
    for n in range(nbands):
        if n < nocc:
            base = e_vbm_nominal - (nocc - 1 - n) * 1.5
            eig[:, :, n] = base + disp
        else:
            base = e_vbm_nominal + gap + (n - nocc) * 1.0
            eig[:, :, n] = base - disp
    occ = np.zeros_like(eig)
    occ[:, :, :nocc] = 1.0
    vbm = eig[:, :, :nocc].max()
    return eig, occ, vbm + 0.1


def fake_dos(eig, weights, ispin, nedos, sigma, emin=None, emax=None):
    """Gaussian-broadened total DOS per spin (states/eV/cell) and its integral."""
    lo = eig.min() - 2.0 if emin is None else emin
    hi = eig.max() + 2.0 if emax is None else emax
    energy = np.linspace(lo, hi, nedos)
    width = max(sigma, 1.5 * (hi - lo) / max(nedos - 1, 1))
    spin_factor = 2.0 / ispin
    dos = np.zeros((ispin, nedos))
    for s in range(ispin):
        for k, w in enumerate(weights):
            diff = energy[:, None] - eig[s, k][None, :]
            dos[s] += (
                spin_factor * w * np.exp(-0.5 * (diff / width) ** 2).sum(axis=1) / (width * math.sqrt(2 * math.pi))
            )
    step = energy[1] - energy[0] if nedos > 1 else 1.0
    integrated = np.cumsum(dos, axis=1) * step
    return energy, dos, integrated


# ----------------------------------------------------------------------------------------------
# writers
# ----------------------------------------------------------------------------------------------
def _fmt_v(vec, fmt="{:16.8f}"):
    return " ".join(fmt.format(float(x)) for x in vec)


def _xml_i(name, value, indent="   "):
    if isinstance(value, bool):
        return f'{indent}<i type="logical" name="{name}"> {"T" if value else "F"}  </i>'
    if isinstance(value, int):
        return f'{indent}<i type="int" name="{name}">{value:8d}</i>'
    if isinstance(value, float):
        return f'{indent}<i name="{name}">{value:16.8f}</i>'
    if isinstance(value, (list, tuple)):
        kind = ' type="int"' if all(isinstance(v, int) for v in value) else ""
        return f'{indent}<v{kind} name="{name}">' + " ".join(str(v) for v in value) + " </v>"
    return f'{indent}<i type="string" name="{name}">{value}</i>'


def _structure_xml(atoms, name=None):
    cell = np.array(atoms.cell)
    rec = np.linalg.inv(cell).T
    head = f' <structure name="{name}">' if name else "  <structure>"
    out = [head, "   <crystal>", '    <varray name="basis" >']
    out += [f"     <v>{_fmt_v(row)} </v>" for row in cell]
    out += ["    </varray>", f'    <i name="volume">{atoms.get_volume():16.8f} </i>', '    <varray name="rec_basis" >']
    out += [f"     <v>{_fmt_v(row)} </v>" for row in rec]
    out += ["    </varray>", "   </crystal>", '   <varray name="positions" >']
    out += [f"    <v>{_fmt_v(row)} </v>" for row in atoms.get_scaled_positions(wrap=False)]
    out += ["   </varray>", "  </structure>" if not name else " </structure>"]
    return out


def _energy_xml(energy, indent="   "):
    return [
        f"{indent}<energy>",
        f'{indent} <i name="e_fr_energy">{energy:16.8f} </i>',
        f'{indent} <i name="e_wo_entrp">{energy:16.8f} </i>',
        f'{indent} <i name="e_0_energy">{energy:16.8f} </i>',
        f"{indent}</energy>",
    ]


def species_blocks(symbols):
    """[(symbol, count)] for consecutive runs, as in POSCAR."""
    blocks = []
    for sym in symbols:
        if blocks and blocks[-1][0] == sym:
            blocks[-1][1] += 1
        else:
            blocks.append([sym, 1])
    return blocks


def write_vasprun(path, ctx, steps, finished):
    atoms0, incar, params = ctx["atoms0"], ctx["incar"], ctx["params"]
    symbols = atoms0.get_chemical_symbols()
    blocks = species_blocks(symbols)
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>", " <generator>"]
    out += [
        '  <i name="program" type="string">vasp </i>',
        f'  <i name="version" type="string">{VERSION}  </i>',
        '  <i name="subversion" type="string">fake_vasp.py (aiida-vasp test stand-in) </i>',
        '  <i name="platform" type="string">LinuxPython </i>',
        f'  <i name="date" type="string">{time.strftime("%Y %m %d")} </i>',
        f'  <i name="time" type="string">{time.strftime("%H:%M:%S")} </i>',
        " </generator>",
        " <incar>",
    ]
    out += [_xml_i(k, v, "  ") for k, v in incar.items()]
    out += [" </incar>", " <kpoints>"]
    if ctx["divisions"] is not None:
        out += [
            f'  <generation param="{ctx["kgen"]}">',
            '   <v type="int" name="divisions">' + " ".join(f"{d:8d}" for d in ctx["divisions"]) + " </v>",
            '   <v name="usershift">      0.00000000       0.00000000       0.00000000 </v>',
            "  </generation>",
        ]
    out += ['  <varray name="kpointlist" >'] + [f"   <v>{_fmt_v(k)} </v>" for k in ctx["kpoints"]]
    out += ["  </varray>", '  <varray name="weights" >'] + [f"   <v>{w:16.8f} </v>" for w in ctx["weights"]]
    out += ["  </varray>", " </kpoints>", " <parameters>"]
    for sep, keys in ctx["separators"].items():
        out.append(f'  <separator name="{sep}" >')
        out += [_xml_i(k, params[k], "   ") for k in keys]
        out.append("  </separator>")
    out += [
        " </parameters>",
        " <atominfo>",
        f"  <atoms>{len(symbols):8d} </atoms>",
        f"  <types>{len(blocks):8d} </types>",
    ]
    out += [
        '  <array name="atoms" >',
        '   <dimension dim="1">ion</dimension>',
        '   <field type="string">element</field>',
        '   <field type="int">atomtype</field>',
        "   <set>",
    ]
    for itype, (sym, count) in enumerate(blocks, start=1):
        out += [f"    <rc><c>{sym:2s}</c><c>{itype:4d}</c></rc>"] * count
    out += ["   </set>", "  </array>", '  <array name="atomtypes" >', '   <dimension dim="1">type</dimension>']
    out += [
        '   <field type="int">atomspertype</field>',
        '   <field type="string">element</field>',
        "   <field>mass</field>",
        "   <field>valence</field>",
        '   <field type="string">pseudopotential</field>',
        "   <set>",
    ]
    for itype, (sym, count) in enumerate(blocks):
        zval = ctx["zval_per_type"][itype]
        out.append(
            f"    <rc><c>{count:4d}</c><c>{sym:2s}</c><c>{1.0:16.8f}</c><c>{zval:16.8f}</c>"
            f"<c>  PAW_PBE {sym} FAKE</c></rc>"
        )
    out += ["   </set>", "  </array>", " </atominfo>"]
    out += _structure_xml(atoms0, "initialpos")
    for istep, step in enumerate(steps):
        out.append(" <calculation>")
        for e_sc in step["scf"]:
            out += ["  <scstep>", '   <time name="dav">    0.01    0.01</time>']
            out += _energy_xml(e_sc, "   ")
            out.append("  </scstep>")
        out += _structure_xml(step["atoms"])
        out += ['  <varray name="forces" >'] + [f"   <v>{_fmt_v(f)} </v>" for f in step["forces"]] + ["  </varray>"]
        out += ['  <varray name="stress" >'] + [f"   <v>{_fmt_v(s)} </v>" for s in step["stress_kb"]] + ["  </varray>"]
        out += _energy_xml(step["energy"], "  ")
        out.append('  <time name="totalsc">    0.05    0.05</time>')
        if istep == len(steps) - 1 and finished:
            out += _eigen_dos_xml(ctx)
        out.append(" </calculation>")
    if finished:
        out += _structure_xml(steps[-1]["atoms"], "finalpos")
        out.append("</modeling>")
    with open(path, "w", encoding="utf8") as handle:
        handle.write("\n".join(out) + "\n")


def _eigen_dos_xml(ctx):
    eig, occ, efermi, ispin = ctx["eig"], ctx["occ"], ctx["efermi"], ctx["ispin"]
    out = [
        "  <eigenvalues>",
        "   <array>",
        '    <dimension dim="1">band</dimension>',
        '    <dimension dim="2">kpoint</dimension>',
        '    <dimension dim="3">spin</dimension>',
        "    <field>eigene</field>",
        "    <field>occ</field>",
        "    <set>",
    ]
    for s in range(ispin):
        out.append(f'     <set comment="spin {s + 1}">')
        for k in range(eig.shape[1]):
            out.append(f'      <set comment="kpoint {k + 1}">')
            out += [f"       <r>{eig[s, k, n]:10.4f} {occ[s, k, n]:9.4f} </r>" for n in range(eig.shape[2])]
            out.append("      </set>")
        out.append("     </set>")
    out += ["    </set>", "   </array>", "  </eigenvalues>"]
    energy, dos, integ = ctx["dos"]
    out += [
        "  <dos>",
        f'   <i name="efermi">{efermi:16.8f} </i>',
        "   <total>",
        "    <array>",
        '     <dimension dim="1">gridpoints</dimension>',
        '     <dimension dim="2">spin</dimension>',
        "     <field>energy</field>",
        "     <field>total</field>",
        "     <field>integrated</field>",
        "     <set>",
    ]
    for s in range(ispin):
        out.append(f'      <set comment="spin {s + 1}">')
        out += [f"       <r>{energy[i]:10.4f} {dos[s, i]:12.4f} {integ[s, i]:12.4f} </r>" for i in range(len(energy))]
        out.append("      </set>")
    out += ["     </set>", "    </array>", "   </total>"]
    if ctx["lorbit"] >= 10:
        natoms = len(ctx["atoms0"])
        orbitals = ["s", "py", "pz", "px", "dxy", "dyz", "dz2", "dxz", "x2-y2"]
        share = np.array([0.4, 0.2, 0.2, 0.2, 0, 0, 0, 0, 0]) / natoms
        out += (
            [
                "   <partial>",
                "    <array>",
                '     <dimension dim="1">gridpoints</dimension>',
                '     <dimension dim="2">spin</dimension>',
                '     <dimension dim="3">ion</dimension>',
                "     <field>energy</field>",
            ]
            + [f"     <field>{o}</field>" for o in orbitals]
            + ["     <set>"]
        )
        for ion in range(natoms):
            out.append(f'      <set comment="ion {ion + 1}">')
            for s in range(ispin):
                out.append(f'       <set comment="spin {s + 1}">')
                out += [
                    "        <r>" + f"{energy[i]:10.4f} " + " ".join(f"{dos[s, i] * x:8.4f}" for x in share) + " </r>"
                    for i in range(len(energy))
                ]
                out.append("       </set>")
            out.append("      </set>")
        out += ["     </set>", "    </array>", "   </partial>"]
    out.append("  </dos>")
    return out


def write_outcar(path, ctx, steps, finished, reached):
    p = ctx["params"]
    natoms = len(ctx["atoms0"])
    out = [
        f" vasp.{VERSION} 20Jul23 (build fake) complex",
        " executed on             LinuxPython date " + time.strftime("%Y.%m.%d  %H:%M:%S"),
        " running on    1 total cores",
        " POTCAR:    "
        + "   ".join(f"PAW_PBE {s} FAKE" for s, _ in species_blocks(ctx["atoms0"].get_chemical_symbols())),
        "",
        " Dimension of arrays:",
        f"   k-points           NKPTS = {len(ctx['kpoints']):6d}   k-points in BZ     NKDIM = {len(ctx['kpoints']):6d}"
        f"   number of bands    NBANDS= {p['NBANDS']:6d}",
        f"   number of dos      NEDOS = {p['NEDOS']:6d}   number of ions     NIONS = {natoms:6d}",
        "",
        f" SYSTEM =  {p['SYSTEM']}",
        " Startparameter for this run:",
        f"   ISTART = {p['ISTART']:6d}    job   : 0-new  1-cont  2-samecut",
        f"   ICHARG = {p['ICHARG']:6d}    charge: 1-file 2-atom 10-const",
        f"   ISPIN  = {p['ISPIN']:6d}    spin polarized calculation?",
        " Electronic Relaxation 1",
        f"   ENCUT  = {p['ENCUT']:7.1f} eV",
        f"   NELM   = {p['NELM']:6d};   NELMIN={p['NELMIN']:3d}; NELMDL={p['NELMDL']:3d}     # of ELM steps",
        f"   EDIFF  = {p['EDIFF']:.1E}   stopping-criterion for ELM",
        " Ionic relaxation",
        f"   EDIFFG = {p['EDIFFG']:.1E}   stopping-criterion for IOM",
        f"   NSW    = {p['NSW']:6d}    number of steps for IOM",
        f"   IBRION = {p['IBRION']:6d}    ionic relax: 0-MD 1-quasi-New 2-CG",
        f"   ISIF   = {p['ISIF']:6d}    stress and relaxation",
        f"   POTIM  = {p['POTIM']:8.4f}    time-step for ionic-motion",
        f"   NELECT = {p['NELECT']:10.4f}    total number of electrons",
        f"   ISMEAR = {p['ISMEAR']:6d};   SIGMA  = {p['SIGMA']:6.2f}  broadening in eV -4-tet -1-fermi 0-gaus",
        f"   calculator used by fake_vasp.py: {ctx['calc_name']}",
        "",
    ]
    for i, step in enumerate(steps, start=1):
        for j, _e_sc in enumerate(step["scf"], start=1):
            out += [
                f"----------------------------------------- Iteration {i:6d}({j:4d})  "
                "---------------------------------------",
                "",
                "      LOOP:  cpu time      0.0100: real time      0.0100",
                "",
            ]
        out += [
            "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"  free  energy   TOTEN  = {step['energy']:18.8f} eV",
            "",
            f"  energy  without entropy= {step['energy']:18.8f}  energy(sigma->0) = {step['energy']:18.8f}",
            "",
            " POSITION                                       TOTAL-FORCE (eV/Angst)",
            " -----------------------------------------------------------------------------------",
        ]
        out += [
            " " + _fmt_v(pos, "{:12.5f}") + "    " + _fmt_v(f, "{:13.6f}")
            for pos, f in zip(step["atoms"].positions, step["forces"])
        ]
        out += [
            " -----------------------------------------------------------------------------------",
            f"  max |force| = {np.abs(step['forces']).max():.6f}",
            "",
            "     LOOP+:  cpu time      0.0500: real time      0.0500",
            "",
        ]
    if reached:
        out += [" reached required accuracy - stopping structural energy minimisation", ""]
    if finished:
        elapsed = time.time() - START
        out += [
            " General timing and accounting informations for this job:",
            " ========================================================",
            "",
            f"                  Total CPU time used (sec): {time.process_time():12.3f}",
            f"                            User time (sec): {time.process_time():12.3f}",
            f"                          System time (sec): {0.0:12.3f}",
            f"                         Elapsed time (sec): {elapsed:12.3f}",
            "",
            "                   Maximum memory used (kb):       50000.",
            "                   Average memory used (kb):       40000.",
            "",
            "                          Minor page faults:         1000",
            "                          Major page faults:            0",
            "                 Voluntary context switches:           10",
        ]
    with open(path, "w", encoding="utf8") as handle:
        handle.write("\n".join(out) + "\n")


# ----------------------------------------------------------------------------------------------
# main driver
# ----------------------------------------------------------------------------------------------
def main() -> int:
    import ase.io
    from ase import units

    stdout = sys.stdout
    incar = read_incar("INCAR")
    atoms = ase.io.read("POSCAR", format="vasp")
    symbols = atoms.get_chemical_symbols()
    blocks = species_blocks(symbols)
    zvals = read_zvals("POTCAR")
    if len(zvals) != len(blocks):
        zvals = [4.0] * len(blocks)
    nelect = float(incar.get("NELECT", sum(z * n for z, (_, n) in zip(zvals, blocks))))
    ispin = int(incar.get("ISPIN", 1))
    nbands = int(incar.get("NBANDS", max(int(math.ceil(nelect / 2)) + max(4, len(atoms)), 8)))
    nsw = int(incar.get("NSW", 0))
    ibrion = int(incar.get("IBRION", -1 if nsw in (0, 1) else 0))
    ediff = float(incar.get("EDIFF", 1e-4))
    ediffg = float(incar.get("EDIFFG", 10 * ediff))
    params = {
        "SYSTEM": str(incar.get("SYSTEM", "unknown system")),
        "PREC": str(incar.get("PREC", "normal")),
        "ISTART": int(incar.get("ISTART", 0)),
        "ICHARG": int(incar.get("ICHARG", 2)),
        "ENCUT": float(incar.get("ENCUT", 400.0)),
        "NELECT": nelect,
        "NBANDS": nbands,
        "ISMEAR": int(incar.get("ISMEAR", 1)),
        "SIGMA": float(incar.get("SIGMA", 0.2)),
        "ISPIN": ispin,
        "NELM": int(incar.get("NELM", 60)),
        "NELMIN": int(incar.get("NELMIN", 2)),
        "NELMDL": int(incar.get("NELMDL", -5)),
        "EDIFF": ediff,
        "ALGO": str(incar.get("ALGO", "Normal")),
        "NSW": nsw,
        "IBRION": ibrion,
        "ISIF": int(incar.get("ISIF", 2)),
        "POTIM": float(incar.get("POTIM", 0.5)),
        "EDIFFG": ediffg,
        "LORBIT": int(incar.get("LORBIT", 0) or 0),
        "NEDOS": int(incar.get("NEDOS", 301)),
    }
    separators = {
        "general": ["SYSTEM", "PREC"],
        "electronic": ["ENCUT", "NELECT", "NBANDS", "ALGO", "ISMEAR", "SIGMA", "ISPIN"],
        "electronic convergence": ["NELM", "NELMIN", "NELMDL", "EDIFF"],
        "ionic": ["NSW", "IBRION", "ISIF", "POTIM", "EDIFFG"],
        "dos": ["LORBIT", "NEDOS"],
        "startup": ["ISTART", "ICHARG"],
    }
    cell = np.array(atoms.cell)
    kpoints, weights, divisions, kgen = read_kpoints("KPOINTS", cell)
    calc, calc_name = make_calculator(symbols)
    atoms.calc = calc
    atoms0 = atoms.copy()

    print(" running    1 mpi-ranks, with    1 threads/rank, on    1 nodes", file=stdout)
    print(f" vasp.{VERSION} 20Jul23 (build fake_vasp.py) complex", file=stdout)
    print(f" POSCAR found :  {len(blocks)} types and {len(atoms):7d} ions", file=stdout)
    print(f" fake_vasp.py: {calc_name}, NSW={nsw} IBRION={ibrion} EDIFFG={ediffg} NELM={params['NELM']}", file=stdout)
    if params["ISTART"] > 0 and os.path.exists("WAVECAR"):
        print(" reading WAVECAR", file=stdout)

    relax = nsw > 0 and ibrion in (1, 2, 3)
    target = atoms
    if relax and params["ISIF"] >= 3:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms)
    optimizer = None
    if relax:
        from ase.optimize import BFGS, FIRE

        opt_cls = FIRE if ibrion == 3 else BFGS
        optimizer = opt_cls(target, logfile=None, maxstep=min(0.2, max(0.05, params["POTIM"] * 0.4)))

    crash = bool(os.environ.get("FAKE_VASP_CRASH"))
    ionic_fail = bool(os.environ.get("FAKE_VASP_IONIC_FAIL"))
    nmax = nsw if relax else 1
    steps, reached, e_prev = [], False, None
    for istep in range(1, nmax + 1):
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        try:
            stress_voigt = atoms.get_stress(voigt=False)
        except Exception:  # noqa: BLE001 - calculator without stress
            stress_voigt = np.zeros((3, 3))
        stress_kb = -np.asarray(stress_voigt) / (0.1 * units.GPa)
        needed = scf_steps_needed(istep, incar)
        n_scf = int(min(needed, params["NELM"]))
        scf_ok = needed < params["NELM"]
        scf = scf_energies(energy, n_scf, scf_ok)
        for j, e_sc in enumerate(scf, start=1):
            print(
                f"DAV: {j:3d}    {e_sc: .12E}   {e_sc - (scf[j - 2] if j > 1 else 0.0): .5E}   -0.1E+01   16   0.1E+01",
                file=stdout,
            )
        dE = energy - e_prev if e_prev is not None else energy
        print(f"{istep:4d} F= {energy: .8E} E0= {energy: .8E}  d E ={dE: .6E}", file=stdout)
        steps.append(
            {"atoms": atoms.copy(), "energy": energy, "forces": forces.copy(), "stress_kb": stress_kb, "scf": scf}
        )
        if crash:
            break
        if not relax:
            break
        fmax = float(np.sqrt((forces**2).sum(axis=1)).max())
        if params["ISIF"] >= 3:
            fmax = max(fmax, float(np.abs(stress_voigt).max() * len(atoms)))
        if ediffg < 0:
            converged = fmax < abs(ediffg)
        else:
            converged = e_prev is not None and abs(energy - e_prev) < ediffg
        e_prev = energy
        if converged and not ionic_fail:
            reached = True
            print(" reached required accuracy - stopping structural energy minimisation", file=stdout)
            break
        if istep < nmax:
            optimizer.step()
    finished = not crash

    eig, occ, efermi = fake_bands(kpoints, nelect, nbands, ispin, periodic=bool(np.all(atoms.pbc)) and len(kpoints) > 1)
    dos = fake_dos(eig, weights, ispin, params["NEDOS"], max(params["SIGMA"], 0.05))
    ctx = {
        "atoms0": atoms0,
        "incar": incar,
        "params": params,
        "separators": separators,
        "kpoints": kpoints,
        "weights": weights,
        "divisions": divisions,
        "kgen": kgen,
        "zval_per_type": zvals,
        "eig": eig,
        "occ": occ,
        "efermi": efermi,
        "ispin": ispin,
        "dos": dos,
        "lorbit": params["LORBIT"],
        "calc_name": calc_name,
    }
    write_vasprun("vasprun.xml", ctx, steps, finished)
    write_outcar("OUTCAR", ctx, steps, finished, reached)
    last = steps[-1]["atoms"]
    last.calc = None
    ase.io.write("CONTCAR", last, format="vasp", direct=True, sort=False)
    if incar.get("LWAVE", True) is not False:
        with open("WAVECAR", "w", encoding="utf8") as handle:
            handle.write("fake WAVECAR written by fake_vasp.py\n")
    if incar.get("LCHARG", True) is not False:
        with open("CHGCAR", "w", encoding="utf8") as handle:
            handle.write("fake CHGCAR written by fake_vasp.py\n")
    if finished:
        print(" writing wavefunctions", file=stdout)
        return 0
    print(" fake_vasp.py: simulated crash (FAKE_VASP_CRASH)", file=stdout)
    return 1


if __name__ == "__main__":
    sys.exit(main())
