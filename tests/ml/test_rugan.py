"""RUGAN: shapes of both encodings, fully convolutional upscaling without seams, training, determinism,
model files, conditions and validation errors."""

import warnings

import numpy as np
import pytest
import torch

from aiida_physgen.ml import graphene, rugan
from aiida_physgen.ml.family import TrainedModel, get_family
from aiida_physgen.ml.loop import TrainingInterrupted
from aiida_physgen.ml.training import generate, train_ensemble

LATTICE = graphene.Lattice(6, 4)  # zig-zag grid 12 × 12, pair grid 6 × 8: small enough for fast tests
TARGET = {"property": "energy"}
TINY = {
    "noise_channels": 7,
    "channels": 8,
    "blocks": 1,
    "critic_channels": 8,
    "critic_layers": 2,
    "loop": {"steps": 3, "batch_size": 8, "n_critic": 2, "log_every": 1},
}


def energies(occupancy):
    """A synthetic total energy (eV): -9.2 eV per 3-coordinated atom, -8.4 eV per other atom."""
    coordination = graphene.coordination(occupancy)
    n = occupancy.reshape(len(occupancy), -1).sum(1)
    n3 = (coordination == 3).reshape(len(occupancy), -1).sum(1)
    return -9.2 * n3 - 8.4 * (n - n3)


def sheets(count=64, seed=0, lattice=LATTICE):
    occupancy = graphene.random_sheets(count, seed, lattice, holes=(1, 3), radius=(1.5, 3.0))
    return graphene.sheets_to_batch(occupancy, lattice, info={"energy": energies(occupancy)})


def train(training, settings=TINY, seeds=(0,), encoding="pair", **kwargs):
    settings = {**settings, "encoding": encoding}
    return train_ensemble("rugan", training, TARGET, settings, seeds=list(seeds), **kwargs)


@pytest.fixture(scope="module")
def training():
    return sheets()


@pytest.fixture(scope="module", params=rugan.ENCODINGS)
def model(request, training):
    (trained,) = train(training, encoding=request.param)
    return trained


def _generator(encoding, seeds=(0,)):
    return rugan.RuganGenerator(encoding, seeds, noise_channels=5, channels=6, blocks=1).eval()


# ---------------------------------------------------------------------- settings
def test_settings_defaults_are_the_papers_and_bad_values_name_the_field():
    family = get_family("rugan")
    s = family.settings({})
    assert (s.encoding, s.noise_channels, s.blocks) == ("pair", 63, 3)
    loop = s.loop
    assert (loop.optimizer, loop.lr_generator, loop.lr_critic) == ("adam", 1e-4, 1e-4)
    assert (loop.betas, loop.eps) == ((0.0, 0.9), 1e-8)
    assert (loop.n_critic, loop.gp_weight, loop.consistency_weight) == (10, 10.0, 2.0)
    assert s.dropout > 0
    with pytest.raises(ValueError, match="encoding"):
        family.settings({"encoding": "hex"})
    with pytest.raises(ValueError, match="channels"):
        family.settings({"channels": 0})
    with pytest.raises(ValueError, match="dropout.*consistency"):
        family.settings({"dropout": 0.0})
    assert family.settings({"dropout": 0.0, "loop": {"consistency_weight": 0.0}}).dropout == 0.0
    with pytest.raises(ValueError, match=r"loop\.lr_critic.*grid"):
        family.settings({"loop": {"lr_critic": [1e-4, 1e-3]}})
    with pytest.raises(ValueError, match=r"settings\.loop\.stepz"):
        family.settings({"loop": {"stepz": 3}})


def test_target_is_checked_and_normalised():
    family = get_family("rugan")
    assert family.check_target({}) == {"property": "energy"}
    assert family.check_target({"property": "total_energy"}) == {"property": "total_energy"}
    with pytest.raises(ValueError, match="target: unknown"):
        family.check_target({"property": "energy", "composition": "C"})
    with pytest.raises(ValueError, match=r"target\.property"):
        family.check_target({"property": 3})


