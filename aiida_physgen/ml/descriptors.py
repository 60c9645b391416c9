"""Differentiable atom-centred local descriptors (a SOAP-like power spectrum) in PyTorch.

LoGAN (Kovács et al. 2024) compares generated and reference structures through local
environment descriptors: the discriminator sees one descriptor vector per atom, so the descriptor
has to be differentiable with respect to the generated positions, and it has to be cheap on
batches of thousands of structures. This module provides it in plain PyTorch/NumPy/ASE (it must
never import AiiDA).

Definition, for a centre atom ``i`` and a neighbour element ``a``::

    c^a_{nlm}(i) = sum_{j in N(i), Z_j = a} f_cut(r_ij) g_n(r_ij) Y_lm(r_ij / |r_ij|)
    p^{ab}_{nn'l}(i) = sum_m c^a_{nlm}(i) c^b_{n'lm}(i)          for a <= b  (n <= n' when a == b)

* ``f_cut(r) = (cos(pi r / r_cut) + 1) / 2`` for ``r < r_cut``, else 0 (value and slope vanish at
  ``r_cut``).
* ``Y_lm`` are orthonormal real spherical harmonics (no Condon-Shortley phase), ``l <= l_max``.
* ``g_n`` is one of two radial bases:

  - ``"gaussian"``: ``exp(-(r - mu_n)^2 / (2 sigma^2))`` with the ``n_max`` centres ``mu_n``
    evenly spaced on ``[0, r_cut]`` (both ends included) and ``sigma`` half their spacing
    (``sigma = r_cut / 2`` for ``n_max == 1``), ordered by increasing centre.
  - ``"bessel"``: the ``l = 0`` spherical Bessel functions with a node at ``r_cut``,
    ``g_n(r) = sqrt(2 / r_cut) sin(n pi r / r_cut) / r`` for ``n = 1..n_max``, i.e.
    ``j_0(k_n r)`` with ``k_n r_cut`` the first ``n_max`` zeros of ``j_0``. They are orthonormal
    on ``[0, r_cut]`` with weight ``r^2``. Using ``j_0`` for every ``l`` (rather than ``j_l`` with
    ``l``-dependent zeros) keeps the radial part independent of ``l``, which is what the
    factorised contraction below relies on.

* ``N(i)``: all atoms within ``r_cut`` of ``i``, including periodic images and other images of
  ``i`` itself but not ``i``, truncated to the ``max_neighbours`` nearest (an adaptive cutoff in
  dense regions, as in LoGAN). Neighbours whose distance ties (within ``_TIE_TOLERANCE``) with the
  ``max_neighbours``-th one are all kept (up to ``2 * max_neighbours`` neighbours in all), so that
  the descriptor of a symmetric crystal does not depend on round-off, atom order or choice of
  lattice vectors. Like any hard neighbour count, the truncation makes the descriptor
  discontinuous where the ``max_neighbours``-th and the next neighbour swap places.

Features of one atom are ordered by ``l`` (slowest), then element pair ``(a, b)`` with ``a <= b``
in the order of ``settings.species``, then ``n``, then ``n'`` (fastest; ``n' >= n`` when
``a == b``): ``settings.n_features = (l_max + 1) * K (K + 1) / 2`` with ``K = len(species) * n_max``.

Periodic images come from a supercell large enough for ``r_cut``: pair vectors are first brought
to the minimum-image cell (fractional components in ``[-1/2, 1/2]``) and then translated by up to
``floor(r_cut / h_k + 1/2)`` lattice vectors along each periodic axis ``k``, where
``h_k = V / |a_i x a_j|`` is the perpendicular height of the cell. Every image within ``r_cut``
is then enumerated whatever lattice vectors describe the cell. For slabs and wires the
non-periodic cell vectors are replaced by unit vectors normal to the periodic ones for this
purpose only, so their length (vacuum, or zero) does not matter.

Coincident atoms (distance 0, which generators do produce) give finite values and gradients: the
distance is ``sqrt(|r|^2 + eps)`` and the direction ``r / sqrt(|r|^2 + eps)``; the spherical
harmonics are evaluated as homogeneous polynomials of that direction, which stay smooth at zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import ase.data
import numpy as np
import torch

if TYPE_CHECKING:  # only for annotations; the batch module is pure NumPy/ASE as well
    from aiida_physgen.ml.batch import StructureBatch

__all__ = [
    "DescriptorParameters",
    "DescriptorSettings",
    "LocalDescriptor",
    "real_spherical_harmonics",
    "species_indices",
    "atomic_descriptors",
    "structure_descriptors",
]

RADIAL_BASES = ("gaussian", "bessel")

#: added to squared distances before the square root (Å^2), so coincident atoms stay finite
_EPS = 1e-12
#: neighbours within this distance (Å) of the ``max_neighbours``-th one count as tied with it:
#: for float64 positions, and for lower precision (float32 positions are only good to ~1e-6 Å)
_TIE_TOLERANCE = 1e-6
_TIE_TOLERANCE_LOW_PRECISION = 1e-4
#: upper bound on the elements of the pairwise distance array built at once by the neighbour search
_SEARCH_BUDGET = 1 << 23
#: default number of structures per forward call in :func:`atomic_descriptors`
_DEFAULT_CHUNK = 4096
#: batch helpers split chunks further so that one forward handles about this many neighbour pairs
#: (measured: larger batches leave the CPU caches and run up to 3x slower per structure)
_EDGE_BUDGET = 1 << 15


# ---------------------------------------------------------------------------------------- settings
@dataclass
class DescriptorParameters:
    """The user-facing descriptor settings (everything but ``species``, which the composition fixes).

    These are the only place the descriptor defaults are written; families nest this dataclass in
    their settings and the selection falls back to it.
    """

    r_cut: float = 5.0
    n_max: int = 4
    l_max: int = 4
    max_neighbours: int = 20
    radial: str = "gaussian"

    def __post_init__(self) -> None:
        self.for_species((1,))  # validates every field, with DescriptorSettings' messages

    def for_species(self, species) -> DescriptorSettings:
        """Full settings for the atomic numbers ``species`` (sorted and de-duplicated here)."""
        return DescriptorSettings(
            species=tuple(sorted(set(int(z) for z in species))),
            r_cut=self.r_cut,
            n_max=self.n_max,
            l_max=self.l_max,
            max_neighbours=self.max_neighbours,
            radial=self.radial,
        )


_DEFAULT = DescriptorParameters.__dataclass_fields__


@dataclass(frozen=True)
class DescriptorSettings:
    """Hyper-parameters of :class:`LocalDescriptor`.

    :param species: atomic numbers, sorted ascending without duplicates; defines the channel order.
    :param r_cut: cutoff radius in Å.
    :param n_max: number of radial basis functions, 1..32.
    :param l_max: highest angular momentum of the spherical harmonics, 0..12.
    :param max_neighbours: at most this many nearest neighbours enter an atom's environment, 1..1024.
    :param radial: radial basis, ``"gaussian"`` or ``"bessel"`` (see the module docstring).
    """

    species: tuple[int, ...]
    r_cut: float = _DEFAULT["r_cut"].default
    n_max: int = _DEFAULT["n_max"].default
    l_max: int = _DEFAULT["l_max"].default
    max_neighbours: int = _DEFAULT["max_neighbours"].default
    radial: str = _DEFAULT["radial"].default

    def __post_init__(self) -> None:
        species = self.species
        if isinstance(species, (str, bytes)) or not isinstance(species, (Sequence, np.ndarray)):
            raise ValueError(f"species: expected a sequence of atomic numbers, got {species!r}")
        species = list(species)
        if not species:
            raise ValueError("species: expected at least one atomic number, got an empty sequence")
        for z in species:
            if isinstance(z, (bool, np.bool_)) or not isinstance(z, (int, np.integer)):
                raise ValueError(f"species: expected integer atomic numbers, got {z!r}")
            if not 1 <= int(z) < len(ase.data.chemical_symbols):
                raise ValueError(
                    f"species: atomic number {int(z)} out of range, expected 1..{len(ase.data.chemical_symbols) - 1}"
                )
        species = tuple(int(z) for z in species)
        if any(b <= a for a, b in zip(species, species[1:])):
            raise ValueError(f"species: expected atomic numbers sorted ascending without duplicates, got {species}")
        object.__setattr__(self, "species", species)

        numeric = (int, float, np.integer, np.floating)
        if isinstance(self.r_cut, (bool, np.bool_)) or not isinstance(self.r_cut, numeric):
            raise ValueError(f"r_cut: expected a positive number (Å), got {self.r_cut!r}")
        if not (math.isfinite(float(self.r_cut)) and float(self.r_cut) > 0):
            raise ValueError(f"r_cut: expected a positive finite number (Å), got {self.r_cut!r}")
        object.__setattr__(self, "r_cut", float(self.r_cut))

        for name, low, high in (("n_max", 1, 32), ("l_max", 0, 12), ("max_neighbours", 1, 1024)):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
            if not low <= int(value) <= high:
                raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {int(value)}")
            object.__setattr__(self, name, int(value))

        if self.radial not in RADIAL_BASES:
            raise ValueError(f"radial: expected one of {RADIAL_BASES}, got {self.radial!r}")

    @property
    def n_channels(self) -> int:
        """Number of (element, radial function) density channels."""
        return len(self.species) * self.n_max

    @property
    def n_features(self) -> int:
        """Length of the descriptor of one atom."""
        k = self.n_channels
        return k * (k + 1) // 2 * (self.l_max + 1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["species"] = list(self.species)
        return data

    def parameters(self) -> DescriptorParameters:
        """These settings without ``species``."""
        return DescriptorParameters(self.r_cut, self.n_max, self.l_max, self.max_neighbours, self.radial)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DescriptorSettings:
        if not isinstance(d, dict):
            raise ValueError(f"settings: expected a dict, got {type(d).__name__}")
        known = {"species", "r_cut", "n_max", "l_max", "max_neighbours", "radial"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"settings: unknown field(s) {unknown}; expected a subset of {sorted(known)}")
        if "species" not in d:
            raise ValueError("species: the field is required")
        data = dict(d)
        if isinstance(data["species"], list):
            data["species"] = tuple(data["species"])
        return cls(**data)


# -------------------------------------------------------------------------- spherical harmonics
# Written by hand rather than taken from a library: the harmonics have to be differentiable with
# autograd and evaluated on large batched tensors (scipy's are neither), and no well-maintained
# torch implementation is available in this environment. The evaluation uses recursions on the
# Cartesian components only (no atan2/acos), so there is no singularity at the poles or at r = 0.
def _harmonic_norms(l_max: int) -> dict[tuple[int, int], float]:
    """``sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!)``, times ``sqrt(2)`` for ``m != 0``, keyed by ``(l, |m|)``."""
    norms = {}
    for l in range(l_max + 1):
        for m in range(l + 1):
            n = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            norms[(l, m)] = n if m == 0 else math.sqrt(2.0) * n
    return norms


def _spherical_harmonics(
    x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, l_max: int, norms: dict[tuple[int, int], float], dim: int = -1
) -> torch.Tensor:
    """Solid harmonics ``|v|^l Y_lm(v / |v|)`` of ``v = (x, y, z)``, stacked on a new axis ``dim``."""
    r2 = x * x + y * y + z * z
    # Re/Im of (x + iy)^m, i.e. rho^m cos(m phi) and rho^m sin(m phi)
    re, im = [None, x], [None, y]
    for m in range(2, l_max + 1):
        re_prev, im_prev = re[m - 1], im[m - 1]
        re.append(x * re_prev - y * im_prev)
        im.append(x * im_prev + y * re_prev)
    # Q_l^m(z), homogeneous of degree l - m, such that P_l^m(cos t) = sin^m(t) Q_l^m(cos t) on the
    # unit sphere: Q_m^m = (2m-1)!!, Q_{m+1}^m = (2m+1) z Q_m^m,
    # (l-m) Q_l^m = (2l-1) z Q_{l-1}^m - (l+m-1) r^2 Q_{l-2}^m.
    # Here Q carries the normalisation N_lm of Y_lm (the recursion is linear, so it is folded into
    # the coefficients), and Q_m^m is a constant, kept as a Python float.
    out: list[torch.Tensor] = [None] * ((l_max + 1) ** 2)  # type: ignore[list-item]
    for m in range(l_max + 1):
        q_mm = norms[(m, m)] * float(np.prod(np.arange(2 * m - 1, 0, -2), dtype=np.float64))
        q = {m: q_mm}
        if m + 1 <= l_max:
            q[m + 1] = z * ((2 * m + 1) * q_mm * norms[(m + 1, m)] / norms[(m, m)])
        for l in range(m + 2, l_max + 1):
            a = (2 * l - 1) / (l - m) * norms[(l, m)] / norms[(l - 1, m)]
            b = (l + m - 1) / (l - m) * norms[(l, m)] / norms[(l - 2, m)]
            # a z Q_{l-1} - b r^2 Q_{l-2}, fused; the in-place ops only touch a fresh temporary
            # whose value no backward function needs, so they are safe under autograd
            prev = q[l - 2]
            term = (r2 * prev).mul_(-b) if isinstance(prev, torch.Tensor) else r2 * (-b * prev)
            q[l] = term.addcmul_(z, q[l - 1], value=a)
        for l in range(m, l_max + 1):
            q_l = q[l]
            if m == 0:
                out[l * l + l] = q_l if isinstance(q_l, torch.Tensor) else torch.full_like(x, q_l)
            else:
                out[l * l + l + m] = re[m] * q_l
                out[l * l + l - m] = im[m] * q_l
    return torch.stack(out, dim=dim)


def real_spherical_harmonics(vectors: torch.Tensor, l_max: int) -> torch.Tensor:
    """Real spherical harmonics ``Y_lm(v)`` for ``l <= l_max``: shape ``(..., (l_max + 1)^2)``.

    Column ``l^2 + l + m`` holds ``Y_lm``; ``m > 0`` uses ``cos(m phi)``, ``m < 0`` uses
    ``sin(|m| phi)``, without the Condon-Shortley phase. The result is the solid harmonic
    ``|v|^l Y_lm(v / |v|)``, so pass unit vectors to get ``Y_lm`` itself.
    """
    if vectors.shape[-1] != 3:
        raise ValueError(f"vectors: expected a last axis of length 3, got shape {tuple(vectors.shape)}")
    return _spherical_harmonics(vectors[..., 0], vectors[..., 1], vectors[..., 2], l_max, _harmonic_norms(l_max))


# ---------------------------------------------------------------------------------------- module
class LocalDescriptor(torch.nn.Module):
    """Per-atom power-spectrum descriptor; differentiable with respect to positions and cell.

    The module has no parameters and no persistent state (its state dict is empty), so it can be
    embedded in a model without changing the model's saved weights.
    """

    def __init__(self, settings: DescriptorSettings):
        super().__init__()
        if not isinstance(settings, DescriptorSettings):
            raise ValueError(f"settings: expected a DescriptorSettings, got {type(settings).__name__}")
        self.settings = settings
        s = settings
        n_species, n_max, l_max = len(s.species), s.n_max, s.l_max
        k = n_species * n_max

        self._ylm_norms = _harmonic_norms(l_max)

        if s.radial == "gaussian":
            spacing = s.r_cut / (n_max - 1) if n_max > 1 else s.r_cut
            centres = np.linspace(0.0, s.r_cut, n_max) if n_max > 1 else np.zeros(1)
            self._gauss_coeff = -0.5 / (0.5 * spacing) ** 2
            self.register_buffer("_radial_param", torch.as_tensor(centres, dtype=torch.float64), persistent=False)
        else:
            self.register_buffer(
                "_radial_param",
                torch.as_tensor(np.arange(1, n_max + 1) * np.pi / s.r_cut, dtype=torch.float64),
                persistent=False,
            )
            self._bessel_prefactor = math.sqrt(2.0 / s.r_cut)

        # index of each channel pair (p <= q, in feature order) in a flattened (k, k) matrix
        pairs = []
        for a in range(n_species):
            for b in range(a, n_species):
                for n in range(n_max):
                    for n2 in range(n if a == b else 0, n_max):
                        pairs.append((a * n_max + n) * k + b * n_max + n2)
        self.register_buffer("_pair_index", torch.as_tensor(pairs, dtype=torch.int64), persistent=False)

    # ------------------------------------------------------------------ input handling
    def _check_inputs(self, positions, species, cell, pbc):
        if not isinstance(positions, torch.Tensor) or positions.dim() != 3 or positions.shape[-1] != 3:
            shape = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
            raise ValueError(f"positions: expected a tensor of shape (B, N, 3), got {shape}")
        if not positions.is_floating_point():
            raise ValueError(f"positions: expected a floating-point tensor, got {positions.dtype}")
        n_batch, n_atoms = positions.shape[:2]
        species = torch.as_tensor(species, device=positions.device)
        not_integer = species.is_floating_point() or species.is_complex() or species.dtype == torch.bool
        if not_integer or species.shape != (n_atoms,):
            raise ValueError(
                f"species: expected an integer tensor of shape ({n_atoms},), got {species.dtype} {tuple(species.shape)}"
            )
        species = species.long()
        if n_atoms and (int(species.min()) < 0 or int(species.max()) >= len(self.settings.species)):
            raise ValueError(
                f"species: expected indices into settings.species in [0, {len(self.settings.species)}), "
                f"got values {int(species.min())}..{int(species.max())}"
            )
        if isinstance(pbc, torch.Tensor):
            pbc = pbc.tolist()
        if isinstance(pbc, (bool, np.bool_)):
            pbc3 = (bool(pbc),) * 3
        else:
            pbc3 = tuple(bool(p) for p in np.asarray(pbc, dtype=bool).reshape(-1))
            if len(pbc3) != 3:
                raise ValueError(f"pbc: expected a bool or 3 bools, got {pbc!r}")
        if not any(pbc3):
            return positions, species, None, pbc3
        if cell is None:
            raise ValueError(f"cell: a cell is required when pbc is {pbc3}")
        cell = torch.as_tensor(cell, dtype=positions.dtype, device=positions.device)
        if cell.shape == (3, 3):
            cell = cell.expand(n_batch, 3, 3)
        elif cell.shape != (n_batch, 3, 3):
            raise ValueError(f"cell: expected shape (3, 3) or ({n_batch}, 3, 3), got {tuple(cell.shape)}")
        return positions, species, cell, pbc3

    # ------------------------------------------------------------------ neighbour search
    def _image_setup(self, cell: torch.Tensor, pbc3: tuple[bool, bool, bool]):
        """Inverse of the completed cell ``(B, 3, 3)`` and the integer image shifts ``(T, 3)``."""
        c = cell.detach().double()
        periodic = [k for k in range(3) if pbc3[k]]
        if len(periodic) == 2:
            normal = torch.linalg.cross(c[:, periodic[0]], c[:, periodic[1]])
            area = normal.norm(dim=-1, keepdim=True)
            if bool((area <= 1e-10 * c[:, periodic].norm(dim=-1).prod(dim=-1, keepdim=True).clamp_min(1e-300)).any()):
                raise ValueError("cell: the periodic lattice vectors are degenerate (zero or parallel)")
            c = c.clone()
            c[:, 3 - sum(periodic)] = normal / area
        elif len(periodic) == 1:
            a = c[:, periodic[0]]
            length = a.norm(dim=-1, keepdim=True)
            if bool((length <= 1e-10).any()):
                raise ValueError("cell: the periodic lattice vector has zero length")
            a = a / length
            helper = torch.eye(3, dtype=c.dtype, device=c.device)[a.abs().argmin(dim=-1)]
            v1 = torch.linalg.cross(a, helper)
            v1 = v1 / v1.norm(dim=-1, keepdim=True)
            v2 = torch.linalg.cross(a, v1)
            c = c.clone()
            others = [k for k in range(3) if k != periodic[0]]
            c[:, others[0]], c[:, others[1]] = v1, v2
        volume = torch.linalg.det(c).abs()
        lengths = c.norm(dim=-1).prod(dim=-1)
        if bool((volume <= 1e-10 * lengths.clamp_min(1e-300)).any()) or bool((lengths == 0).any()):
            raise ValueError("cell: the periodic lattice vectors are degenerate (zero, parallel or coplanar)")
        cross_norms = torch.stack(
            [torch.linalg.cross(c[:, (k + 1) % 3], c[:, (k + 2) % 3]).norm(dim=-1) for k in range(3)], dim=-1
        )
        heights = volume[:, None] / cross_norms
        reps = [int(torch.floor(self.settings.r_cut / heights[:, k] + 0.5).max()) if pbc3[k] else 0 for k in range(3)]
        ranges = [torch.arange(-r, r + 1, device=cell.device) for r in reps]
        shifts = torch.cartesian_prod(*ranges).reshape(-1, 3)
        return torch.linalg.inv(c).to(cell.dtype), shifts

    @torch.no_grad()
    def _search(self, positions, cell, pbc3):
        """Neighbour indices ``(B, N, K)``, integer shifts ``(B, N, K, 3)`` or ``None``, and validity mask.

        Neighbour ``k`` of atom ``i`` is atom ``j[b, i, k]`` translated by ``shift[b, i, k] @ cell[b]``.
        """
        s = self.settings
        n_batch, n_atoms = positions.shape[:2]
        # the search runs in float64 whatever the input precision: it is cheap next to the
        # descriptor itself, and the neighbour choice then does not depend on float32 round-off
        pos = positions.detach().double()
        rc2 = s.r_cut**2
        if cell is None:
            shifts = None
            n_images = 1
        else:
            cell64 = cell.detach().double()
            inv_cell, shifts = self._image_setup(cell64, pbc3)
            n_images = shifts.shape[0]
            pbc_mask = torch.tensor(pbc3, dtype=pos.dtype, device=pos.device)
            shifts_f = shifts.to(pos.dtype)
            zero_image = int(((shifts == 0).all(dim=-1)).nonzero()[0, 0])
        n_candidates = n_atoms * n_images - 1
        k_max = s.max_neighbours
        k_select = min(n_candidates, 2 * k_max)
        self_mask = torch.eye(n_atoms, dtype=torch.bool, device=pos.device)

        chunk = max(1, _SEARCH_BUDGET // max(1, n_atoms * n_atoms * n_images))
        out_r2, out_idx, out_wrap = [], [], []
        for start in range(0, n_batch, chunk):
            p = pos[start : start + chunk]
            b = p.shape[0]
            diff = p[:, None, :, :] - p[:, :, None, :]  # (b, i, j, 3): r_j - r_i
            if shifts is None:
                r2 = (diff * diff).sum(-1)
                r2 = r2.masked_fill(self_mask, math.inf)
                wrap = None
            else:
                cb = cell64[start : start + chunk]
                frac = diff @ inv_cell[start : start + chunk, None]
                wrap = -torch.round(frac) * pbc_mask  # (b, i, j, 3) integer-valued: minimum image
                diff = diff + wrap @ cb[:, None]
                image = shifts_f @ cb  # (b, T, 3) image translations
                # |d + t|^2 = |d|^2 + 2 d.t + |t|^2 without materialising (b, i, j, T, 3)
                r2 = (
                    (diff * diff).sum(-1)[..., None]
                    + 2.0
                    * (diff.reshape(b, n_atoms * n_atoms, 3) @ image.transpose(1, 2)).reshape(
                        b, n_atoms, n_atoms, n_images
                    )
                    + (image * image).sum(-1)[:, None, None, :]
                )
                r2[:, self_mask, zero_image] = math.inf
                r2 = r2.reshape(b, n_atoms, n_atoms * n_images)
            r2 = r2.masked_fill(r2 >= rc2, math.inf)
            sel_r2, sel_idx = torch.topk(r2, k_select, dim=-1, largest=False, sorted=True)
            out_r2.append(sel_r2)
            out_idx.append(sel_idx)
            if wrap is not None:
                j = torch.div(sel_idx, n_images, rounding_mode="floor")
                out_wrap.append(torch.gather(wrap, 2, j[..., None].expand(-1, -1, -1, 3)))
        sel_r2 = torch.cat(out_r2)
        sel_idx = torch.cat(out_idx)
        valid = torch.isfinite(sel_r2)
        if k_select > k_max:
            # keep the k_max nearest and every neighbour tied with the k_max-th one
            tol = _TIE_TOLERANCE if positions.dtype == torch.float64 else _TIE_TOLERANCE_LOW_PRECISION
            threshold = (sel_r2[..., k_max - 1 : k_max].sqrt() + tol) ** 2
            valid &= sel_r2 <= threshold
            k_eff = max(k_max, int(valid.sum(-1).max()))
            sel_idx, valid = sel_idx[..., :k_eff], valid[..., :k_eff]
        if shifts is None:
            return sel_idx, None, valid
        j = torch.div(sel_idx, n_images, rounding_mode="floor")
        t = sel_idx - j * n_images
        shift = torch.cat(out_wrap)[..., : j.shape[-1], :] + shifts_f[t]
        return j, shift.to(positions.dtype), valid

    # ------------------------------------------------------------------ forward
    def forward(self, positions, species, cell=None, pbc=False) -> torch.Tensor:
        """Descriptors of every atom of every structure in the batch.

        :param positions: ``(B, N, 3)`` Cartesian positions in Å; float32 or float64 (kept).
        :param species: ``(N,)`` integer indices into ``settings.species``, shared by the batch.
        :param cell: ``None``, ``(3, 3)`` or ``(B, 3, 3)`` lattice vectors (rows) in Å; ignored
            when no axis is periodic.
        :param pbc: a bool or three bools, shared by the batch.
        :returns: ``(B, N, settings.n_features)`` tensor of the dtype of ``positions``.
        """
        positions, species, cell, pbc3 = self._check_inputs(positions, species, cell, pbc)
        s = self.settings
        n_batch, n_atoms = positions.shape[:2]
        dtype, device = positions.dtype, positions.device
        n_species, n_max, l_max = len(s.species), s.n_max, s.l_max
        k_ch = n_species * n_max
        if n_batch == 0 or n_atoms == 0:
            return positions.new_zeros((n_batch, n_atoms, s.n_features))

        # ---- neighbour vectors (components dx, dy, dz, each (B, N, K)), neighbour species, validity
        if cell is None and n_atoms - 1 <= s.max_neighbours:
            # every other atom is a candidate neighbour: static neighbour table, no search needed
            if n_atoms == 1:
                return positions.new_zeros((n_batch, 1, s.n_features))
            ar = torch.arange(n_atoms, device=device)
            j = (ar[:, None] + torch.arange(1, n_atoms, device=device)[None, :]) % n_atoms  # (N, N-1)
            dx, dy, dz = (positions[:, :, c][:, j] - positions[:, :, c, None] for c in range(3))
            neighbour_species = species[j]  # (N, N-1), broadcast over the batch
            valid = None
        else:
            j, shift, valid = self._search(positions, cell, pbc3)
            if j.shape[-1] == 0:
                return positions.new_zeros((n_batch, n_atoms, s.n_features))
            k = j.shape[-1]
            flat = j.reshape(n_batch, n_atoms * k, 1).expand(-1, -1, 3)
            d = torch.gather(positions, 1, flat).reshape(n_batch, n_atoms, k, 3) - positions[:, :, None]
            if shift is not None:
                d = d + (shift.reshape(n_batch, n_atoms * k, 3) @ cell).reshape(n_batch, n_atoms, k, 3)
            dx, dy, dz = d.unbind(-1)
            neighbour_species = species[j]
        k = dx.shape[2]
        n_centres = n_batch * n_atoms

        # ---- radial and angular parts per neighbour
        r2 = dx * dx + dy * dy + dz * dz + _EPS
        inv_r = torch.rsqrt(r2)
        r = r2 * inv_r
        inside = r2 < s.r_cut**2
        if valid is not None:
            inside = inside & valid
        f_cut = torch.where(inside, 0.5 * torch.cos(r * (math.pi / s.r_cut)) + 0.5, torch.zeros_like(r))
        param = self._radial_param.to(dtype)
        if s.radial == "gaussian":
            g = torch.exp(self._gauss_coeff * (r[..., None] - param) ** 2)
        else:
            g = torch.sin(r[..., None] * param) * (self._bessel_prefactor * inv_r)[..., None]
        # (B, N, (l_max+1)^2, K)
        y = _spherical_harmonics(dx * inv_r, dy * inv_r, dz * inv_r, l_max, self._ylm_norms, dim=-2)

        # ---- density coefficients, transposed: (B*N, (l_max+1)^2, S*n_max)
        one_hot = torch.nn.functional.one_hot(neighbour_species, n_species).to(dtype)  # ([B,] N, K, S)
        weights = one_hot[..., :, None] * (f_cut[..., None] * g)[..., None, :]  # (B, N, K, S, n)
        coeff_t = y.reshape(n_centres, -1, k) @ weights.reshape(n_centres, k, k_ch)

        # ---- power spectrum: contract m within each l, keep the upper triangle of channel pairs
        pair_index = self._pair_index.expand(n_centres, -1)
        blocks = []
        for l in range(l_max + 1):
            if l == 0:  # a plain outer product; much faster than a batched GEMM with inner size 1
                c_0 = coeff_t[:, 0]
                gram = c_0[:, :, None] * c_0[:, None, :]
            else:
                c_l = coeff_t[:, l * l : (l + 1) * (l + 1)]
                gram = c_l.transpose(1, 2) @ c_l
            blocks.append(torch.gather(gram.reshape(n_centres, -1), 1, pair_index))
        return torch.cat(blocks, dim=1).reshape(n_batch, n_atoms, s.n_features)


# ---------------------------------------------------------------------------------- batch helpers
def species_indices(numbers, settings: DescriptorSettings) -> np.ndarray:
    """Atomic numbers -> indices into ``settings.species``; ``ValueError`` names absent elements."""
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    lookup = np.full(max(max(settings.species), int(numbers.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[list(settings.species)] = np.arange(len(settings.species))
    if numbers.size and numbers.min() < 0:
        raise ValueError(f"numbers: atomic numbers must be positive, got {int(numbers.min())}")
    indices = lookup[numbers]
    if np.any(indices < 0):
        missing = sorted(set(numbers[indices < 0].tolist()))
        names = ", ".join(
            f"{ase.data.chemical_symbols[z] if z < len(ase.data.chemical_symbols) else '?'} (Z={z})" for z in missing
        )
        allowed = ", ".join(ase.data.chemical_symbols[z] for z in settings.species)
        raise ValueError(f"species: element(s) {names} not in settings.species ({allowed})")
    return indices


def _groups(batch: StructureBatch) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[bool, ...]]]:
    """Yield ``(structure indices, numbers (N,), positions (G, N, 3), pbc)`` for structures sharing
    atoms, atom order and periodicity."""
    uniform = batch.uniform_view()
    pbc_rows = [tuple(bool(p) for p in row) for row in batch.pbc]
    if uniform is not None and len(set(pbc_rows)) == 1:
        positions, numbers = uniform
        yield np.arange(len(batch)), numbers, positions, pbc_rows[0]
        return
    offsets = batch.offsets
    keys: dict[tuple, list[int]] = {}
    for i in range(len(batch)):
        keys.setdefault((tuple(batch.numbers[offsets[i] : offsets[i + 1]].tolist()), pbc_rows[i]), []).append(i)
    for (numbers, pbc), members in keys.items():
        members = np.asarray(members, dtype=np.int64)
        n = len(numbers)
        atom_index = (offsets[members][:, None] + np.arange(n)[None, :]).reshape(-1)
        yield members, np.asarray(numbers, dtype=np.int64), batch.positions[atom_index].reshape(len(members), n, 3), pbc


class _IntraOpThreads:
    """Context manager setting torch's intra-op thread count, restoring the previous one on exit."""

    def __init__(self, n_threads: int):
        self.n_threads = n_threads

    def __enter__(self):
        self.previous = torch.get_num_threads()
        if self.previous != self.n_threads:
            torch.set_num_threads(self.n_threads)
        return self

    def __exit__(self, *exc_info):
        if torch.get_num_threads() != self.previous:
            torch.set_num_threads(self.previous)
        return False


