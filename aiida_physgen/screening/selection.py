"""Pick one representative structure per basin of a large generated batch.

A generator produces thousands of candidates, most of them small variations of a few motifs.
Relaxing all of them with DFT is wasteful; instead every candidate is described by a fixed-length
descriptor vector, the vectors are projected onto their leading principal components and grouped
with k-means, and the member nearest each cluster centre is kept as that cluster's representative.

Everything here is plain NumPy / scikit-learn / matplotlib; no AiiDA import.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from aiida_physgen.ml.batch import StructureBatch
    from aiida_physgen.ml.descriptors import DescriptorSettings

__all__ = [
    "Selection",
    "SelectionSettings",
    "select_from_features",
    "select_representatives",
    "select_candidates",
    "plot_selection",
]


@dataclass
class SelectionSettings:
    """Settings of the PCA + k-means selection; each default is written here only.

    ``descriptor`` (nested descriptor parameters) defaults to the descriptor of the models that
    generated the candidates, else to :class:`~aiida_physgen.ml.descriptors.DescriptorParameters`.
    Candidates with two atoms closer than ``min_distance`` Å are dropped before clustering: no DFT
    code takes them (``physgen.gpaw`` rejects < 0.5 Å), so a representative there would be wasted.
    """

    n_components: int = 10
    n_clusters: int = 20
    min_distance: float = 0.5
    plot: bool = True
    descriptor: dict | None = None

    def __post_init__(self) -> None:
        for name in ("n_components", "n_clusters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a positive integer")
        if (
            isinstance(self.min_distance, bool)
            or not isinstance(self.min_distance, (int, float))
            or self.min_distance < 0
        ):
            raise ValueError(f"min_distance: got {self.min_distance!r}, expected a non-negative distance in Å")
        if not isinstance(self.plot, bool):
            raise ValueError(f"plot: got {self.plot!r}, expected true or false")
        if self.descriptor is not None:
            from aiida_physgen.ml import settings as settings_module
            from aiida_physgen.ml.descriptors import DescriptorParameters

            settings_module.from_dict(DescriptorParameters, self.descriptor, "descriptor")

    @classmethod
    def from_dict(cls, values: dict | None) -> SelectionSettings:
        from aiida_physgen.ml import settings as settings_module

        return settings_module.from_dict(cls, values or {})

    def descriptor_parameters(self, fallback: dict | None = None):
        """The descriptor parameters to use: ours, else ``fallback`` (the models'), else the defaults."""
        from aiida_physgen.ml import settings as settings_module
        from aiida_physgen.ml.descriptors import DescriptorParameters

        base = settings_module.from_dict(DescriptorParameters, fallback or {}, "descriptor")
        return settings_module.from_dict(DescriptorParameters, self.descriptor or {}, "descriptor", base=base)


@dataclass
class Selection:
    """Result of clustering ``M`` members into ``n_clusters`` clusters.

    :param indices: ``(n_clusters,)`` index (into the batch) of the member nearest each centroid,
        in cluster order; all different.
    :param labels: ``(M,)`` cluster of every member.
    :param pca_coordinates: ``(M, n_components)`` coordinates of every member in PCA space.
    :param distances: ``(M,)`` Euclidean distance (PCA space) of every member to its own centroid.
    :param explained_variance_ratio: ``(n_components,)`` fraction of the (scaled) feature variance
        carried by each component.
    :param centroids: ``(n_clusters, n_components)`` cluster centres in PCA space.
    :param n_features: length of the feature vectors the selection was made from.
    :param seed: random state used.
    :param standardise: whether features were scaled to unit variance before the PCA.
    :param inertia: sum of squared member-to-centroid distances.
    :param pca_solver: scikit-learn PCA solver used (``"none"`` when there was no variance).
    :param n_init: k-means restarts used.
    """

    indices: np.ndarray
    labels: np.ndarray
    pca_coordinates: np.ndarray
    distances: np.ndarray
    explained_variance_ratio: np.ndarray
    centroids: np.ndarray
    n_features: int = 0
    seed: int = 0
    standardise: bool = True
    inertia: float = 0.0
    pca_solver: str = ""
    n_init: int = 1
    #: the clusters asked for, when fewer were made (fewer candidates survived the distance filter);
    #: ``0`` when as many as asked were made
    requested_clusters: int = 0

    @property
    def n_members(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.indices.shape[0])

    @property
    def n_components(self) -> int:
        return int(self.pca_coordinates.shape[1])

    def cluster_sizes(self) -> np.ndarray:
        """``(n_clusters,)`` number of members of every cluster."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    def to_dict(self) -> dict[str, Any]:
        """Small JSON-able facts about the selection (no per-member arrays)."""
        facts = {
            "n_members": self.n_members,
            "n_features": int(self.n_features),
            "n_components": self.n_components,
            "n_clusters": self.n_clusters,
            "seed": int(self.seed),
            "standardise": bool(self.standardise),
            "pca_solver": self.pca_solver,
            "n_init": int(self.n_init),
            "indices": [int(i) for i in self.indices],
            "cluster_sizes": [int(n) for n in self.cluster_sizes()],
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "explained_variance_total": float(np.sum(self.explained_variance_ratio)),
            "inertia": float(self.inertia),
            "mean_distance": float(self.distances.mean()) if self.distances.size else 0.0,
            "max_distance": float(self.distances.max()) if self.distances.size else 0.0,
        }
        if self.requested_clusters:
            facts["requested_clusters"] = int(self.requested_clusters)
        return facts

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the selection, by name (what a repository ``.npz`` would hold)."""
        return {
            "indices": self.indices,
            "labels": self.labels,
            "pca_coordinates": self.pca_coordinates,
            "distances": self.distances,
            "explained_variance_ratio": self.explained_variance_ratio,
            "centroids": self.centroids,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], facts: dict[str, Any] | None = None) -> Selection:
        """Rebuild a selection from :meth:`arrays` (and optionally :meth:`to_dict`)."""
        facts = facts or {}
        return cls(
            indices=np.asarray(arrays["indices"], dtype=np.int64),
            labels=np.asarray(arrays["labels"], dtype=np.int64),
            pca_coordinates=np.asarray(arrays["pca_coordinates"], dtype=np.float64),
            distances=np.asarray(arrays["distances"], dtype=np.float64),
            explained_variance_ratio=np.asarray(arrays["explained_variance_ratio"], dtype=np.float64),
            centroids=np.asarray(arrays["centroids"], dtype=np.float64),
            n_features=int(facts.get("n_features", 0)),
            seed=int(facts.get("seed", 0)),
            standardise=bool(facts.get("standardise", True)),
            inertia=float(facts.get("inertia", 0.0)),
            pca_solver=str(facts.get("pca_solver", "")),
            n_init=int(facts.get("n_init", 1)),
            requested_clusters=int(facts.get("requested_clusters", 0)),
        )


