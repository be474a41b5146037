"""Cutting planes against exact geometry: models whose class region is a cylinder.

A model with logits [k (r^2 - ||P_perp (x - c)||^2), 0] gives p_0 >= 0.5 exactly on the
cylinder of radius r around the affine subspace A = c + span(along). A d-plane
x0 + theta M meets it iff min_theta ||P_perp (x0 + M^T theta - c)||^2 <= r^2 (a least
squares problem, solved exactly below), and for x0 at distance R_perp from A the chance of
that is BetaCDF(r^2 / R_perp^2; (q - d)/2, d/2) with q = D - n the codimension
(docs/methods.md#cutting-planes).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import beta, binom
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.probes.cutting_planes import (
    CuttingPlaneOptions,
    draw_planes,
    measure_class_manifold,
    optimise_planes,
    plane_basis,
)


def probe(models, pool_inputs, pool_labels, target_classes, dims, planes=5, *, seed=0, device="cpu",
          progress=False, **options):  # fmt: skip
    """measure_class_manifold with the options spelled out, as these tests read best."""
    chosen = CuttingPlaneOptions(dims=tuple(dims), planes=planes, **options)
    return measure_class_manifold(models, pool_inputs, pool_labels, target_classes, chosen, seed=seed,
                                  device=device, progress=progress)  # fmt: skip


D = 32
RADIUS_RATIO_SQ = 0.5  # r^2 / R_perp^2
R_PERP = 2.0
RADIUS = R_PERP * RADIUS_RATIO_SQ**0.5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread avoids oversubscribing the shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Cylinder(nn.Module):
    """Logits [k (r^2 - ||perp (x - c)||^2), 0] (or that gap on the first `n_gap` of 3 logits)."""

    def __init__(self, centre, perp, radius, sharpness, classes=2):
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(centre, dtype=torch.float32))
        self.register_buffer("perp", torch.as_tensor(perp, dtype=torch.float32))
        self.radius, self.sharpness, self.classes = radius, sharpness, classes

    def forward(self, x):
        z = (x.flatten(1) - self.centre) @ self.perp.T
        gap = self.sharpness * (self.radius**2 - (z**2).sum(1))
        zero = torch.zeros_like(gap)
        return torch.stack([gap, zero] if self.classes == 2 else [gap, gap, zero], dim=1)


def scene(perps: list[slice], seed=0, n_pool=200):
    """Orthonormal frame of R^D, a centre, and pool points at distance R_PERP from each axis."""
    rng = np.random.default_rng(seed)
    frame = np.linalg.qr(rng.standard_normal((D, D)))[0].T
    centre = rng.standard_normal(D)
    pool = centre + rng.standard_normal((n_pool, D)) @ frame  # arbitrary along the axes
    for rows in perps:
        perp = frame[rows]
        pool -= (pool - centre) @ perp.T @ perp
        u = rng.standard_normal((n_pool, perp.shape[0]))
        pool += R_PERP * (u / np.linalg.norm(u, axis=1, keepdims=True)) @ perp
    return frame, centre, pool.astype(np.float32), np.ones(n_pool, dtype=np.int64)


def exact_min_sq_distance(planes, perp, centre, orthonormal=False):
    """Per plane: min over theta of ||perp (x0 + M^T theta - c)||^2, by least squares in float64."""
    out = []
    for plane in planes:
        basis = plane_basis(plane, D, orthonormal=orthonormal).double().numpy()
        v = perp @ (plane.offset.astype(np.float64) - centre)
        b = perp @ basis.T
        theta, *_ = np.linalg.lstsq(b, -v, rcond=None)
        out.append(float(np.sum((v + b @ theta) ** 2)))
    return np.array(out)


def beta_hit_probability(d, codim, ratio_sq=RADIUS_RATIO_SQ):
    return 1.0 if d >= codim else float(beta.cdf(ratio_sq, (codim - d) / 2, d / 2))


def theory_critical_dim(codim, ratio_sq=RADIUS_RATIO_SQ):
    return brentq(lambda d: beta.cdf(ratio_sq, (codim - d) / 2, d / 2) - 0.5, 1e-3, codim - 1e-9)


def assert_hits_match_exact(hits, min_sq, radius_sq, margin=0.02):
    """Every plane agrees with the exact answer, except within `margin` (relative) of the radius."""
    exact = min_sq <= radius_sq
    near = np.abs(np.sqrt(min_sq) - np.sqrt(radius_sq)) <= margin * np.sqrt(radius_sq)
    wrong = (hits != exact) & ~near
    assert not wrong.any(), f"{wrong.sum()} planes disagree with the exact geometry"
    assert (hits == exact).mean() >= 0.97


SINGLE_DIMS = [4, 8, 10, 12, 14, 16, 20]
SINGLE_PLANES = 40
CODIM = 24  # n = 8


@pytest.fixture(scope="module")
def single():
    frame, centre, pool, labels = scene([slice(8, 32)])
    model = Cylinder(centre, frame[8:], RADIUS, sharpness=1.0)
    result = probe(model, pool, labels, 0, SINGLE_DIMS, SINGLE_PLANES, seed=3, n_bootstrap=100)
    planes = draw_planes(pool, labels, (0,), SINGLE_DIMS, SINGLE_PLANES, seed=3)
    min_sq = exact_min_sq_distance(planes, frame[8:], centre)
    return dict(
        frame=frame,
        centre=centre,
        pool=pool,
        labels=labels,
        model=model,
        result=result,
        planes=planes,
        min_sq=min_sq,
    )


def test_single_cylinder_hits_match_exact_geometry_plane_by_plane(single):
    hits = np.concatenate([np.array(s.max_probs) >= 0.5 for s in single["result"].success])
    assert_hits_match_exact(hits, single["min_sq"], RADIUS**2)


def test_single_cylinder_hit_fraction_within_binomial_interval_of_beta_cdf(single):
    for s in single["result"].success:
        low, high = binom.interval(0.999, s.planes, beta_hit_probability(s.dim, CODIM))
        assert low <= s.hits <= high, (s.dim, s.hits, low, high)


def test_single_cylinder_critical_dim_near_theory(single):
    result = single["result"]
    expected = theory_critical_dim(CODIM)  # 12.0 for r^2/R^2 = 0.5, q = 24
    assert result.critical.status == "crossed"
    assert abs(result.critical_dim - expected) <= 2.0
    assert result.manifold_dim == pytest.approx(D - result.critical_dim)
    low, high = result.critical.interval
    assert low <= result.critical_dim <= high
    assert abs(result.critical.empirical_dim - expected) <= 2.5


def test_far_offsets_recover_the_subspace_dimension():
    """As r / R_perp -> 0 the 50 % point tends to D - n: with r^2/R^2 = 0.02, theory 23.4 of 24."""
    ratio_sq = 0.02
    frame, centre, pool, labels = scene([slice(8, 32)], seed=5)
    model = Cylinder(centre, frame[8:], R_PERP * ratio_sq**0.5, sharpness=1.0)
    dims = [16, 20, 22, 23, 24, 26]
    result = probe(model, pool, labels, 0, dims, 16, seed=1, n_bootstrap=0)
    expected = theory_critical_dim(CODIM, ratio_sq)
    assert abs(result.critical_dim - expected) <= 2.0
    assert abs(result.manifold_dim - 8) <= 2.5  # n = 8


def test_ensemble_codimensions_add():
    """Two cylinders of codimension 12 whose normal spaces are orthogonal: the averaged
    probability is >= 0.5 iff gap_1 + gap_2 >= 0, i.e. within sqrt(2) r of their 8-dimensional
    intersection, a cylinder of codimension 12 + 12 = 24."""
    frame, centre, pool, labels = scene([slice(8, 20), slice(20, 32)], seed=1)
    members = [Cylinder(centre, frame[8:20], RADIUS, 0.5), Cylinder(centre, frame[20:], RADIUS, 0.5)]
    dims = [2, 4, 6, 8, 10, 12, 14, 16, 20]
    planes = 30
    ensemble = probe(members, pool, labels, 0, dims, planes, seed=2, n_bootstrap=0)
    member = probe(members[0], pool, labels, 0, dims, planes, seed=2, n_bootstrap=0)

    drawn = draw_planes(pool, labels, (0,), dims, planes, seed=2)
    min_sq = exact_min_sq_distance(drawn, frame[8:], centre)
    hits = np.concatenate([np.array(s.max_probs) >= 0.5 for s in ensemble.success])
    assert_hits_match_exact(hits, min_sq, 2 * RADIUS**2, margin=0.05)
    for s in ensemble.success:
        low, high = binom.interval(0.999, s.planes, beta_hit_probability(s.dim, 24))
        assert low <= s.hits <= high, (s.dim, s.hits, low, high)

    assert abs(member.critical_dim - theory_critical_dim(12)) <= 1.5  # 6
    assert abs(ensemble.critical_dim - theory_critical_dim(24)) <= 2.0  # 12
    assert ensemble.manifold_dim < member.manifold_dim - 3


def test_orthonormal_and_gaussian_bases_give_the_same_hits(single):
    dims, planes = [8, 12, 16], 24
    kwargs = dict(seed=7, n_bootstrap=0)
    gaussian = probe(
        single["model"], single["pool"], single["labels"], 0, dims, planes, orthonormal=False, **kwargs
    )
    orthonormal = probe(
        single["model"], single["pool"], single["labels"], 0, dims, planes, orthonormal=True, **kwargs
    )
    drawn = draw_planes(single["pool"], single["labels"], (0,), dims, planes, seed=7)
    min_sq = exact_min_sq_distance(drawn, single["frame"][8:], single["centre"])
    for result in (gaussian, orthonormal):
        hits = np.concatenate([np.array(s.max_probs) >= 0.5 for s in result.success])
        assert_hits_match_exact(hits, min_sq, RADIUS**2)
    near = np.abs(np.sqrt(min_sq) - RADIUS) <= 0.02 * RADIUS
    for g, o in zip(gaussian.success, orthonormal.success, strict=True):
        assert abs(g.hits - o.hits) <= near.sum()


def test_stopping_at_the_first_hit_keeps_every_reading_in_fewer_steps(single):
    """A hit is final: stopping there changes no plane's hit or miss against the exact
    geometry, nor d*; hit planes run fewer steps."""
    dims, planes = [8, 12, 16], 24
    kwargs = dict(seed=7, n_bootstrap=50)
    args = (single["model"], single["pool"], single["labels"], 0, dims, planes)
    full = probe(*args, **kwargs)
    early = probe(*args, stop_at_hit=True, **kwargs)
    drawn = draw_planes(single["pool"], single["labels"], (0,), dims, planes, seed=7)
    min_sq = exact_min_sq_distance(drawn, single["frame"][8:], single["centre"])
    for result in (full, early):
        hits = np.concatenate([np.array(s.max_probs) >= 0.5 for s in result.success])
        assert_hits_match_exact(hits, min_sq, RADIUS**2)
    assert [s.hits for s in early.success] == [s.hits for s in full.success]
    assert early.critical.critical_dim == full.critical.critical_dim
    full_steps = np.concatenate([s.steps for s in full.success])
    early_steps = np.concatenate([s.steps for s in early.success])
    hit = np.concatenate([np.array(s.max_probs) >= 0.5 for s in full.success])
    assert hit.any() and (early_steps[hit] <= full_steps[hit]).all()
    assert early_steps[hit].sum() < full_steps[hit].sum()


def test_bases_have_unit_rows_and_orthonormal_bases_span_the_same_plane():
    plane = draw_planes(np.zeros((3, D), np.float32), np.array([1, 1, 1]), (0,), [7], 1, seed=0)[0]
    gaussian = plane_basis(plane, D).double()
    orthonormal = plane_basis(plane, D, orthonormal=True).double()
    assert torch.allclose(gaussian.norm(dim=1), torch.ones(7, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(orthonormal @ orthonormal.T, torch.eye(7, dtype=torch.float64), atol=1e-6)
    projector = orthonormal.T @ orthonormal
    assert torch.allclose(gaussian @ projector, gaussian, atol=1e-5)
    assert not torch.allclose(gaussian @ gaussian.T, torch.eye(7, dtype=torch.float64), atol=1e-3)


def test_seed_reproduces_results_exactly(single):
    args = (single["model"], single["pool"], single["labels"], 0, [6, 12], 10)
    first = probe(*args, seed=11, n_bootstrap=50)
    again = probe(*args, seed=11, n_bootstrap=50)
    other = probe(*args, seed=12, n_bootstrap=50)
    assert first == again
    assert first.to_dict() == again.to_dict()
    assert [s.max_probs for s in first.success] != [s.max_probs for s in other.success]


def small_cnn(seed=0):
    torch.manual_seed(seed)  # the test's own model; library code never touches global RNG
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_plane_does_not_depend_on_its_batch_mates(dtype):
    """A plane's trajectory is its own whatever it is batched with. In float64 that holds to the
    step; in float32 the model's kernels may differ by an ulp between batch sizes, which may move
    a plane's stopping step, so there the readings (max probability, hit) must agree, not steps."""
    model = small_cnn().to(dtype)
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((50, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    planes = draw_planes(pool, labels, (3,), [1, 5, 17, 40], 3, seed=0)
    kwargs = dict(input_shape=(1, 8, 8), target_classes=3, steps=60)
    together = optimise_planes(model, planes, batch=len(planes), **kwargs)
    in_threes = optimise_planes(model, planes, batch=3, **kwargs)
    order = rng.permutation(len(planes))
    mixed = optimise_planes(model, [planes[i] for i in order], batch=5, **kwargs)
    alone = [optimise_planes(model, [p], batch=1, **kwargs) for p in planes]
    alone_max = np.array([a.max_probs[0] for a in alone])
    alone_steps = np.array([a.steps[0] for a in alone])
    identity = np.arange(len(planes))
    for outcome, index in ((together, identity), (in_threes, identity), (mixed, order)):
        if dtype == torch.float64:
            np.testing.assert_allclose(outcome.max_probs, alone_max[index], rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(outcome.steps, alone_steps[index])
        else:
            np.testing.assert_allclose(outcome.max_probs, alone_max[index], rtol=1e-3, atol=1e-4)
            np.testing.assert_array_equal(outcome.hits, alone_max[index] >= 0.5)
    assert len(set(np.round(alone_max, 4))) > 3  # the planes really differ


def test_adam_matches_torch_optim_adam():
    """The hand-written batched Adam follows torch.optim.Adam's trajectory (no early stop)."""
    model = small_cnn(1).eval()
    rng = np.random.default_rng(1)
    pool = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
    planes = draw_planes(pool, np.zeros(20, dtype=np.int64), (5,), [3, 9], 2, seed=4)
    steps = 40
    ours = optimise_planes(
        model, planes, input_shape=(1, 8, 8), target_classes=5, steps=steps, patience=steps + 1
    )
    for plane, ours_max in zip(planes, ours.max_probs, strict=True):
        basis = plane_basis(plane, 64)
        theta = torch.zeros(plane.dim, requires_grad=True)
        optimiser = torch.optim.Adam([theta], lr=0.05)
        best = 0.0
        for _ in range(steps):
            x = torch.as_tensor(plane.offset) + theta @ basis
            log_p = torch.log_softmax(model(x.view(1, 1, 8, 8)), dim=1)[0, 5]
            best = max(best, float(log_p.detach().exp()))
            optimiser.zero_grad()
            (-log_p).backward()
            optimiser.step()
        assert ours_max == pytest.approx(best, rel=1e-4)
    assert (ours.steps == steps).all()


def test_soft_target_set_hits_the_boundary_cylinder():
    """Logits [g, g, 0]: for Y = {0, 1} the score 2 min(p_0, p_1) = 2 e^g / (2 e^g + 1) reaches
    0.5 iff g >= -ln 2, i.e. on the cylinder of radius sqrt(r^2 + ln 2 / k)."""
    frame, centre, pool, labels = scene([slice(8, 32)], seed=2)
    labels = np.full(len(pool), 2)
    k = 1.0
    model = Cylinder(centre, frame[8:], RADIUS, k, classes=3)
    dims, planes = [8, 12, 16], 20
    result = probe(model, pool, labels, [0, 1], dims, planes, seed=5, n_bootstrap=0)
    drawn = draw_planes(pool, labels, (0, 1), dims, planes, seed=5)
    min_sq = exact_min_sq_distance(drawn, frame[8:], centre)
    hits = np.concatenate([np.array(s.max_probs) >= 0.5 for s in result.success])
    assert_hits_match_exact(hits, min_sq, RADIUS**2 + np.log(2) / k)
    assert result.to_dict()["class"] == [0, 1]


class ConstantLogits(nn.Module):
    def __init__(self, probabilities):
        super().__init__()
        self.register_buffer("logits", torch.log(torch.tensor(probabilities)))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1) + 0.0 * x.flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize(
    ("targets", "score"), [([1], 0.5), ([0], 0.3), ([0, 1], 0.6), ([0, 2], 0.4), ([0, 1, 2], 0.6)]
)
def test_score_is_set_size_times_smallest_target_probability(targets, score):
    model = ConstantLogits([0.3, 0.5, 0.2])
    pool = np.zeros((4, 5), np.float32)
    planes = draw_planes(pool, np.array([3, 3, 3, 3]), targets, [2], 3, seed=0)
    patience = 7
    out = optimise_planes(model, planes, input_shape=(5,), target_classes=targets, patience=patience)
    np.testing.assert_allclose(out.max_probs, score, rtol=1e-6)
    assert (out.steps == patience + 1).all()  # improves once (from +inf), then plateaus
    assert (out.hits == (score >= 0.5)).all()


def test_offsets_come_from_other_classes_or_match_the_pool_statistics():
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal((60, 6)) * [1, 2, 3, 4, 5, 6] + [0, 1, 2, 3, 4, 5]).astype(np.float32)
    labels = np.arange(60) % 3
    planes = draw_planes(pool, labels, (0, 2), [1, 2], 20, seed=0)
    allowed = {tuple(row) for row in pool[labels == 1]}
    assert all(tuple(p.offset) in allowed for p in planes)
    noise = np.stack([p.offset for p in draw_planes(pool, labels, (0,), [1], 4000, offset="noise", seed=0)])
    np.testing.assert_allclose(noise.mean(0), pool.mean(0), atol=4 * pool.std(0).max() / 60)
    np.testing.assert_allclose(noise.std(0), pool.std(0), rtol=0.06)


def test_model_state_is_restored():
    model = small_cnn()
    model.train()
    model[0].weight.requires_grad_(True)
    model[1].bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pool = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    probe(model, pool, np.arange(10), 0, [2, 4], 2, steps=20, n_bootstrap=0)
    assert all(m.training for m in model.modules())
    assert model[0].weight.requires_grad and not model[1].bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():  # eval mode: BatchNorm statistics untouched
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(target_classes=12), "does not exist"),
        (dict(dims=[0, 4]), "cutting dimensions"),
        (dict(dims=[65]), "cutting dimensions"),
        (dict(offset="uniform"), "unknown offset"),
        (dict(planes=0), "planes"),
    ],
)
def test_bad_input_raises_input_error(kwargs, message):
    pool = np.zeros((6, 1, 8, 8), np.float32)
    args = dict(
        models=small_cnn(),
        pool_inputs=pool,
        pool_labels=np.arange(6),
        target_classes=1,
        dims=[2],
        planes=1,
        steps=2,
        n_bootstrap=0,
    )
    with pytest.raises(InputError, match=message):
        probe(**{**args, **kwargs})