# ---------------------------------------------------------------------- shapes and upscaling
@pytest.mark.parametrize("encoding", rugan.ENCODINGS)
@pytest.mark.parametrize("scale", [1, 2])
def test_generator_and_critic_shapes(encoding, scale):
    lattice = LATTICE.scaled(scale)
    generator = _generator(encoding, seeds=(0, 1))
    h, w = generator.noise_shape(lattice)
    z = torch.randn(2, 3, 5, h, w)
    out = generator(z, torch.zeros(2, 3))
    if encoding == "pair":
        assert (h, w) == (lattice.nx // 2, lattice.ny)
        assert out.shape == (2, 3, 4) + lattice.pair_shape
        assert torch.allclose(out.sum(dim=2), torch.ones(()))
    else:
        assert (h, w) == lattice.zigzag_shape
        assert out.shape == (2, 3, 1) + lattice.zigzag_shape
        assert torch.all(out[..., 0, :, :][..., ~torch.as_tensor(lattice.mask())] == 0)
    critic = rugan.RuganCritic(encoding, (0, 1), channels=4, layers=2, dropout=0.2, negative_slope=0.2).eval()
    assert critic(out, torch.zeros(2, 3)).shape == (2, 3)  # global pooling: any size scores


def test_members_differ_and_a_member_is_the_same_network_alone():
    ensemble = _generator("pair", seeds=(4, 5))
    z = torch.randn(1, 2, 5, 3, 4)
    full = ensemble(z.expand(2, -1, -1, -1, -1), torch.zeros(2, 2))
    assert torch.equal(full[1], ensemble.member(1)(z, torch.zeros(1, 2))[0])
    assert torch.equal(full[1], _generator("pair", seeds=(5,))(z, torch.zeros(1, 2))[0])
    assert not torch.allclose(full[0], full[1])


@pytest.mark.parametrize(
    "encoding, noise_shift, out_shift",
    [
        ("pair", (1, 1), (2, 2)),  # one noise pixel is 2 × 2 pair cells
        ("pair", (2, 3), (4, 6)),
        # a honeycomb translation: rows by 3 (one cell in y; the mask channel has that period), columns by 2
        ("zigzag", (3, 2), (3, 2)),
        ("zigzag", (-6, 4), (-6, 4)),
    ],
)
def test_generator_has_no_edge_translating_the_noise_translates_the_sheet(encoding, noise_shift, out_shift):
    # exact periodic equivariance: the wrap-around is nowhere special, so there is no seam
    generator = _generator(encoding)
    lattice = LATTICE.scaled(2)
    z = torch.randn(1, 4, 5, *generator.noise_shape(lattice))
    labels = torch.randn(1, 4)
    shifted = generator(torch.roll(z, noise_shift, dims=(-2, -1)), labels)
    assert torch.allclose(shifted, torch.roll(generator(z, labels), out_shift, dims=(-2, -1)), atol=1e-6)


def test_sampling_at_scale_two_gives_four_times_the_area(model):
    lattice = graphene.Lattice(**{k: model.config["lattice"][k] for k in ("nx", "ny")})
    assert (lattice.nx, lattice.ny) == (LATTICE.nx, LATTICE.ny)
    one = model.sample(6, 0)
    two = model.sample(6, 0, {"scale": 2})
    occupancy, big = graphene.batch_to_sheets(two)
    assert (big.nx, big.ny) == (2 * lattice.nx, 2 * lattice.ny)
    assert occupancy.shape == (6, 6 * lattice.ny, 4 * lattice.nx) and big.n_sites == 4 * lattice.n_sites
    assert graphene.zigzag_to_pair(occupancy).shape[1:] == (2 * lattice.nx, 4 * lattice.ny)
    assert np.allclose(two.cells[:, [0, 1], [0, 1]], 2 * one.cells[:, [0, 1], [0, 1]])
    assert np.allclose(two.info["requested_energy"], two.info["label"] * big.area)
    assert np.array_equal(two.pbc[0], [True, True, False])


def _defect_fractions(occupancy, band_rows=3, band_cols=2):
    """Under-coordinated (1- or 2-coordinated) atoms among the atoms in the band along the periodic
    boundary (first and last rows and columns of the grid) and among those inside it."""
    coordination = graphene.coordination(occupancy)
    rows, cols = occupancy.shape[-2:]
    band = np.zeros((rows, cols), dtype=bool)
    band[:band_rows] = band[-band_rows:] = True
    band[:, :band_cols] = band[:, -band_cols:] = True
    weak = occupancy & (coordination < 3)
    out = []
    for where in (band, ~band):
        atoms = occupancy[:, where].sum()
        out.append((weak[:, where].sum() / atoms, atoms))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("encoding", rugan.ENCODINGS)
def test_a_generated_sheet_at_scale_two_has_no_seam_at_its_periodic_boundary(encoding):
    # briefly trained (about 20 s) until its sheets look like the training sheets: about 86 % of the
    # sites occupied, 15 % of the atoms 1- or 2-coordinated (an untrained model makes full or dust sheets)
    settings = {
        **TINY,
        "channels": 16,
        "critic_channels": 16,
        "blocks": 2,
        "critic_layers": 3,
        "loop": {"steps": 100, "batch_size": 32, "n_critic": 5, "lr_generator": 1e-3, "lr_critic": 1e-3},
    }
    (trained,) = train(sheets(256), settings, encoding=encoding)
    occupancy, _ = graphene.batch_to_sheets(trained.sample(300, 1, {"scale": 2}))
    (f_band, n_band), (f_inner, n_inner) = _defect_fractions(occupancy)
    assert 0.01 < f_inner < 0.5  # a model that makes holes with edges: the comparison means something
    # the same rate of broken rings and dangling atoms at the boundary as inside (binomial noise, 5 sigma)
    sigma = np.sqrt(f_inner * (1 - f_inner) * (1 / n_band + 1 / n_inner))
    assert abs(f_band - f_inner) < 5 * sigma + 0.01, (f_band, f_inner, sigma)


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("encoding", rugan.ENCODINGS)
def test_short_training_has_finite_losses_and_keeps_the_label_statistics(training, encoding):
    (trained,) = train(training, encoding=encoding)
    assert trained.config["steps"] == 3
    assert all(np.isfinite(v) for v in trained.config["losses"].values())
    assert set(trained.config["losses"]) == {"critic", "generator", "wasserstein"}
    labels = training.info["energy"] / LATTICE.area
    stats = trained.config["label"]
    assert np.isclose(stats["mean"], labels.mean()) and np.isclose(stats["std"], labels.std())
    assert (stats["min"], stats["max"]) == (labels.min(), labels.max())
    assert len(stats["quantiles"]) == rugan.LABEL_QUANTILES
    assert stats["quantiles"][0] == labels.min() and stats["quantiles"][-1] == labels.max()
    assert trained.config["lattice"] == LATTICE.to_dict()
    assert trained.config["architecture"]["encoding"] == encoding


def test_training_is_determined_by_the_seeds(training):
    first = train(training, seeds=[0, 1])
    again = train(training, seeds=[0, 1])
    other = train(training, seeds=[2])
    for a, b in zip(first, again):
        for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
            assert torch.equal(x, y), name
        assert a.config["history"] == b.config["history"]
    sample = lambda m, seed=7: m.sample(10, seed).positions  # noqa: E731
    assert np.array_equal(sample(first[0]), sample(again[0]))
    assert not np.array_equal(
        first[0].module.state_dict()["nets.0.head.weight"], other[0].module.state_dict()["nets.0.head.weight"]
    )
    assert not np.array_equal(sample(first[0], 7), sample(first[0], 8))
    # a member trains the same alone and in an ensemble (member-by-member views)
    (alone,) = train(training, seeds=[1])
    for x, y in zip(alone.module.state_dict().values(), first[1].module.state_dict().values()):
        assert torch.equal(x, y)
    # generation: one batch, every sheet labelled with its model; adding a model changes no other's sheets
    both = generate(first, 10, seed=3)
    assert list(np.bincount(both.info["model_index"])) == [10, 10]
    assert np.array_equal(both.subset(range(10)).positions, generate(first[:1], 10, seed=3).positions)


def test_an_interrupted_training_resumes_bit_for_bit(training, tmp_path):
    settings = {**TINY, "loop": {**TINY["loop"], "steps": 5}}
    straight = train(training, settings, seeds=[0, 1])
    calls = []
    with pytest.raises(TrainingInterrupted):
        train(
            training,
            settings,
            seeds=[0, 1],
            checkpoint_dir=tmp_path,
            checkpoint_every=2,
            should_stop=lambda: calls.append(1) or len(calls) > 3,
        )
    resumed = train(training, settings, seeds=[0, 1], checkpoint_dir=tmp_path)
    for a, b in zip(straight, resumed):
        for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
            assert torch.equal(x, y), name  # dropout masks included: they come from the checkpointed loop stream
        assert a.config["history"] == b.config["history"]


def test_model_file_round_trip_gives_identical_samples(model):
    loaded = TrainedModel.from_bytes(model.to_bytes())
    assert loaded.config == TrainedModel.from_bytes(model.to_bytes()).config
    assert loaded.config["label"] == model.config["label"]
    for condition in (None, {"scale": 2, "label": model.config["label"]["mean"]}):
        a, b = model.sample(12, 4, condition), loaded.sample(12, 4, condition)
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.n_atoms, b.n_atoms)
        assert np.array_equal(a.info["label"], b.info["label"])