def _run_groups(batch, settings, dtype, chunk_size, reduce, store) -> None:
    """Forward every group of ``batch`` in chunks of at most ``chunk_size`` structures under
    ``no_grad``, calling ``store(structure indices, reduce(descriptors (b, N, F), species (N,)))``.

    Chunks are further split so that one forward handles about ``_EDGE_BUDGET`` neighbour pairs,
    and the forwards run with one intra-op thread: with arrays that small, torch's thread pool
    gains little on an idle machine (about 1.5x with 2 threads) and loses a lot on a busy one
    (10-15x slower with 2 threads on a shared 2-core machine under load, measured).
    """
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if len(batch) == 0:
        return
    module = LocalDescriptor(settings)
    with torch.no_grad(), _IntraOpThreads(1):
        for members, numbers, positions, pbc in _groups(batch):
            species = torch.as_tensor(species_indices(numbers, settings))
            periodic = any(pbc)
            n_atoms = len(numbers)
            neighbours = settings.max_neighbours if periodic else max(1, min(settings.max_neighbours, n_atoms - 1))
            step = max(1, min(int(chunk_size), _EDGE_BUDGET // (n_atoms * neighbours)))
            for start in range(0, len(members), step):
                idx = members[start : start + step]
                pos = torch.tensor(
                    positions[start : start + step], dtype=dtype
                )  # a copy: batch arrays may be read-only
                cell = torch.as_tensor(batch.cells[idx], dtype=dtype) if periodic else None
                store(idx, reduce(module(pos, species, cell=cell, pbc=pbc), species))


def atomic_descriptors(batch: StructureBatch, settings: DescriptorSettings, dtype=torch.float64) -> list[np.ndarray]:
    """Descriptors of every atom: one ``(n_atoms_i, n_features)`` array per structure of ``batch``.

    Structures with the same atoms in the same order and the same periodicity are evaluated
    together in batched forward passes; ``dtype`` is the computation and output precision.
    """
    result: list[np.ndarray | None] = [None] * len(batch)

    def store(idx: np.ndarray, values: np.ndarray) -> None:
        for position, i in enumerate(idx.tolist()):
            result[i] = values[position]

    _run_groups(batch, settings, dtype, _DEFAULT_CHUNK, lambda desc, species: desc.numpy(), store)
    return result  # type: ignore[return-value]


def structure_descriptors(batch: StructureBatch, settings: DescriptorSettings, chunk_size: int = 4096) -> np.ndarray:
    """One vector per structure: ``(M, len(settings.species) * n_features)`` float64 array.

    Block ``a`` (columns ``a * n_features`` to ``(a + 1) * n_features``) is the mean of the atomic
    descriptors of the atoms of element ``settings.species[a]``, zeros when the structure has no
    such atom. ``chunk_size`` bounds the number of structures per forward pass.

    The descriptors are computed in float32 (the neighbour search stays in float64, so both
    precisions pick the same neighbours): about 1.6x faster than float64, and the result agrees with
    the float64 means of :func:`atomic_descriptors` to about 1e-6 relative, plenty for PCA and
    clustering. Use :func:`atomic_descriptors` for full float64 precision.
    """
    n_species = len(settings.species)
    out = np.zeros((len(batch), n_species * settings.n_features), dtype=np.float64)

    def element_means(desc: torch.Tensor, species: torch.Tensor) -> np.ndarray:
        one_hot = torch.nn.functional.one_hot(species, n_species).to(desc.dtype)  # (N, S)
        weights = one_hot / one_hot.sum(0).clamp_min(1.0)
        return (weights.T @ desc).reshape(desc.shape[0], -1).numpy()

    def store(idx: np.ndarray, values: np.ndarray) -> None:
        out[idx] = values

    _run_groups(batch, settings, torch.float32, chunk_size, element_means, store)
    return out