# ---------------------------------------------------------------------------------------------- checks
def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _check_n_clusters(n_clusters: Any, n_members: int) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise TypeError(f"n_clusters: expected an integer, got {n_clusters!r}")
    n_clusters = int(n_clusters)
    if n_clusters < 1:
        raise ValueError(f"n_clusters: must be at least 1, got {n_clusters}")
    if n_clusters > n_members:
        raise ValueError(
            f"n_clusters={n_clusters} exceeds the batch size: only {n_members} structure(s) to choose from"
        )
    return n_clusters


# ---------------------------------------------------------------------------------------------- scaling
def _standardise_in_place(work: np.ndarray) -> None:
    """Zero mean and unit (population) variance per column, in place: the transform of
    ``sklearn.preprocessing.StandardScaler`` (constant columns are centred, not scaled), done in
    three passes with double-precision accumulators instead of StandardScaler's incremental
    algorithm, which is several times slower on a large single-precision matrix."""
    mean = work.mean(axis=0, dtype=np.float64)
    work -= mean.astype(work.dtype)
    variance = np.einsum("ij,ij->j", work, work, dtype=np.float64) / work.shape[0]
    scale = np.sqrt(variance)
    scale[scale < 10.0 * np.finfo(np.float64).eps] = 1.0
    work /= scale.astype(work.dtype)


# ---------------------------------------------------------------------------------------------- PCA
#: feature matrices with at least this many entries are scaled and projected in float32
_SINGLE_PRECISION_SIZE = 1 << 21


def _pca_solver(n_samples: int, n_features: int, n_components: int) -> str:
    """The fastest exact-enough solver for this shape.

    Tall-and-narrow matrices (the usual case: many structures, a few hundred descriptor features)
    are fastest through the eigen-decomposition of the ``F x F`` covariance; small matrices through
    a full SVD; large, wide ones through randomised SVD when only a few components are wanted.
    """
    smallest = min(n_samples, n_features)
    if n_features <= 1500 and n_samples >= n_features:
        return "covariance_eigh"
    if smallest <= 500 or n_components >= 0.8 * smallest:
        return "full"
    return "randomized"


