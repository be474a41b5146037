"""Curvature that means something on real layers (issue 21): the multiscale profile, the manifold
scale window, denoising, the residual cross-check and the matched null, each against an answer
known in advance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe.geometry.curvature import curvature
from manifold_probe.geometry.denoise import denoise, marchenko_pastur_median
from manifold_probe.geometry.matched_null import matched_null, p_value
from manifold_probe.geometry.multiscale import multiscale_profile, residual_bracket
from manifold_probe.geometry.neighbours import nearest_neighbours
from manifold_probe.geometry.windowed_curvature import null_statistic

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "curvature_accuracy.py"
_spec = importlib.util.spec_from_file_location("curvature_accuracy", _SCRIPT)
acc = importlib.util.module_from_spec(_spec)
sys.modules["curvature_accuracy"] = acc
_spec.loader.exec_module(acc)


def _sphere(n: int, dim: int, ambient: int, seed: int, radius: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim + 1))
    points = radius * v / np.linalg.norm(v, axis=1, keepdims=True)
    return points @ np.linalg.qr(rng.standard_normal((ambient, dim + 1)))[0].T


def test_marchenko_pastur_median_against_a_simulation():
    rng = np.random.default_rng(0)
    for n, p in ((3000, 600), (400, 1200)):
        x = rng.standard_normal((n, p))
        values = (
            np.linalg.eigvalsh(np.cov(x.T)) if p <= n else np.linalg.eigvalsh(x @ x.T / (n - 1))[-(n - 1) :]
        )
        assert np.median(values) == pytest.approx(marchenko_pastur_median(p / (n - 1)), rel=0.02)


def test_denoise_keeps_the_span_of_a_noisy_manifold_and_its_noise_level():
    rng = np.random.default_rng(1)
    sphere = _sphere(2000, 3, 512, seed=1)
    found = denoise(sphere + 0.02 * rng.standard_normal(sphere.shape))
    assert found.n_components == 4  # S^3 spans R^4
    assert found.noise_variance == pytest.approx(0.02**2, rel=0.05)
    clean = denoise(_sphere(1000, 2, 50, seed=2))
    assert clean.n_components == 3 and clean.noise_variance < 1e-12


@pytest.mark.parametrize(("name", "ambient", "noise", "dim", "bending"), [
    ("sphere3", 50, 0.01, 3, (3,)), ("clifford", 512, 0.01, 2, (2, 3)), ("torus", None, 0.0, 2, (2,)),
    ("s1xs2", 50, 0.01, 3, (3, 4)),
])  # fmt: skip
def test_the_profile_recovers_the_dimension_and_the_bending_directions(name, ambient, noise, dim, bending):
    drawn = acc.sample(name, 2000, ambient, noise, seed=0)
    x, variance = drawn.points, 0.0
    if ambient:
        found = denoise(x)
        x, variance = found.points, found.noise_variance
    profile = multiscale_profile(x, noise_variance=variance, ambient_dim=drawn.points.shape[1])
    assert profile.window is not None and profile.window.dim == dim
    assert profile.window.curved and profile.window.bending == bending
    start, stop = profile.window.start, profile.window.stop
    tangent = profile.exponents[start : stop + 1, :dim]
    assert 0.6 <= np.median(tangent) <= 1.4  # tangent directions grow like r
    assert 1.5 <= np.median(profile.exponents[start : stop + 1, bending[0]]) <= 2.8  # bending like r^2


def test_the_profile_is_unchanged_by_rotation_translation_and_scale():
    x = _sphere(1500, 2, 20, seed=6)
    rng = np.random.default_rng(7)
    moved = 5.0 * x @ np.linalg.qr(rng.standard_normal((20, 20)))[0] + rng.standard_normal(20)
    base, other = multiscale_profile(x), multiscale_profile(moved)
    assert (other.window.dim, other.window.bending) == (base.window.dim, base.window.bending) == (2, (2,))
    np.testing.assert_array_equal(other.dims, base.dims)
    np.testing.assert_allclose(other.radii, 5.0 * base.radii, rtol=1e-9)
    span = slice(0, 3)  # the sphere spans R^3; beyond it the singular values are rounding
    np.testing.assert_allclose(other.exponents[:, span], base.exponents[:, span], rtol=1e-6, atol=1e-9)


def test_more_directions_than_the_profile_keeps_is_no_dimension():
    """A 60-d Gaussian in R^128: at K >= 53 its neighbourhoods span more than the 40 singular
    values kept per scale; the end of the kept values is not a gap (a Fashion-MNIST pool layer
    got a 'window' at d = 40, the cap), so d(r) reads >= 40 and there is no window."""
    rng = np.random.default_rng(8)
    x = np.zeros((3000, 128))
    x[:, :60] = rng.standard_normal((3000, 60))
    profile = multiscale_profile(x + 0.01 * rng.standard_normal(x.shape))
    assert profile.window is None
    assert ">=40 at K=400" in profile.reason and not profile.gaps[-1]


def test_an_isotropic_gaussian_has_no_direction_growing_like_r_squared_and_no_window():
    rng = np.random.default_rng(3)
    profile = multiscale_profile(rng.standard_normal((2000, 6)))
    assert profile.window is None and "every direction grows alike" in profile.reason
    assert not profile.bending.any()
    ladder = profile.exponents[len(profile.ks) // 2 :]  # past the smallest scales' sampling noise
    assert np.nanmax(ladder) < 1.5


def test_a_smoothly_decaying_spectrum_like_a_real_layer_has_no_window():
    rng = np.random.default_rng(4)
    layer = rng.standard_normal((1500, 256)) * np.arange(1, 257) ** -0.7
    found = denoise(layer)
    profile = multiscale_profile(found.points, noise_variance=found.noise_variance, ambient_dim=256)
    assert profile.window is None
    assert profile.dims[-1] > profile.dims[0] + 3  # the local dimension grows with scale


def test_class_agreement_falls_when_neighbourhoods_span_several_classes():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((5, 20)) * 6
    labels = np.repeat(np.arange(5), 200)
    points = centres[labels] + rng.standard_normal((1000, 20))
    profile = multiscale_profile(points, labels=labels, ks=[10, 40, 150, 240])
    assert profile.class_agreement[0] > 0.99 and profile.class_agreement[-1] < 0.9


def test_the_residual_bracket_holds_the_curvature_of_a_sphere_and_a_clifford_torus():
    """Small neighbourhoods: a sphere sits at the bracket's low end (umbilic), the Clifford torus
    inside it."""
    for name, truth in (("sphere3", 0.5), ("clifford", 1.0)):
        drawn = acc.sample(name, 4000, None, 0.0, seed=0)
        graph = nearest_neighbours(drawn.points, 40)
        bracket = residual_bracket(drawn.points, graph.indices, [20, 30, 40], drawn.dim)
        assert 0.85 * bracket.low <= truth <= 1.05 * bracket.high, (name, bracket)


def test_p_values_count_the_draws_that_reach_the_observed_value():
    assert p_value(2.0, np.array([1.0, 3.0, np.nan])) == pytest.approx(3 / 4)
    assert np.isnan(p_value(np.nan, np.array([1.0])))


@pytest.mark.parametrize("kind", ["gaussian", "flat"])
def test_the_null_is_calibrated_on_data_without_curvature(kind):
    """50 clouds with zero curvature (Gaussians, or flat uniform discs), each tested against 19
    Gaussian draws with its own covariance, with the estimator's signed curvature: the p-values are
    roughly uniform, at most 10 % below 0.05 (the nominal level is 5 %)."""
    rng = np.random.default_rng(6)

    def statistic(points):
        return curvature(points, 2, k=30, n_bootstrap=1, n_centres=60).curvature_sff_signed

    values = []
    for draw in range(50):
        if kind == "gaussian":
            cloud = rng.standard_normal((300, 3)) * [1.0, 1.0, 0.3]
        else:
            cloud = np.zeros((300, 3))
            cloud[:, :2] = rng.uniform(-1, 1, size=(300, 2))
            cloud += 0.02 * rng.standard_normal(cloud.shape)
        values.append(matched_null(cloud, statistic, n_draws=19, seed=draw).p_value)
    values = np.array(values)
    assert np.mean(values <= 0.05) <= 0.10
    assert 0.35 <= np.median(values) <= 0.65  # no pile-up at either end


@pytest.mark.slow
def test_the_whole_estimator_null_is_calibrated_on_flat_discs():
    """The null the curvature measure reports recomputes the whole estimator (window, then fit) on
    each Gaussian draw. On 30 noisy flat discs (zero curvature, a window at d = 2 on each) at most
    10 % of the p-values fall at or below 0.05 and their median is central (measured: 2 of 30,
    median 0.45)."""
    rng = np.random.default_rng(6)
    statistic = null_statistic(2, 30, True, 60, 0, "cpu", "curvature_sff", windowed=True)
    values = []
    for draw in range(30):
        cloud = np.zeros((400, 3))
        cloud[:, :2] = rng.uniform(-1, 1, size=(400, 2))
        cloud += 0.02 * rng.standard_normal(cloud.shape)
        observed = statistic(cloud)
        assert np.isfinite(observed)  # each disc has its window at d = 2
        values.append(matched_null(cloud, statistic, observed=observed, n_draws=19, seed=draw).p_value)
    values = np.array(values)
    assert np.mean(values <= 0.05) <= 0.10
    assert 0.3 <= np.median(values) <= 0.7


def test_on_a_sphere_the_null_is_left_behind():
    """A cap of the unit sphere (polar angle up to 70 degrees) in R^20 with 0.5 % noise: its curvature
    beats the Gaussian with its covariance (a flattened blob) at the smallest p-value 19 draws
    allow: the estimator as a whole (window, then fit) reads nothing on most draws.
    (A whole sphere's Gaussian is a round blob about as wide as the sphere, whose fit reads a
    curvature of the same order: the null matches the second moments, not the shape.)"""
    rng = np.random.default_rng(7)
    v = rng.standard_normal((6000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cap = v[v[:, 2] > np.cos(np.radians(70))][:2000]
    points = cap @ np.linalg.qr(rng.standard_normal((20, 3)))[0].T + 0.005 * rng.standard_normal(
        (len(cap), 20)
    )
    layer = mp.curvature(points, n_bootstrap=50, n_null=19).layer("points")
    assert layer.status == "measured"
    assert layer.metrics["curvature_sff"] == pytest.approx(1.0, rel=0.1)
    assert layer.metrics["curvature_p_value"] == pytest.approx(0.05)
    null = layer.details["null_curvature_sff"]["gaussian"]
    # the Gaussian pancake has no scale at which it looks 2-dimensional: no draw gives a reading
    assert null["share_with_value"] < 0.5
    assert not layer.metrics["curvature_sff_excess"] < 0.5  # NaN (no draw read) or a clear excess


def test_every_digits_layer_has_a_profile_and_no_unsupported_number(digits_checkpoint, tmp_path):
    """A trained digits-cnn: every layer gets its multiscale profile; no layer shows a mapc unless
    it is measured (then with its null) or marked paper_protocol with its null."""
    model = mp.load_model(digits_checkpoint)
    data = mp.load_data("digits", n_points=600)
    default = mp.curvature(model, data, n_bootstrap=50, n_null=5)
    paper = mp.curvature(model, data, dim="twonn", n_bootstrap=50, n_null=5, n_centres=100)
    for layer in default.layers:
        assert layer.details["profile"]["ks"], layer.name
        if layer.status != "measured":
            assert np.isnan(layer.metrics["mapc"]) and layer.reason
        else:
            assert "curvature_p_value" in layer.metrics
    for layer in paper.layers:
        if layer.status == "paper_protocol":
            assert np.isfinite(layer.metrics["mapc"]) and "mapc_p_value" in layer.metrics
        else:
            assert np.isnan(layer.metrics["mapc"])
    page = default.to_html(tmp_path / "c.html").read_text()
    assert "Multiscale profiles" in page
