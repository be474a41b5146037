"""TwoNN, MLE and the linear dimensions against known answers and against scikit-dimension."""

import importlib
import warnings

import numpy as np
import pytest
import skdim

from manifold_probe.errors import InputError
from manifold_probe.geometry.id_profile import measure_dimensions
from manifold_probe.geometry.intrinsic_dimension import mle, twonn
from manifold_probe.geometry.linear_dimension import linear_dimension
from manifold_probe.geometry.neighbours import nearest_neighbours
from manifold_probe.geometry.skdim_adapter import skdim_dimension

# BenchmarkManifolds on which both estimators are known to be accurate at N = 1000
ACCURATE = ["M1_Sphere", "M2_Affine_3to5", "M4_Nonlinear", "M5a_Helix1d", "M6_Nonlinear",
            "M7_Roll", "M13a_Scurve", "Mp1_Paraboloid"]  # fmt: skip


@pytest.fixture(scope="module")
def benchmark():
    bm = skdim.datasets.BenchmarkManifolds(random_state=0)
    truth = bm._dict_truth  # name -> (intrinsic dimension, ambient dimension, description)
    data = {name: bm.generate(name=name, n=1000, d=truth[name][0], dim=truth[name][1]) for name in ACCURATE}
    return bm, data


@pytest.mark.parametrize("name", ACCURATE)
def test_twonn_and_mle_agree_with_scikit_dimension(benchmark, name):
    bm, data = benchmark
    x = data[name]
    graph = nearest_neighbours(x, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_twonn = skdim.id.TwoNN().fit(x).dimension_
        ref_mle = skdim.id.MLE().fit(x).dimension_
    assert twonn(graph=graph).dimension == pytest.approx(ref_twonn, rel=1e-6)
    assert mle(graph=graph).dimension == pytest.approx(ref_mle, rel=1e-6)


@pytest.mark.parametrize("name", ACCURATE)
def test_estimates_near_the_true_dimension(benchmark, name):
    """Facco et al. 2017 and Levina & Bickel 2004 report errors of a few per cent for d <= 6
    and a downward bias growing with d (about 10-15 % at d = 10, N = 1000); allow 15 % (and
    0.3 absolute for d = 1, 2)."""
    bm, data = benchmark
    true_d = bm._dict_truth[name][0]
    graph = nearest_neighbours(data[name], 20)
    for estimate in (twonn(graph=graph).dimension, mle(graph=graph).dimension):
        assert abs(estimate - true_d) <= max(0.15 * true_d, 0.3)


@pytest.mark.parametrize("d", [2, 5, 8])
def test_twonn_on_a_flat_gaussian_embedded_by_rotation(d):
    rng = np.random.default_rng(d)
    q, _ = np.linalg.qr(rng.normal(size=(64, 64)))
    x = rng.normal(size=(3000, d)) @ q[:d]
    assert twonn(x).dimension == pytest.approx(d, rel=0.1)


def test_twonn_is_invariant_to_rotation_translation_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 10))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = twonn(x).dimension
    assert twonn(3.7 * x @ q + 5.0).dimension == pytest.approx(base, rel=1e-9)
    assert mle(3.7 * x @ q + 5.0).dimension == pytest.approx(mle(x).dimension, rel=1e-9)


def test_duplicates_are_removed_with_a_warning():
    x = np.random.default_rng(0).normal(size=(400, 3))
    with_copies = np.vstack([x, x[:40]])
    with pytest.warns(UserWarning, match="removed 40 duplicate"):
        est = twonn(with_copies)
    assert est.n_used == 400
    assert est.dimension == twonn(x).dimension
    with pytest.warns(UserWarning, match="removed 40 duplicate"):
        assert mle(with_copies).dimension == mle(x).dimension


def test_ties_and_zero_distances_in_a_given_graph_are_dropped():
    x = np.random.default_rng(0).normal(size=(300, 3))
    graph = nearest_neighbours(np.vstack([x, x[:10]]), 2)
    with pytest.warns(UserWarning, match="dropped"):
        est = twonn(graph=graph)
    assert est.n_used < 300


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    x = np.random.default_rng(0).normal(size=(800, 4))
    a = twonn(x, n_bootstrap=50, seed=3)
    b = twonn(x, n_bootstrap=50, seed=3)
    assert a.interval == b.interval
    assert a.interval[0] < a.dimension < a.interval[1]
    m = mle(x, n_bootstrap=50, seed=3)
    assert m.interval[0] < m.dimension < m.interval[1]