def _pca(features: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(coordinates (M, k), explained_variance_ratio (k,), solver)``; ``features`` is a private
    working copy and may be overwritten."""
    from sklearn.decomposition import PCA

    n_samples, n_features = features.shape
    k = min(n_components, n_samples, n_features)
    if n_samples < 2 or not np.any(np.ptp(features, axis=0) > 0):
        # all members identical (or just one): there is no direction of variance to find
        return np.zeros((n_samples, k)), np.zeros(k), "none"
    solver = _pca_solver(n_samples, n_features, k)
    kwargs: dict[str, Any] = {"n_components": k, "svd_solver": solver, "copy": False}
    if solver == "randomized":
        kwargs["random_state"] = seed
    pca = PCA(**kwargs)
    coordinates = pca.fit_transform(features)
    ratio = np.nan_to_num(np.asarray(pca.explained_variance_ratio_, dtype=np.float64))
    return np.ascontiguousarray(coordinates, dtype=np.float64), ratio, solver


# ---------------------------------------------------------------------------------------------- k-means
def _default_n_init(n_samples: int, n_clusters: int) -> int:
    """More restarts when they are cheap; ~4 for tens of thousands of members and 20 clusters."""
    work = n_samples * n_clusters
    if work <= 100_000:
        return 10
    if work <= 2_000_000:
        return 4
    return 2


def _kmeans(coordinates: np.ndarray, n_clusters: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (M,), centroids (n_clusters, d))``."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    n_samples = coordinates.shape[0]
    if n_clusters == 1:
        return np.zeros(n_samples, dtype=np.int64), coordinates.mean(axis=0, keepdims=True)
    if n_clusters == n_samples:
        return np.arange(n_samples, dtype=np.int64), coordinates.copy()
    with warnings.catch_warnings():
        # fewer distinct points than clusters: handled below by re-assigning empty clusters
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed, algorithm="lloyd")
        labels = kmeans.fit_predict(coordinates)
    return labels.astype(np.int64), np.asarray(kmeans.cluster_centers_, dtype=np.float64)


def _representatives(coordinates: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the member nearest each centroid among that cluster's members.

    Clusters are disjoint, so no member is chosen twice. A cluster k-means left empty (possible
    only when there are fewer distinct members than clusters) takes the nearest member not yet
    chosen, and that member's label is moved to it so every cluster keeps its representative.
    """
    n_clusters = centroids.shape[0]
    order = np.argsort(labels, kind="stable")
    boundaries = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    indices = np.full(n_clusters, -1, dtype=np.int64)
    for cluster in range(n_clusters):
        members = order[boundaries[cluster] : boundaries[cluster + 1]]
        if members.size:
            d2 = np.sum((coordinates[members] - centroids[cluster]) ** 2, axis=1)
            indices[cluster] = members[int(np.argmin(d2))]
    empty = np.flatnonzero(indices < 0)
    if empty.size:
        taken = np.zeros(coordinates.shape[0], dtype=bool)
        taken[indices[indices >= 0]] = True
        for cluster in empty:
            d2 = np.sum((coordinates - centroids[cluster]) ** 2, axis=1)
            d2[taken] = np.inf
            chosen = int(np.argmin(d2))
            indices[cluster] = chosen
            taken[chosen] = True
            labels[chosen] = cluster
    return indices


# ---------------------------------------------------------------------------------------------- API
def select_from_features(
    features: np.ndarray,
    n_components: int = 10,
    n_clusters: int = 20,
    seed: int = 0,
    standardise: bool = True,
    *,
    n_init: int | None = None,
    n_threads: int | None = 1,
) -> Selection:
    """Cluster ``M`` feature vectors and keep the member nearest each cluster centre.

    :param features: ``(M, F)`` finite feature matrix (one row per member).
    :param n_components: principal components to keep; clipped to ``min(M, F)``.
    :param n_clusters: number of clusters (= representatives), ``1 <= n_clusters <= M``.
    :param seed: random state of k-means (and of randomised PCA when that solver is used).
    :param standardise: scale every feature to zero mean and unit variance before the PCA (as
        ``StandardScaler`` does), so features of large magnitude do not dominate.
    :param n_init: k-means restarts; by default chosen from the problem size (more when cheap).
    :param n_threads: BLAS/OpenMP threads for scaling, PCA and k-means. One by default: on a
        machine whose cores are shared (several AiiDA daemon workers, other jobs) multi-threaded
        BLAS and OpenMP spin-wait and run many times slower, and a fixed thread count keeps the
        floating-point reductions, hence the selection, identical from machine to machine.
        ``None`` uses the libraries' defaults (all cores).

    Large matrices (at least ``2**21`` entries) are scaled and projected in single precision, which
    halves the memory traffic that dominates at this size; coordinates are returned in double
    precision either way.
    """
    features = np.asarray(features)
    if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype, np.complexfloating):
        raise TypeError(f"features: expected a real numeric array, got dtype {features.dtype}")
    if features.ndim != 2:
        raise ValueError(f"features: expected a 2-D (members, features) array, got shape {features.shape}")
    n_samples, n_features = features.shape
    if n_samples < 1 or n_features < 1:
        raise ValueError(f"features: expected at least one member and one feature, got shape {features.shape}")
    n_clusters = _check_n_clusters(n_clusters, n_samples)
    n_components = _check_int("n_components", n_components, 1)
    seed = _check_int("seed", seed, 0)
    if n_init is None:
        n_init = _default_n_init(n_samples, n_clusters)
    n_init = _check_int("n_init", n_init, 1)
    if n_threads is not None:
        n_threads = _check_int("n_threads", n_threads, 1)
    finite = np.isfinite(features)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"features: {bad.size} member(s) have non-finite (NaN/inf) features, first at rows {bad[:5].tolist()}"
        )

    from threadpoolctl import threadpool_limits

    # a private working copy: scaling and centring then happen in place
    work = np.array(features, dtype=np.float32 if features.size >= _SINGLE_PRECISION_SIZE else np.float64)
    with threadpool_limits(limits=n_threads):
        if standardise and n_samples > 1:
            _standardise_in_place(work)
        coordinates, ratio, solver = _pca(work, n_components, seed)
        del work
        labels, centroids = _kmeans(coordinates, n_clusters, seed, n_init)
    indices = _representatives(coordinates, labels, centroids)
    distances = np.sqrt(np.sum((coordinates - centroids[labels]) ** 2, axis=1))
    return Selection(
        indices=indices,
        labels=labels,
        pca_coordinates=coordinates,
        distances=distances,
        explained_variance_ratio=ratio,
        centroids=centroids,
        n_features=n_features,
        seed=seed,
        standardise=bool(standardise),
        inertia=float(np.sum(distances**2)),
        pca_solver=solver,
        n_init=n_init,
    )


