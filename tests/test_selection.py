"""Selection of one representative per cluster: descriptors -> PCA -> k-means."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest

from aiida_physgen.ml.batch import StructureBatch
from aiida_physgen.screening.selection import Selection, plot_selection, select_from_features, select_representatives

TRAINING = Path(__file__).resolve().parents[1] / "aiida_physgen" / "resources" / "logan" / "C5H12O_training.extxyz"


def blobs(n_blobs=5, per_blob=(40, 55, 30, 60, 45), n_features=12, spread=0.3, seed=3):
    """Well-separated Gaussian blobs of different sizes, shuffled; returns (features, blob of every row)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, n_features)) * 25.0
    labels = np.concatenate([np.full(n, b) for b, n in enumerate(per_blob[:n_blobs])])
    features = centres[labels] + rng.normal(scale=spread, size=(labels.size, n_features))
    order = rng.permutation(labels.size)
    return features[order], labels[order]


def test_blobs_one_representative_per_cluster():
    features, truth = blobs()
    selection = select_from_features(features, n_components=4, n_clusters=5, seed=0)
    assert isinstance(selection, Selection)
    assert selection.indices.shape == (5,)
    assert selection.labels.shape == (len(features),)
    assert selection.pca_coordinates.shape == (len(features), 4)
    assert selection.distances.shape == (len(features),)
    assert selection.centroids.shape == (5, 4)
    assert len(set(selection.indices.tolist())) == 5
    # the clustering recovers the blobs exactly (a bijection between cluster labels and blobs)
    pairs = set(zip(selection.labels.tolist(), truth.tolist()))
    assert len(pairs) == 5
    # every true blob is represented exactly once
    assert sorted(truth[selection.indices].tolist()) == [0, 1, 2, 3, 4]
    # representative of cluster c carries label c and is the member of c nearest its centroid
    for cluster, index in enumerate(selection.indices):
        assert selection.labels[index] == cluster
        members = np.flatnonzero(selection.labels == cluster)
        d = np.linalg.norm(selection.pca_coordinates[members] - selection.centroids[cluster], axis=1)
        assert index == members[np.argmin(d)]
        # centroid is the mean of its members in PCA space
        np.testing.assert_allclose(
            selection.centroids[cluster], selection.pca_coordinates[members].mean(axis=0), atol=1e-8
        )
    # distances are to the member's own centroid
    expected = np.linalg.norm(selection.pca_coordinates - selection.centroids[selection.labels], axis=1)
    np.testing.assert_allclose(selection.distances, expected, rtol=1e-10, atol=1e-12)
    # 5 blobs in 12-D: 4 components carry essentially all the variance
    assert selection.explained_variance_ratio.shape == (4,)
    assert np.all(np.diff(selection.explained_variance_ratio) <= 1e-12)
    assert selection.explained_variance_ratio.sum() > 0.95
    assert sorted(selection.cluster_sizes().tolist()) == [30, 40, 45, 55, 60]


def test_representative_is_true_nearest_to_blob_centre():
    """Without standardisation or truncation, PCA is a rotation: the representative of each blob
    is the member closest to the blob mean in the original feature space."""
    features, truth = blobs(n_features=3)
    selection = select_from_features(features, n_components=3, n_clusters=5, seed=1, standardise=False)
    for index in selection.indices:
        blob = np.flatnonzero(truth == truth[index])
        mean = features[blob].mean(axis=0)
        nearest = blob[np.argmin(np.linalg.norm(features[blob] - mean, axis=1))]
        assert index == nearest


@pytest.mark.parametrize("n_rows", [300, 2500])  # double precision, and single precision above 2**21 entries
def test_standardised_pca_matches_sklearn_pipeline(n_rows):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(5)
    n_features = 900
    scales = np.logspace(-3, 3, n_features)  # wildly different magnitudes: standardising matters
    signal = rng.normal(size=(n_rows, 6)) @ rng.normal(size=(6, n_features))
    features = (signal + rng.normal(size=(n_rows, n_features))) * scales
    features[:, 7] = 42.0  # a constant feature is centred, not scaled
    selection = select_from_features(features, n_components=4, n_clusters=3)
    scaled = StandardScaler().fit_transform(features)
    expected = PCA(n_components=4).fit(scaled)
    reference = expected.transform(scaled)
    tolerance = 1e-8 if features.size < 2**21 else 2e-3
    # components are defined up to sign
    np.testing.assert_allclose(
        np.abs(selection.pca_coordinates), np.abs(reference), atol=tolerance * np.abs(reference).max()
    )
    np.testing.assert_allclose(selection.explained_variance_ratio, expected.explained_variance_ratio_, rtol=1e-4)
    unscaled = select_from_features(features, n_components=4, n_clusters=3, standardise=False)
    # without scaling the largest-magnitude features dominate the first component
    assert unscaled.explained_variance_ratio[0] > selection.explained_variance_ratio[0]


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 30))  # no cluster structure: k-means depends on its seed
    first = select_from_features(features, n_components=5, n_clusters=12, seed=7)
    second = select_from_features(features, n_components=5, n_clusters=12, seed=7)
    for key, value in first.arrays().items():
        np.testing.assert_array_equal(value, second.arrays()[key], err_msg=key)
    assert first.to_dict() == second.to_dict()
    others = [select_from_features(features, n_components=5, n_clusters=12, seed=s) for s in (8, 9, 10)]
    assert any(not np.array_equal(first.labels, other.labels) for other in others)
    for other in others:  # whatever the seed, a valid selection
        assert len(set(other.indices.tolist())) == 12
        assert np.all(other.labels[other.indices] == np.arange(12))