def test_sampling_is_chunked_and_discrete(model, monkeypatch):
    whole = model.sample(20, 9)
    monkeypatch.setattr(rugan, "SAMPLE_CHUNK", 7)
    # a different chunk size draws the noise differently, but every sheet is still a sheet of the lattice
    chunked = model.sample(20, 9)
    assert len(chunked) == len(whole) == 20
    occupancy, lattice = graphene.batch_to_sheets(chunked)
    assert (lattice.nx, lattice.ny) == (LATTICE.nx, LATTICE.ny) and occupancy.dtype == bool
    assert np.array_equal(chunked.info["label"], whole.info["label"])


# ---------------------------------------------------------------------- conditions
def test_condition_labels(model):
    stats = model.config["label"]
    family = get_family("rugan")
    assert family.check_condition(None, model.config) == {"labels": "training", "scale": 1}
    # drawn from the training distribution, reproducibly
    drawn = model.sample(40, 2).info["label"]
    assert np.array_equal(drawn, model.sample(40, 2).info["label"])
    assert stats["min"] <= drawn.min() and drawn.max() <= stats["max"] and len(np.unique(drawn)) > 30
    # one label for every sheet; a list is cycled
    one = model.sample(5, 0, {"label": stats["mean"]})
    assert np.all(one.info["label"] == stats["mean"])
    cycled = model.sample(5, 0, {"labels": [stats["min"], stats["max"]]})
    assert cycled.info["label"].tolist() == [stats["min"], stats["max"]] * 2 + [stats["min"]]
    area = LATTICE.area
    assert np.allclose(cycled.info["requested_energy"], cycled.info["label"] * area)