def select_representatives(
    batch: StructureBatch,
    settings: DescriptorSettings,
    n_components: int = 10,
    n_clusters: int = 20,
    seed: int = 0,
    *,
    chunk_size: int = 4096,
    **options: Any,
) -> Selection:
    """Describe every structure of ``batch`` with ``settings`` and pick ``n_clusters`` representatives.

    ``n_clusters`` is checked against the batch size before any descriptor is computed; ``options`` are the
    other keyword arguments of :func:`select_from_features` (``standardise``, ``n_init``, ``n_threads``) and
    ``chunk_size`` goes to ``structure_descriptors``.
    """
    _check_n_clusters(n_clusters, len(batch))
    _check_int("n_components", n_components, 1)
    from aiida_physgen.ml import descriptors

    features = np.asarray(descriptors.structure_descriptors(batch, settings, chunk_size=chunk_size))
    if features.shape[0] != len(batch):
        raise RuntimeError(f"descriptors returned {features.shape[0]} rows for a batch of {len(batch)}")
    return select_from_features(features, n_components, n_clusters, seed, **options)


#: how the marked groups of representatives are drawn (in this order: later ones on top)
_MARK_STYLES = (
    {"marker": "D", "s": 60, "c": "tab:orange"},
    {"marker": "*", "s": 220, "c": "tab:red"},
    {"marker": "P", "s": 90, "c": "tab:purple"},
)