def test_no_offsets_outside_the_target_is_an_input_error():
    pool = np.zeros((4, 3), np.float32)
    with pytest.raises(InputError, match="no points outside"):
        draw_planes(pool, np.zeros(4, dtype=np.int64), (0,), [1], 1)


def test_trained_digits_model_every_full_dimensional_plane_reaches_every_class():
    """At d = D the plane is the whole input space, which holds confidently classified
    training images of every digit: all planes hit, and the curve reads a dimension."""
    from sklearn.datasets import load_digits

    from manifold_probe.sources import zoo

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)  # the test's own model weights
    model = zoo.build_model("digits-cnn", width=16, depth=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        for rows in torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(128):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimiser.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    for digit in range(10):
        result = probe(model, x, y, digit, [2, 64], 2, seed=digit, n_bootstrap=0)
        assert result.success[-1].hits == 2, digit
        assert result.critical.status in ("crossed", "below_range")
        if result.critical_dim is not None:
            assert 2 <= result.critical_dim <= 64
            assert result.manifold_dim == pytest.approx(64 - result.critical_dim)


def test_ensemble_members_must_agree_on_classes_and_planes_must_fit_the_input():
    pool = np.zeros((6, 1, 8, 8), np.float32)
    five = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(InputError, match="disagree on the number of classes"):
        probe([small_cnn(), five], pool, np.arange(6), 1, [2], 1, n_bootstrap=0)
    planes = draw_planes(np.zeros((3, 10), np.float32), np.array([1, 1, 1]), (0,), [2], 1)
    with pytest.raises(InputError, match="offset of 64 values"):
        optimise_planes(five, planes, input_shape=(1, 8, 8), target_classes=0)


def test_ball_hit_fractions_follow_the_beta_cdf_and_every_plane_converges():
    """A ball (codimension D = 32): a d-plane from distance R meets the ball of radius r with
    chance BetaCDF(r^2 / R^2; (D - d)/2, d/2); planes run until their loss plateaus."""
    frame, centre, pool, labels = scene([slice(0, 32)], seed=6)
    model = Cylinder(centre, frame, RADIUS, sharpness=1.0)
    dims = [8, 12, 16, 20, 24]
    result = probe(model, pool, labels, 0, dims, 30, seed=4, n_bootstrap=0)
    for s in result.success:
        low, high = binom.interval(0.999, s.planes, beta_hit_probability(s.dim, 32))
        assert low <= s.hits <= high, (s.dim, s.hits, low, high)
        assert s.unconverged == 0
    assert result.critical.status == "crossed"
    assert abs(result.critical_dim - theory_critical_dim(32)) <= 2.0


def test_slab_is_below_the_range_and_a_short_budget_says_unconverged():
    """A codimension-1 slab: every line meets it (BetaCDF law: probability 1 for d >= 1), so
    d* lies below the swept range. Planes run until they plateau: every plane of d >= 2 hits;
    the one line nearly parallel to the slab still creeping towards it at the cap is counted
    as unconverged, not as a converged miss. A tiny step cap leaves many planes short of 0.5:
    the reading says "unconverged" instead of "crossed"."""
    frame, centre, pool, labels = scene([slice(31, 32)], seed=7)
    model = Cylinder(centre, frame[31:], RADIUS, sharpness=0.05)
    dims = [1, 2, 4, 8]
    full = probe(model, pool, labels, 0, dims, 8, seed=5, n_bootstrap=0, lr=0.05)
    for s in full.success:
        assert s.hits + s.unconverged == s.planes
    assert full.critical.status == "below_range"
    short = probe(model, pool, labels, 0, dims, 8, seed=5, n_bootstrap=0, lr=0.05, steps=20)
    assert sum(s.unconverged for s in short.success) > 0
    assert short.critical.status == "unconverged"
    assert short.to_dict()["unconverged_planes"] == sum(s.unconverged for s in short.success)