def test_randomized_pca_is_seeded():
    """A wide matrix takes the randomised solver, which must follow the seed."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(700, 2000))
    first = select_from_features(features, n_components=5, n_clusters=4, seed=3)
    second = select_from_features(features, n_components=5, n_clusters=4, seed=3)
    assert first.pca_solver == "randomized"
    np.testing.assert_array_equal(first.pca_coordinates, second.pca_coordinates)
    np.testing.assert_array_equal(first.indices, second.indices)


def test_to_dict_and_arrays():
    features, _ = blobs()
    selection = select_from_features(features, n_components=3, n_clusters=5)
    facts = selection.to_dict()
    assert facts["n_members"] == len(features)
    assert facts["n_clusters"] == 5 and facts["n_components"] == 3 and facts["n_features"] == 12
    assert facts["indices"] == selection.indices.tolist()
    assert sum(facts["cluster_sizes"]) == len(features)
    assert len(facts["explained_variance_ratio"]) == 3
    # only small facts: no list as long as the batch
    assert all(not isinstance(v, list) or len(v) <= 5 for v in facts.values())
    arrays = selection.arrays()
    assert set(arrays) == {"indices", "labels", "pca_coordinates", "distances", "explained_variance_ratio", "centroids"}
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    rebuilt = Selection.from_arrays(arrays, facts)
    assert rebuilt.to_dict() == facts


def test_n_components_clipped_and_edge_cases():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(6, 3))
    selection = select_from_features(features, n_components=10, n_clusters=6)
    assert selection.pca_coordinates.shape == (6, 3)
    assert sorted(selection.indices.tolist()) == list(range(6))  # every member its own cluster
    assert np.all(selection.distances == 0)
    one = select_from_features(features[:1], n_components=4, n_clusters=1)
    assert one.indices.tolist() == [0] and one.labels.tolist() == [0]
    # identical members: fewer distinct points than clusters, still distinct representatives
    duplicates = np.repeat(rng.normal(size=(3, 4)), 4, axis=0)
    selection = select_from_features(duplicates, n_components=2, n_clusters=5)
    assert len(set(selection.indices.tolist())) == 5
    assert np.all(selection.labels[selection.indices] == np.arange(5))
    assert np.all(np.bincount(selection.labels, minlength=5) >= 1)


def test_validation():
    features, _ = blobs()
    with pytest.raises(ValueError, match=r"n_clusters=300.*230"):
        select_from_features(features, n_clusters=300)
    with pytest.raises(ValueError, match="n_clusters"):
        select_from_features(features, n_clusters=0)
    with pytest.raises(ValueError, match="n_components"):
        select_from_features(features, n_components=0, n_clusters=3)
    bad = features.copy()
    bad[17, 3] = np.nan
    bad[40, 0] = np.inf
    with pytest.raises(ValueError, match=r"non-finite.*\[17, 40\]"):
        select_from_features(bad, n_clusters=3)
    with pytest.raises(ValueError, match="2-D"):
        select_from_features(features[:, 0], n_clusters=3)


def test_plot_written(tmp_path):
    features, _ = blobs()
    selection = select_from_features(features, n_components=3, n_clusters=5)
    path = plot_selection(selection, tmp_path / "sub" / "selection.png", title="five blobs")
    assert Path(path) == tmp_path / "sub" / "selection.png"
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    # a single-component selection can be plotted too
    single = select_from_features(features[:, :1], n_components=1, n_clusters=2)
    assert Path(plot_selection(single, tmp_path / "single.png")).stat().st_size > 5_000


# ---------------------------------------------------------------------------------------------- batches
def molecules(count: int, seed: int = 0) -> StructureBatch:
    """``count`` rattled, rotated copies of the first three distinct C6H14O training molecules,
    atoms in a common order, in an 8 Å box without periodicity; ``info['template']`` says which."""
    rng = np.random.default_rng(seed)
    shapes = [a for a in ase.io.read(TRAINING, index=":") if a.get_chemical_formula("hill") == "C6H14O"][:3]
    base = []
    for atoms in shapes:
        order = np.argsort(atoms.numbers, kind="stable")
        base.append(atoms.positions[order] - atoms.positions.mean(axis=0))
    numbers = np.sort(shapes[0].numbers, kind="stable")
    template = np.arange(count) % len(shapes)
    positions = []
    for t in template:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        positions.append(base[t] @ q.T + rng.normal(scale=0.03, size=base[t].shape) + 4.0)
    return StructureBatch.from_uniform(
        np.array(positions), numbers, cell=np.eye(3) * 8.0, pbc=(False, False, False), info={"template": template}
    )


def test_n_clusters_checked_before_descriptors(monkeypatch):
    batch = molecules(4)
    from aiida_physgen.ml import descriptors

    def forbidden(*args, **kwargs):
        raise AssertionError("descriptors computed before n_clusters was validated")

    monkeypatch.setattr(descriptors, "structure_descriptors", forbidden)
    settings = descriptors.DescriptorSettings(species=(1, 6, 8))
    with pytest.raises(ValueError, match=r"n_clusters=5.*\b4\b"):
        select_representatives(batch, settings, n_clusters=5)
    with pytest.raises(ValueError, match="n_clusters"):
        select_representatives(batch, settings, n_clusters=0)


def test_select_representatives_with_real_descriptors(tmp_path):
    from aiida_physgen.ml.descriptors import DescriptorSettings

    batch = molecules(36)
    settings = DescriptorSettings(species=(1, 6, 8), r_cut=4.0, n_max=3, l_max=3)
    selection = select_representatives(batch, settings, n_components=5, n_clusters=3, seed=0)
    assert selection.indices.shape == (3,)
    assert selection.labels.shape == (36,)
    # three different isomers, each rattled and rotated: descriptors are rotation invariant, so
    # clusters are the isomers and each isomer is represented once
    template = batch.info["template"]
    assert sorted(template[selection.indices].tolist()) == [0, 1, 2]
    for cluster in range(3):
        assert len(set(template[selection.labels == cluster].tolist())) == 1
    again = select_representatives(batch, settings, n_components=5, n_clusters=3, seed=0)
    np.testing.assert_array_equal(selection.indices, again.indices)
    assert plot_selection(selection, tmp_path / "molecules.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------- select_candidates
def _squash(batch: StructureBatch, indices) -> StructureBatch:
    """``batch`` with atoms 0 and 1 of the structures ``indices`` put 0.3 Å apart."""
    positions = batch.positions.copy()
    for i in indices:
        start = batch.offsets[i]
        positions[start + 1] = positions[start] + [0.3, 0.0, 0.0]
    return StructureBatch(batch.numbers, positions, batch.n_atoms, batch.cells, batch.pbc, dict(batch.info))


SMALL_DESCRIPTOR = {"n_max": 2, "l_max": 2, "max_neighbours": 8}


def test_fewer_survivors_than_clusters_select_one_cluster_per_survivor():
    from aiida_physgen.screening.selection import SelectionSettings, select_candidates

    batch = _squash(molecules(10), range(4, 10))  # 4 of 10 candidates survive the 0.5 Å filter
    settings = SelectionSettings(n_clusters=6, n_components=3, plot=False, descriptor=SMALL_DESCRIPTOR)
    with pytest.warns(UserWarning, match=r"only 4 of the 10 candidates .* so 4 clusters are made instead of 6"):
        selection, kept, _ = select_candidates(batch, settings, seed=0)
    assert list(kept) == [0, 1, 2, 3]
    assert selection.n_clusters == 4 and selection.requested_clusters == 6
    assert sorted(selection.indices) == [0, 1, 2, 3]
    assert selection.to_dict()["requested_clusters"] == 6
    assert Selection.from_arrays(selection.arrays(), selection.to_dict()).requested_clusters == 6
    # enough survivors: as many clusters as asked, nothing requested beyond
    enough, _, _ = select_candidates(
        batch, SelectionSettings(n_clusters=3, n_components=3, plot=False, descriptor=SMALL_DESCRIPTOR), seed=0
    )
    assert enough.n_clusters == 3 and enough.requested_clusters == 0 and "requested_clusters" not in enough.to_dict()


def test_no_survivor_and_non_finite_candidates_are_named(monkeypatch):
    from aiida_physgen.ml import descriptors
    from aiida_physgen.screening.selection import SelectionSettings, select_candidates

    def forbidden(*args, **kwargs):
        raise AssertionError("descriptors computed before the candidates were checked")

    monkeypatch.setattr(descriptors, "structure_descriptors", forbidden)
    settings = SelectionSettings(n_clusters=2, plot=False)
    with pytest.raises(ValueError, match=r"^min_distance: none of the 3 candidates"):
        select_candidates(_squash(molecules(3), range(3)), settings)
    batch = molecules(6)
    batch.positions[batch.offsets[4] + 3, 2] = np.nan  # spoiled after the batch was built
    with pytest.raises(ValueError, match=r"^candidates: candidate 4 has non-finite \(NaN or infinite\) positions"):
        select_candidates(batch, settings)