def plot_selection(
    selection: Selection, path: str | Path, title: str | None = None, marks: dict[str, Any] | None = None
) -> Path:
    """Scatter the members on the first two principal components, coloured by cluster, with the
    representatives marked; write a PNG to ``path`` and return it.

    :param marks: groups of clusters to mark over the representatives, by legend label, e.g.
        ``{'relaxed with DFT': [3, 7], 'unique minimum': [3]}``; with marks (or many clusters) the other
        representatives are drawn as small black-edged dots, so that what went on stays readable at the size
        of a study (hundreds of representatives)."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    coordinates = selection.pca_coordinates
    n_members = coordinates.shape[0]
    x = coordinates[:, 0] if coordinates.shape[1] > 0 else np.zeros(n_members)
    y = coordinates[:, 1] if coordinates.shape[1] > 1 else np.zeros(n_members)
    ratio = selection.explained_variance_ratio

    n_clusters = max(selection.n_clusters, 1)
    cmap = colormaps["tab20" if n_clusters <= 20 else "turbo"]
    colours = cmap(np.arange(n_clusters) % cmap.N if n_clusters <= 20 else np.linspace(0, 1, n_clusters))

    figure = Figure(figsize=(6.4, 5.2), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    size = float(np.clip(4000.0 / max(n_members, 1), 3.0, 30.0))
    ax.scatter(x, y, c=colours[selection.labels], s=size, alpha=0.6, linewidths=0, rasterized=n_members > 5000)
    reps = selection.indices
    quiet = bool(marks) or selection.n_clusters > 40
    marker, star = ("o", 16.0) if quiet else ("*", 180.0)
    ax.scatter(
        x[reps],
        y[reps],
        c=colours[np.arange(selection.n_clusters)],
        marker=marker,
        s=star,
        edgecolors="black",
        linewidths=0.6 if quiet else 1.0,
        zorder=3,
    )
    # legend entry with a neutral fill: the representatives themselves take their cluster's colour
    ax.scatter(
        [],
        [],
        c="white",
        marker=marker,
        s=star,
        edgecolors="black",
        linewidths=1.0,
        label=f"representatives ({selection.n_clusters})",
    )
    for (label, clusters), style in zip((marks or {}).items(), _MARK_STYLES):
        clusters = np.asarray([c for c in clusters if 0 <= c < len(reps)], dtype=np.int64)
        ax.scatter(
            x[reps[clusters]],
            y[reps[clusters]],
            edgecolors="black",
            linewidths=0.8,
            zorder=4,
            label=f"{label} ({len(clusters)})",
            **style,
        )

    def _label(axis: int) -> str:
        if axis < ratio.shape[0]:
            return f"PC{axis + 1} ({100.0 * ratio[axis]:.1f}% of variance)"
        return f"PC{axis + 1} (not available)"

    ax.set_xlabel(_label(0))
    ax.set_ylabel(_label(1))
    ax.set_title(title or f"{n_members} members, {selection.n_clusters} clusters")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def select_candidates(
    batch: StructureBatch, settings: SelectionSettings, seed: int = 0, model_descriptor: dict | None = None
) -> tuple[Selection, np.ndarray, Any]:
    """The whole selection step on a generated batch: drop candidates with atoms closer than
    ``settings.min_distance``, describe, PCA, k-means.

    Returns the :class:`Selection` (over the kept candidates), the indices of the kept candidates in
    ``batch``, and the descriptor parameters used. When fewer candidates survive the distance filter
    than ``settings.n_clusters``, one cluster per survivor is made instead of failing: then
    ``selection.n_clusters`` (the number used) is smaller than ``selection.requested_clusters`` (the
    number asked for, ``0`` otherwise) and a :class:`UserWarning` says so.

    :raises ValueError: naming the candidate, when a candidate has non-finite positions; naming
        ``min_distance`` when no candidate survives the filter (both before any descriptor is computed).
    """
    positions = np.asarray(batch.positions)
    bad_atoms = ~np.isfinite(positions).all(axis=1)
    if bad_atoms.any():
        offsets = np.concatenate([[0], np.cumsum(batch.n_atoms)])
        index = int(np.searchsorted(offsets, int(np.argmax(bad_atoms)), side="right") - 1)
        count = int(np.unique(np.searchsorted(offsets, np.flatnonzero(bad_atoms), side="right") - 1).size)
        raise ValueError(
            f"candidates: candidate {index} has non-finite (NaN or infinite) positions"
            + (f" ({count} candidates have such positions)" if count > 1 else "")
            + "; expected finite coordinates in Å (was the generator's training diverged?)"
        )
    parameters = settings.descriptor_parameters(model_descriptor)
    kept = np.flatnonzero(batch.min_distances() >= float(settings.min_distance))
    if len(kept) == 0:
        raise ValueError(
            f"min_distance: none of the {len(batch)} candidates has all atoms at least min_distance="
            f"{settings.min_distance} Å apart; nothing to select (train longer or generate more candidates)"
        )
    n_clusters = min(settings.n_clusters, len(kept))
    if n_clusters < settings.n_clusters:
        warnings.warn(
            f"n_clusters: only {len(kept)} of the {len(batch)} candidates have all atoms at least min_distance="
            f"{settings.min_distance} Å apart, so {n_clusters} clusters are made instead of {settings.n_clusters}",
            UserWarning,
            stacklevel=2,
        )
    pool = batch.subset(kept) if len(kept) < len(batch) else batch
    descriptor = parameters.for_species(batch.numbers)
    result = select_representatives(
        pool, descriptor, n_components=settings.n_components, n_clusters=n_clusters, seed=seed
    )
    if n_clusters < settings.n_clusters:
        result.requested_clusters = int(settings.n_clusters)
    return result, kept, parameters