def test_condition_errors_and_extrapolation_warning(model):
    stats = model.config["label"]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"condition\.scale"):
            model.sample(2, 0, {"scale": bad})
    with pytest.raises(ValueError, match=r"condition: unknown key.*temperature"):
        model.sample(2, 0, {"temperature": 300})
    with pytest.raises(ValueError, match=r"condition\.label:"):
        model.sample(2, 0, {"label": float("nan")})
    with pytest.raises(ValueError, match=r"condition\.labels"):
        model.sample(2, 0, {"labels": []})
    with pytest.raises(ValueError, match=r"condition\.labels"):
        model.sample(2, 0, {"labels": "uniform"})
    with pytest.raises(ValueError, match="not both"):
        model.sample(2, 0, {"label": -3.0, "labels": [-3.0]})
    with pytest.raises(ValueError, match="condition"):
        model.sample(2, 0, [1, 2])
    below = stats["min"] - 2 * stats["std"]
    with pytest.warns(UserWarning, match=r"condition\.label: .* eV/Å² is .* eV/Å² \(2 training std\) below"):
        out = model.sample(3, 0, {"label": below})
    assert np.all(out.info["label"] == below)  # a warning, not an error
    with pytest.warns(UserWarning, match=r"above the training range"):
        model.sample(3, 0, {"labels": [stats["mean"], stats["max"] + stats["std"]]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.sample(3, 0, {"labels": [stats["min"], stats["max"]]})  # the range itself is inside


# ---------------------------------------------------------------------- validation
def test_validation_errors_name_the_field(training):
    family = get_family("rugan")
    pair = family.settings({"encoding": "pair"})
    target = family.check_target(TARGET)
    with pytest.raises(ValueError, match="training: RUGAN needs training sheets"):
        family.validate(None, target, pair)
    with pytest.raises(ValueError, match=r"target\.property: the training sheets have no info\['enthalpy'\]"):
        family.validate(training, {"property": "enthalpy"}, pair)
    broken = training.subset(range(5))
    broken.info["energy"] = broken.info["energy"].copy()
    broken.info["energy"][3] = np.nan
    with pytest.raises(ValueError, match=r"training\[3\]: info\['energy'\] is nan"):
        family.validate(broken, target, pair)
    # a structure that is not a sheet on the lattice, and sheets on two lattices
    moved = training.subset(range(3))
    moved.positions[moved.offsets[1]] += [0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"training\[1\]"):
        family.validate(moved, target, pair)
    from aiida_physgen.ml.batch import StructureBatch

    mixed = StructureBatch.concatenate([training.subset(range(2)), sheets(2, 1, graphene.Lattice(4, 4))])
    with pytest.raises(ValueError, match=r"training\[2\].*same lattice"):
        family.validate(mixed, target, pair)
    # the pair encoding halves nx for its noise grid: an odd nx only with the zig-zag encoding
    odd = sheets(4, 0, graphene.Lattice(5, 4))
    with pytest.raises(ValueError, match="training: the sheets are 5 × 4.*pair encoding needs an even nx"):
        family.validate(odd, target, pair)
    family.validate(odd, target, family.settings({"encoding": "zigzag"}))
    # train_ensemble refuses before any work
    with pytest.raises(ValueError, match="pair encoding"):
        train_ensemble("rugan", odd, TARGET, TINY)


def test_a_constant_label_trains_and_samples(training):
    flat = training.subset(range(16))
    flat.info["energy"] = np.full(16, -3000.0)
    (trained,) = train(flat, {**TINY, "loop": {**TINY["loop"], "steps": 1}}, encoding="zigzag")
    assert trained.config["label"]["std"] == 1.0  # standardised to 0, not NaN
    assert len(trained.sample(3, 0)) <= 3


@pytest.mark.slow
def test_the_fast_setting_learns_the_label():
    # a quarter of the fast setting's steps on the paper's 14 × 8 sheets (about 40 s on one thread): the number
    # of atoms in a generated sheet follows the requested energy per area (more atoms, lower energy); measured
    # correlation -0.53 after 150 steps, -0.68 after 250 (400 steps took 80-100 s)
    lattice = graphene.Lattice()
    occupancy = graphene.random_sheets(1024, 0, lattice)
    training = graphene.sheets_to_batch(occupancy, lattice, info={"energy": energies(occupancy)})
    from aiida_physgen.workflows.protocols import generation_protocol

    fast = generation_protocol("rugan", "fast", {"property": "energy"})["settings"]
    settings = {**fast, "loop": {**fast["loop"], "steps": 200}}
    (trained,) = train_ensemble("rugan", training, TARGET, settings)
    labels = training.info["energy"] / lattice.area
    requested = np.quantile(labels, np.random.default_rng(1).random(400))
    out = trained.sample(400, 5, {"labels": requested.tolist()})
    assert np.corrcoef(requested, out.n_atoms)[0, 1] < -0.4
    assert np.corrcoef(labels, occupancy.reshape(1024, -1).sum(1))[0, 1] < -0.99  # what it learns from
    # requested against obtained energy per area (the synthetic labeller on the generated sheets), beside the
    # label-blind baseline (the training labels in another order). Measured with this setting for seeds 0, 1, 2
    # (python /tmp-style run of this test's body, December 2026): KS 0.15 / 0.09 / 0.11, Pearson r 0.82 / 0.74 /
    # 0.62, mean absolute error 0.149 / 0.164 / 0.186 eV/Å² against 0.271 for the label-blind baseline; the
    # thresholds leave a margin for other machines (this is seed 0)
    from scipy import stats

    occupancy_out, lattice_out = graphene.batch_to_sheets(out)
    obtained = energies(occupancy_out) / lattice_out.area
    blind = np.random.default_rng(3).permutation(labels)[: len(requested)]
    assert stats.ks_2samp(requested, obtained).statistic < 0.25
    assert np.corrcoef(requested, obtained)[0, 1] > 0.45
    assert np.abs(requested - obtained).mean() < 0.85 * np.abs(requested - blind).mean()


# ---------------------------------------------------------------------- the label term
@pytest.mark.parametrize("encoding", rugan.ENCODINGS)
def test_the_label_term_counts_atoms_and_bonds_exactly_on_real_sheets(training, encoding):
    occupancy, _ = graphene.batch_to_sheets(training)
    labels = training.info["energy"] / LATTICE.area
    generator = rugan.RuganGenerator(encoding, [0], noise_channels=3, channels=4, blocks=1)
    critic = rugan.RuganCritic(encoding, [0], 4, 2, 0.2, 0.2)
    encoded = rugan.encode_sheets(occupancy, encoding)
    problem = rugan.RuganProblem(generator, critic, encoded, labels, LATTICE, occupancy=occupancy, label_weight=1.0)
    # a one-hot sheet is its own probabilities: the expected counts are the counts
    sites, correction = problem.site_probabilities(encoded[None])
    assert torch.equal(sites[0] > 0.5, torch.as_tensor(occupancy)) and torch.all((sites == 0) | (sites == 1))
    bonds = 0.5 * (sites * rugan._neighbour_sum(sites)).sum((-2, -1)) + correction
    exact = graphene.coordination(occupancy).reshape(len(occupancy), -1).sum(1) / 2
    assert np.allclose(bonds[0].numpy(), exact)
    # the synthetic energy is a function of atoms and 3-fold atoms, close to linear in atoms and bonds
    fit = problem.label_model
    assert fit["r2"] > 0.95 and fit["per_atom"] < 0
    predicted = problem.predicted_labels(encoded[None])[0].numpy() * problem.label_std + problem.label_mean
    assert np.allclose(rugan.label_model_energies(fit, occupancy) / LATTICE.area, predicted, atol=1e-6)
    r = np.corrcoef(predicted, labels)[0, 1]
    assert r**2 == pytest.approx(fit["r2"], abs=1e-6)
    # on real sheets the term is the fit's residual (small), and it is differentiable in the generator's output
    soft = encoded[None].clone().requires_grad_(True)
    loss = problem.extra_generator_loss(soft, None, problem.standardised[None])
    loss.sum().backward()
    assert loss.shape == (1,) and float(loss.detach()) < 0.1 and soft.grad.abs().sum() > 0


def test_a_model_trained_with_the_label_term_keeps_its_label_model(training):
    (trained,) = train(training, {**TINY, "label_weight": 1.0})
    assert trained.config["label"]["label_model"]["r2"] > 0.95
    (plain,) = train(training)
    assert "label_model" not in plain.config["label"]
    with pytest.raises(ValueError, match=r"label_weight: got -1, expected a finite weight >= 0"):
        train(training, {**TINY, "label_weight": -1})


@pytest.mark.slow
def test_the_label_term_benchmark_runs_and_prints_its_table(capsys):
    # two steps and a handful of sheets: the script's plumbing, not the figures of docs/graphene.md
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "rugan_label_term.py"
    spec = importlib.util.spec_from_file_location("rugan_label_term", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--weights", "0", "1", "--seeds", "0", "--count", "8", "--sheets", "64", "--steps", "2", "--calibrate"]
    assert bench.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| label_weight | area | KS |") and len(lines) == 10
    assert lines[2].startswith("| 0 | 1x |") and lines[3].startswith("| 0 | 1x calibrated |")
    assert lines[9].startswith("| 1 | 4x calibrated |")