def test_linear_dimension_of_known_spectrum():
    rng = np.random.default_rng(0)
    scales = np.array([10.0, 5.0, 1.0, 0.1])
    x = rng.normal(size=(20000, 4)) * scales
    lin = linear_dimension(x)
    lam = scales**2
    share = np.cumsum(lam) / lam.sum()  # 0.79, 0.99, ...: two components reach 90 %
    assert lin.pca90 == int(np.searchsorted(share, 0.9) + 1) == 2
    assert lin.participation_ratio == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=0.03)
    wide = rng.normal(size=(30, 500))  # N < D: computed through the N x N Gram matrix
    assert len(linear_dimension(wide).eigenvalues) == 30


@pytest.mark.parametrize("shape", [(300, 40), (40, 300)])
def test_linear_dimension_equals_the_singular_values_of_the_centred_points(monkeypatch, shape):
    """The Gram matrix summed over blocks (rows when D <= N, columns when D > N) gives the
    spectrum of an independent float64 SVD, float32 points included."""
    module = importlib.import_module("manifold_probe.geometry.linear_dimension")  # not the function
    monkeypatch.setattr(module, "_GRAM_BLOCK", 500)  # several blocks either way
    rng = np.random.default_rng(14)
    x = (rng.normal(size=shape) * np.geomspace(5, 0.01, shape[1]) + 3.0).astype(np.float32)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    expected = singular**2 / (shape[0] - 1)
    lin = linear_dimension(x)
    np.testing.assert_allclose(lin.eigenvalues[: len(expected)][:20], expected[:20], rtol=1e-9)
    share = np.cumsum(expected) / expected.sum()
    assert lin.pca90 == int(np.searchsorted(share, 0.9 - 1e-12) + 1)
    assert lin.participation_ratio == pytest.approx(expected.sum() ** 2 / (expected**2).sum(), rel=1e-12)


@pytest.mark.parametrize("decay", [0.5, 0.9, 0.97, 0.999])
@pytest.mark.parametrize("shape", [(900, 400), (300, 700)])
def test_leading_spectrum_gives_the_whole_spectrums_pca90_and_participation_ratio(monkeypatch, decay, shape):
    """The block Krylov path (used by `mprobe id`) against the whole eigendecomposition: the
    same pca90, the same participation ratio, its eigenvalues within 1e-9 of the largest;
    a slowly decaying spectrum falls back to the whole one."""
    module = importlib.import_module("manifold_probe.geometry.linear_dimension")
    monkeypatch.setattr(module, "_FULL_SPECTRUM_MAX", 100)
    rng = np.random.default_rng(16)
    x = rng.normal(size=shape) * decay ** np.arange(shape[1])
    full, leading = linear_dimension(x), linear_dimension(x, spectrum="leading")
    assert leading.pca90 == full.pca90
    assert leading.participation_ratio == pytest.approx(full.participation_ratio, rel=1e-12)
    top = len(leading.eigenvalues)
    assert top > full.pca90
    np.testing.assert_allclose(
        leading.eigenvalues, full.eigenvalues[:top], rtol=0, atol=1e-9 * full.eigenvalues[0]
    )


def test_skdim_adapter_reuses_the_graph_and_matches_direct_use(benchmark):
    _, data = benchmark
    x = data["M7_Roll"]
    graph = nearest_neighbours(x, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = skdim.id.TLE().fit(x).dimension_
        lpca = skdim.id.lPCA().fit(x).dimension_
    assert skdim_dimension("tle", x, graph=graph).dimension == pytest.approx(direct, rel=1e-9)
    assert skdim_dimension("lpca", x).dimension == pytest.approx(lpca, rel=1e-9)


def test_measure_dimensions_names_and_errors():
    x = np.random.default_rng(0).normal(size=(300, 5))
    prof = measure_dimensions(x, ["twonn", "mle", "pca"], n_bootstrap=10)
    assert set(prof.metrics) == {"id_twonn", "id_mle", "id_pca90", "participation_ratio"}
    assert set(prof.intervals) == {"id_twonn", "id_mle"}
    with pytest.raises(InputError, match="unknown method"):
        measure_dimensions(x, ["twonm"])
    with pytest.raises(InputError, match="too few"):
        measure_dimensions(x[:15], ["mle"])
