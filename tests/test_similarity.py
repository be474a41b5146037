"""Representation similarity (geometry/similarity.py, measures/similarity.py) held to answers
known in advance: closed forms on constructed examples, invariances, independent
implementations written differently here (explicit loops, scipy), and small seeded
simulations of the bootstrap interval and the permutation p-value."""

from __future__ import annotations

import doctest
import itertools
import json

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist, squareform
from scipy.stats import pearsonr, spearmanr

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.extraction.activations import Activations, LayerRecord
from manifold_probe.geometry import similarity as similarity_module
from manifold_probe.geometry.similarity import (
    SIMILARITY_METHODS,
    angular_shape_distance,
    bootstrap_interval,
    linear_cka,
    permutation_test,
    procrustes_distance,
    rbf_cka,
    representation_similarity,
    resample_counts,
    rsa,
    svcca,
)
from manifold_probe.measures import similarity as measure_module
from manifold_probe.measures.similarity import similarity_matrices

TIGHT = 1e-12
"""Agreement of two float64 computations of one number in [0, 1] from O(100)-term sums and
products (about 4500 machine epsilons; each differs from the exact value by ~1e-15)."""

NEAR_ZERO_DISTANCE = 1e-7
"""A shape distance sqrt(2 - 2 nu) where nu = 1 exactly: nu's rounding (~1e-15) becomes ~5e-8."""

CKA_METHODS = ("linear_cka", "linear_cka_debiased", "rbf_cka", "rbf_cka_debiased")
DISTANCES = ("procrustes", "angular_shape")
OPTIONS = {"rsa": {"dissimilarity": "euclidean"}}  # the correlation distance is not rotation-invariant


def rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix (Haar: QR of a Gaussian, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q * np.sign(np.diag(r))


def related_pair(rng: np.random.Generator, n: int = 60, p: int = 5, q: int = 7):
    """x and a nonlinear, noisy function of it of another width."""
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.3 * rng.normal(size=(n, q))
    return x, y


def orthogonal_columns(n: int, norms, rng: np.random.Generator) -> np.ndarray:
    """n x len(norms), centred columns, mutually orthogonal, with these Euclidean norms."""
    z = rng.normal(size=(n, len(norms)))
    basis = np.linalg.qr(z - z.mean(axis=0))[0]  # in the span of centred columns: centred
    return basis * np.asarray(norms, dtype=float)


def centring(n: int) -> np.ndarray:
    return np.eye(n) - np.ones((n, n)) / n


def plug_in_cka(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 (K and L as in the papers)
    """tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)): the Gram form, written from the definition."""
    h = centring(len(k))
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def u_statistic_cka(k: np.ndarray, l: np.ndarray, originals=None) -> float:  # noqa: E741
    """Debiased CKA by explicit loops: the average over ordered 4-tuples of positions whose points
    are distinct (originals[i] is the point at position i) of K_ab L_ab + K_ab L_cd - 2 K_ab L_ac."""
    originals = np.arange(len(k)) if originals is None else originals

    def hsic(a, b):
        total, count = 0.0, 0
        for i, j, s, t in itertools.permutations(range(len(originals)), 4):
            p, q, r, u = originals[[i, j, s, t]]
            if len({p, q, r, u}) == 4:
                total += a[p, q] * b[p, q] + a[p, q] * b[r, u] - 2 * a[p, q] * b[p, r]
                count += 1
        return total / count

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def song_closed_form_cka(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al. (2012) eq. 5 with zeroed diagonals, as printed in the paper."""
    n = len(k)
    ones = np.ones(n)

    def hsic(a, b):
        a, b = a - np.diag(np.diag(a)), b - np.diag(np.diag(b))
        return (
            np.trace(a @ b) + (ones @ a @ ones) * (ones @ b @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ a @ b @ ones
        ) / (n * (n - 3))  # fmt: skip

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def rbf_gram_by_loops(x: np.ndarray, sigma: float) -> np.ndarray:
    n = len(x)
    return np.array(
        [[np.exp(-np.sum((x[a] - x[b]) ** 2) / (2 * sigma**2)) for b in range(n)] for a in range(n)]
    )


# --- invariances and identities -------------------------------------------------------------


@pytest.mark.parametrize("method", list(SIMILARITY_METHODS))
def test_every_similarity_is_invariant_to_orthogonal_maps_isotropic_scaling_and_translation(method):
    rng = np.random.default_rng(0)
    x, y = related_pair(rng)
    options = OPTIONS.get(method, {})
    before = representation_similarity(x, y, method, **options)
    moved_x = 3.0 * x @ rotation(5, rng) + rng.normal(size=5)
    moved_y = 0.02 * y @ rotation(7, rng) - 4.0
    assert abs(representation_similarity(moved_x, moved_y, method, **options) - before) < TIGHT
    assert 0.05 < abs(before) < 1.2  # a related pair, far from both ends: the check has teeth


@pytest.mark.parametrize("method", list(SIMILARITY_METHODS))
def test_a_representation_and_its_rotated_rescaled_copy_are_identical(method):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    options = OPTIONS.get(method, {})
    for copy in (x, 2.5 * x @ rotation(6, rng) + 1.0):
        value = representation_similarity(x, copy, method, **options)
        if method in DISTANCES:
            assert 0 <= value < NEAR_ZERO_DISTANCE
        else:
            assert abs(value - 1.0) < TIGHT


def test_cka_and_the_shape_metrics_change_under_a_general_invertible_linear_map():
    """X with orthonormal centred columns (X^T X = I_p) and Y = X A: CKA = ||A||_F^2 /
    (sqrt(p) ||A^T A||_F), and ||X^T Y||_* after unit scaling = ||A||_* / (sqrt(p) ||A||_F)."""
    rng = np.random.default_rng(2)
    x = orthogonal_columns(50, [1.0, 1.0], rng)
    stretch = np.array([[1.0, 0.0], [0.0, 10.0]])
    expected_cka = 101 / (np.sqrt(2) * np.sqrt(1 + 10**4))
    nuclear = 11 / (np.sqrt(2) * np.sqrt(101))
    assert abs(linear_cka(x, x @ stretch) - expected_cka) < TIGHT
    assert expected_cka < 0.72  # far from the 1 a rotation would give
    assert abs(procrustes_distance(x, x @ stretch) - np.sqrt(2 - 2 * nuclear)) < TIGHT
    assert abs(angular_shape_distance(x, x @ stretch) - np.arccos(nuclear)) < TIGHT
    sheared = np.array([[1.0, 2.0], [0.0, 1.0]])  # det 1: no scaling, not orthogonal
    a_frob2, ata = np.sum(sheared**2), sheared.T @ sheared
    assert abs(linear_cka(x, x @ sheared) - a_frob2 / (np.sqrt(2) * np.linalg.norm(ata))) < TIGHT


def test_known_values_for_a_subset_of_orthogonal_columns():
    """X with orthogonal centred columns of norms s, Y = X[:, S]: Y^T X = diag(s_S^2) padded, so
    CKA = sum_S s^4 / sqrt(sum s^4 sum_S s^4) = sqrt(sum_S s^4 / sum s^4) and, after unit scaling,
    ||X^T Y||_* = sum_S s^2 / sqrt(sum s^2 sum_S s^2) = sqrt(sum_S s^2 / sum s^2). Y lies in X's
    span, so every canonical correlation is 1; here the 99 % rule keeps all 4 directions of X
    (shares 0.55, 0.80, 0.94, 1) and both of Y."""
    rng = np.random.default_rng(3)
    norms = np.array([3.0, 2.0, 1.5, 1.0])
    subset = [0, 2]
    x = orthogonal_columns(80, norms, rng)
    y = x[:, subset]
    assert abs(linear_cka(x, y) - np.sqrt(np.sum(norms[subset] ** 4) / np.sum(norms**4))) < TIGHT
    nuclear = np.sqrt(np.sum(norms[subset] ** 2) / np.sum(norms**2))
    assert abs(procrustes_distance(x, y) - np.sqrt(2 - 2 * nuclear)) < TIGHT
    assert abs(angular_shape_distance(x, y) - np.arccos(nuclear)) < TIGHT
    found = svcca(x, y)
    assert (found.kept_x, found.kept_y) == (4, 2)
    assert np.all(np.abs(found.correlations - 1) < TIGHT)


def test_the_angular_metric_of_a_square_against_one_of_its_axes():
    """Four points (+-1, 0), (0, +-1) against their first coordinate: unit-scaled, X^T Y has the
    single singular value 2 / (2 sqrt 2) = 1/sqrt 2, so theta = pi / 4 and d = sqrt(2 - sqrt 2)."""
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert abs(angular_shape_distance(x, x[:, :1]) - np.pi / 4) < TIGHT
    assert abs(procrustes_distance(x, x[:, :1]) - np.sqrt(2 - np.sqrt(2))) < TIGHT


# --- shape metrics ---------------------------------------------------------------------------


def test_procrustes_equals_scipys_orthogonal_procrustes_on_zero_padded_inputs():
    rng = np.random.default_rng(4)
    for n, p, q in [(30, 4, 6), (12, 20, 3), (8, 15, 25)]:  # p > n and q > n exercise the narrowing
        x, y = rng.normal(size=(n, p)), rng.normal(size=(n, q))
        width = max(p, q)

        xp, yp = _unit_padded(x, width), _unit_padded(y, width)
        best, _ = orthogonal_procrustes(yp, xp)  # min ||yp R - xp|| over orthogonal R
        distance = np.linalg.norm(yp @ best - xp)
        assert abs(procrustes_distance(x, y) - distance) < TIGHT
        assert abs(angular_shape_distance(x, y) - np.arccos(np.sum(xp * (yp @ best)))) < TIGHT


def _unit_padded(a: np.ndarray, width: int) -> np.ndarray:
    """Centred, unit Frobenius norm, zero columns appended up to `width`."""
    a = a - a.mean(axis=0)
    return np.hstack([a / np.linalg.norm(a), np.zeros((len(a), width - a.shape[1]))])


def test_the_shape_metrics_are_metrics():
    """Symmetric, zero on a point and its rotated, rescaled, translated copy, positive otherwise,
    and the triangle inequality on random triples of different widths."""
    rng = np.random.default_rng(5)
    for _ in range(15):
        x, y, z = (rng.normal(size=(20, width)) ** power for width, power in ((3, 1), (5, 2), (4, 3)))
        for distance in (procrustes_distance, angular_shape_distance):
            xy, yz, xz = distance(x, y), distance(y, z), distance(x, z)
            assert abs(xy - distance(y, x)) < TIGHT
            assert xz <= xy + yz + TIGHT
            assert min(xy, yz, xz) > 0.1
            assert distance(x, -0.5 * x @ rotation(3, rng) + 7) < NEAR_ZERO_DISTANCE


# --- debiased CKA ----------------------------------------------------------------------------


@pytest.mark.parametrize("n, p, q", [(7, 3, 2), (7, 12, 20)])  # the feature form, the Gram form
def test_debiased_linear_cka_equals_the_u_statistic_by_explicit_loops(n, p, q):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(n, p))
    y = np.hstack([x[:, :1], rng.normal(size=(n, q - 1))])
    expected = u_statistic_cka(x @ x.T, y @ y.T)  # not centred: the U-statistic is translation-invariant
    assert abs(linear_cka(x, y, debiased=True) - expected) < TIGHT
    assert abs(song_closed_form_cka(x @ x.T, y @ y.T) - expected) < TIGHT


def test_debiased_rbf_cka_equals_the_u_statistic_by_explicit_loops_with_the_median_bandwidth():
    rng = np.random.default_rng(7)
    x, y = related_pair(rng, n=8, p=3, q=2)
    k = rbf_gram_by_loops(x, 0.8 * np.median(pdist(x)))
    l = rbf_gram_by_loops(y, 0.8 * np.median(pdist(y)))  # noqa: E741
    assert abs(rbf_cka(x, y, debiased=True) - u_statistic_cka(k, l)) < TIGHT
    assert abs(rbf_cka(x, y) - plug_in_cka(k, l)) < TIGHT
    k_half = rbf_gram_by_loops(x, 0.5 * np.median(pdist(x)))
    l_half = rbf_gram_by_loops(y, 0.5 * np.median(pdist(y)))
    assert abs(rbf_cka(x, y, sigma_fraction=0.5) - plug_in_cka(k_half, l_half)) < TIGHT


@pytest.mark.parametrize("n, p, q", [(30, 3, 4), (10, 40, 50)])  # the feature form, the Gram form
def test_linear_cka_equals_the_gram_form_written_from_the_definition(n, p, q):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(n, p))
    y = np.hstack([x[:, :2] ** 2, rng.normal(size=(n, q - 2))])
    assert abs(linear_cka(x, y) - plug_in_cka(x @ x.T, y @ y.T)) < TIGHT
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)  # and the feature form
    feature_form = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert abs(linear_cka(x, y) - feature_form) < TIGHT
    assert abs(linear_cka(x, y, debiased=True) - song_closed_form_cka(xc @ xc.T, yc @ yc.T)) < TIGHT


def test_debiased_cka_stays_near_zero_for_independent_wide_features_where_biased_cka_is_inflated():
    """Independent Gaussian X (n x p), Y (n x q): the centred Gram matrices are Wishart W(p, H)
    and W(q, H) with H = I - 11^T/n, so E<Kc, Lc> = pq (n-1), E||Kc||^2 = p(p+1)(n-1) + p(n-1)^2,
    and biased CKA ~ sqrt(pq / ((p+n)(q+n))) = 2000/2100 = 0.952 at n = 100, p = q = 2000 (its
    spread is about 0.001). The debiased CKA estimates the population value 0, with a standard
    deviation of about sqrt(2)/n = 0.014."""
    rng = np.random.default_rng(9)
    n, p = 100, 2000
    for _ in range(3):
        x, y = rng.normal(size=(n, p)), rng.normal(size=(n, p))
        assert abs(linear_cka(x, y) - p / (p + n)) < 0.005
        assert abs(linear_cka(x, y, debiased=True)) < 0.07  # 5 standard deviations


# --- SVCCA -----------------------------------------------------------------------------------


def test_svcca_is_one_for_an_invertible_linear_map_of_the_same_subspace():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 3))
    mixing = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.5], [0.3, 0.0, 1.5]])
    embedding = np.linalg.qr(rng.normal(size=(6, 3)))[0]  # 3 orthonormal columns in R^6
    found = svcca(x, x @ mixing @ embedding.T + 2.0)
    assert (found.kept_x, found.kept_y) == (3, 3)
    assert np.all(np.abs(found.correlations - 1) < TIGHT)
    assert abs(found.mean_correlation - 1) < TIGHT


def test_svcca_equals_cca_from_covariance_matrices_after_the_same_truncation():
    """Independent: truncate by an eigendecomposition of the covariance, then canonical
    correlations as sqrt(eig(Sxx^-1 Sxy Syy^-1 Syx))."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(300, 6)) * np.array([5.0, 3.0, 2.0, 1.0, 0.3, 0.05])
    y = np.hstack([x[:, :3] @ rng.normal(size=(3, 3)), rng.normal(size=(300, 2))]) + 0.5 * rng.normal(
        size=(300, 5)
    )

    def truncated(a, variance=0.99):
        a = a - a.mean(axis=0)
        values, vectors = np.linalg.eigh(a.T @ a)
        values, vectors = values[::-1], vectors[:, ::-1]
        keep = int(np.argmax(np.cumsum(values) / values.sum() >= variance)) + 1
        return a @ vectors[:, :keep]

    tx, ty = truncated(x), truncated(y)
    sxx, syy, sxy = tx.T @ tx, ty.T @ ty, tx.T @ ty
    squared = np.linalg.eigvals(np.linalg.solve(sxx, sxy) @ np.linalg.solve(syy, sxy.T)).real
    expected = np.sqrt(np.sort(squared)[::-1][: min(tx.shape[1], ty.shape[1])])
    found = svcca(x, y)
    assert (found.kept_x, found.kept_y) == (tx.shape[1], ty.shape[1])
    assert found.kept_x == 4  # variances 25, 9, 4, 1, 0.09, 0.0025: 97 % after 3, 99.8 % after 4
    assert np.allclose(found.correlations, expected, rtol=0, atol=1e-10)  # eig of a product of inverses
    assert 0.3 < found.mean_correlation < 0.95


# --- RSA -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dissimilarity, metric", [("correlation", "correlation"), ("euclidean", "euclidean")]
)
def test_rsa_equals_scipys_dissimilarities_and_correlations(dissimilarity, metric):
    rng = np.random.default_rng(12)
    x, y = related_pair(rng, n=40)
    dx, dy = pdist(x, metric), pdist(y, metric)
    assert abs(rsa(x, y, dissimilarity=dissimilarity) - spearmanr(dx, dy)[0]) < TIGHT
    assert abs(rsa(x, y, dissimilarity=dissimilarity, correlation="pearson") - pearsonr(dx, dy)[0]) < TIGHT


# --- bootstrap -------------------------------------------------------------------------------


def test_resample_counts_are_seeded_multinomial_draws_of_n_points():
    counts = resample_counts(30, 50, seed=3)
    assert counts.shape == (50, 30) and np.all(counts.sum(axis=1) == 30) and counts.min() >= 0
    assert np.array_equal(counts, resample_counts(30, 50, seed=3))
    assert not np.array_equal(counts, resample_counts(30, 50, seed=4))


@pytest.mark.parametrize("method", ["linear_cka", "rbf_cka", "procrustes", "angular_shape", "svcca"])
@pytest.mark.parametrize("p, q", [(3, 4), (30, 40)])  # narrower and wider than the 25 points
def test_a_plug_in_estimate_on_a_resample_is_the_estimate_on_the_repeated_rows(method, p, q):
    rng = np.random.default_rng(13)
    x, y = related_pair(rng, n=25, p=p, q=q)
    found = bootstrap_interval(x, y, method, n_bootstrap=5, seed=2)
    for counts, draw in zip(resample_counts(25, 5, seed=2), found.draws, strict=True):
        rows = np.repeat(np.arange(25), counts)
        if method == "rbf_cka":  # the bandwidth is the median over pairs of distinct points
            k, l = (_rbf_resample_gram(a, rows) for a in (x, y))  # noqa: E741
            assert abs(draw - plug_in_cka(k, l)) < TIGHT
        else:
            assert abs(draw - representation_similarity(x[rows], y[rows], method)) < TIGHT


def _rbf_resample_gram(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    distances = squareform(pdist(a[rows]))
    upper = np.triu_indices(len(rows), 1)
    distinct = rows[upper[0]] != rows[upper[1]]
    sigma = 0.8 * np.median(distances[upper][distinct])
    return np.exp(-(distances**2) / (2 * sigma**2))


@pytest.mark.parametrize("p, q", [(3, 2), (12, 20)])  # the feature form, the Gram form
def test_debiased_cka_on_a_resample_never_pairs_a_point_with_its_copy(p, q):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(7, p))
    y = np.hstack([x[:, :1], rng.normal(size=(7, q - 1))])
    found = bootstrap_interval(x, y, "linear_cka_debiased", n_bootstrap=4, seed=5)
    for counts, draw in zip(resample_counts(7, 4, seed=5), found.draws, strict=True):
        rows = np.repeat(np.arange(7), counts)
        if np.count_nonzero(counts) < 4:
            assert np.isnan(draw)
        else:
            assert abs(draw - u_statistic_cka(x @ x.T, y @ y.T, originals=rows)) < TIGHT


def test_rsa_on_a_resample_leaves_out_pairs_of_copies():
    rng = np.random.default_rng(15)
    x, y = related_pair(rng, n=20, p=3, q=4)
    found = bootstrap_interval(x, y, "rsa", n_bootstrap=3, seed=1)
    for counts, draw in zip(resample_counts(20, 3, seed=1), found.draws, strict=True):
        rows = np.repeat(np.arange(20), counts)
        first, second = np.triu_indices(len(rows), 1)
        distinct = rows[first] != rows[second]
        dx, dy = pdist(x[rows], "correlation")[distinct], pdist(y[rows], "correlation")[distinct]
        assert abs(draw - spearmanr(dx, dy)[0]) < TIGHT


def test_the_bootstrap_of_debiased_cka_is_centred_near_zero_for_independent_wide_features():
    """Were a point paired with its own copy, its diagonal Gram entry (about p = 200, against
    off-diagonal ones of about sqrt(p)) would return: the resampled values would sit near 0.8.
    Here they centre on the estimate from all points (a standard deviation of about 0.035
    around 0)."""
    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(40, 200)), rng.normal(size=(40, 200))
    found = bootstrap_interval(x, y, "linear_cka_debiased", n_bootstrap=100, seed=0)
    assert abs(np.median(found.draws) - found.value) < 0.03 and abs(found.value) < 0.1
    assert found.low < 0 < found.high and found.n_used == 100


def test_bootstrap_intervals_cover_the_population_cka_at_about_the_nominal_rate():
    """y = x + noise with x, noise ~ N(0, I_3): Sigma_xy = I, Sigma_yy = 2 I, so the population
    CKA is ||I||^2 / (||I|| ||2I||) = 1/2. 100 seeded data sets of 100 points, 200 resamples each:
    a nominal 95 % interval should cover 1/2 in 88 to 99 of them (binomial spread 2.2 %)."""
    rng = np.random.default_rng(17)
    covered = 0
    for draw in range(100):
        x = rng.normal(size=(100, 3))
        y = x + rng.normal(size=(100, 3))
        found = bootstrap_interval(x, y, "linear_cka_debiased", n_bootstrap=200, seed=draw)
        covered += found.low <= 0.5 <= found.high
    assert 88 <= covered <= 99


# --- permutation test ------------------------------------------------------------------------


def test_permutation_p_values_are_uniform_on_independent_data_and_smallest_on_related_data():
    """Under independence every permutation is as likely as the observed pairing, so
    P(p <= k / 40) = k / 40 with 39 permutations: over 200 data sets the share below 0.1 and
    0.5 should be 0.1 and 0.5 within 3 binomial standard deviations (0.064 and 0.106)."""
    rng = np.random.default_rng(18)
    pairs = [(rng.normal(size=(30, 3)), rng.normal(size=(30, 2))) for _ in range(200)]
    p_values = np.array(
        [permutation_test(x, y, n_permutations=39, seed=s).p_value for s, (x, y) in enumerate(pairs)]
    )
    assert abs(np.mean(p_values <= 0.1) - 0.1) < 0.064
    assert abs(np.mean(p_values <= 0.5) - 0.5) < 0.106
    x, y = related_pair(rng, n=40)
    for method in ("linear_cka", "procrustes"):  # a similarity and a distance
        found = permutation_test(x, y, method, n_permutations=49, seed=0)
        assert found.p_value == 1 / 50 and len(found.null) == 49


# --- undefined cases and input errors -------------------------------------------------------


@pytest.mark.parametrize("method", list(SIMILARITY_METHODS))
def test_a_representation_without_spread_has_no_similarity(method):
    rng = np.random.default_rng(19)
    constant = np.full((20, 3), 2.5)
    assert np.isnan(representation_similarity(constant, rng.normal(size=(20, 4)), method))
    assert np.isnan(bootstrap_interval(constant, rng.normal(size=(20, 4)), method, n_bootstrap=3).low)


def test_torch_tensors_and_float32_arrays_give_the_float64_answer():
    rng = np.random.default_rng(24)
    x, y = related_pair(rng)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    for method in SIMILARITY_METHODS:
        from_arrays = representation_similarity(x32.astype(np.float64), y32.astype(np.float64), method)
        from_tensors = representation_similarity(torch.from_numpy(x32), torch.from_numpy(y32), method)
        assert abs(from_tensors - from_arrays) < TIGHT
        assert abs(representation_similarity(x32, y32, method) - from_arrays) < TIGHT


def test_inputs_that_cannot_be_compared_are_refused_with_one_sentence():
    rng = np.random.default_rng(20)
    x = rng.normal(size=(10, 3))
    with pytest.raises(InputError, match="same points"):
        linear_cka(x, rng.normal(size=(11, 3)))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        procrustes_distance(x, bad)
    with pytest.raises(InputError, match="2-D"):
        svcca(x, x[:, 0])
    with pytest.raises(InputError, match="at least 4"):
        linear_cka(x[:3], x[:3], debiased=True)
    with pytest.raises(InputError, match="unknown similarity"):
        representation_similarity(x, x, "cca")
    with pytest.raises(InputError, match="no option 'variance'"):
        bootstrap_interval(x, x, "linear_cka", variance=0.9)
    with pytest.raises(InputError, match="variance"):
        svcca(x, x, variance=0)
    with pytest.raises(InputError, match="2 features"):
        rsa(x, x[:, :1])
    with pytest.raises(InputError, match="dissimilarity"):
        rsa(x, x, dissimilarity="cosine")
    with pytest.raises(InputError, match="level"):
        bootstrap_interval(x, x, level=95)


def test_the_docstring_examples_run_as_written():
    for module in (similarity_module, measure_module):
        assert doctest.testmod(module).failed == 0


# --- the measure: layers x layers ------------------------------------------------------------


def activations(layers: dict, labels=None, source=None) -> Activations:
    records = {
        name: LayerRecord(name, (a.shape[1],), "none", a.shape[1], False, False) for name, a in layers.items()
    }
    return Activations(dict(layers), records, labels, source=source)


def three_layers(rng: np.random.Generator, n: int = 30) -> dict:
    first = rng.normal(size=(n, 4)).astype(np.float32)
    second = np.tanh(first @ rng.normal(size=(4, 6))).astype(np.float32)
    return {
        "first": first,
        "second": second,
        "third": (second**2 @ rng.normal(size=(6, 3))).astype(np.float32),
    }


def test_within_one_model_the_matrices_are_symmetric_and_equal_the_pairwise_estimates():
    layers = three_layers(np.random.default_rng(21))
    methods = ("linear_cka", "linear_cka_debiased", "procrustes", "rsa")
    found = similarity_matrices(activations(layers), methods=methods, n_bootstrap=20, seed=3)
    names = list(layers)
    assert found.layers_a == found.layers_b == tuple(names) and found.within_one_model
    for method in methods:
        values = found.values[method]
        assert values.shape == (3, 3) and np.array_equal(values, values.T)
        assert np.array_equal(found.low[method], found.low[method].T)
        for i, j in itertools.combinations_with_replacement(range(3), 2):
            expected = bootstrap_interval(layers[names[i]], layers[names[j]], method, n_bootstrap=20, seed=3)
            assert (
                values[i, j]
                == expected.value
                == representation_similarity(layers[names[i]], layers[names[j]], method)
            )
            assert (found.low[method][i, j], found.high[method][i, j]) == (expected.low, expected.high)
    assert np.allclose(np.diag(found.values["linear_cka"]), 1, rtol=0, atol=TIGHT)
    assert found.larger_is_more_similar == {"linear_cka": True, "linear_cka_debiased": True,
                                            "procrustes": False, "rsa": True}  # fmt: skip


def test_across_two_models_rows_are_the_first_models_layers():
    rng = np.random.default_rng(22)
    layers_a = three_layers(rng)
    layers_b = {"only": layers_a["second"] @ rotation(6, rng).astype(np.float32)}
    found = similarity_matrices(activations(layers_a), activations(layers_b), methods=("linear_cka",))
    assert found.values["linear_cka"].shape == (3, 1) and not found.within_one_model
    assert abs(found.values["linear_cka"][1, 0] - 1) < 1e-6  # float32 inputs: the rotation's rounding
    assert found.values["linear_cka"][0, 0] < 0.99
    assert found.low == {} and "intervals" not in found.to_dict()


def test_the_measure_reads_extracted_activations_and_writes_plain_json():
    torch.manual_seed(0)
    data = torch.randn(48, 5)
    model_a = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model_b = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    acts_a, acts_b = mp.extract(model_a, data), mp.extract(model_b, data)
    found = similarity_matrices(acts_a, acts_b, n_bootstrap=10)
    written = json.loads(json.dumps(found.to_dict(), allow_nan=False))
    assert written["methods"] == list(measure_module.DEFAULT_METHODS)
    assert written["layers_a"] == list(acts_a) and written["layers_b"] == list(acts_b)
    for method in written["methods"]:
        values = np.array(written["values"][method], dtype=float)
        low = np.array(written["intervals"][method]["low"], dtype=float)
        high = np.array(written["intervals"][method]["high"], dtype=float)
        assert values.shape == (len(acts_a), len(acts_b))
        assert np.all(low <= high)


def test_the_measure_refuses_activations_of_different_points():
    rng = np.random.default_rng(23)
    layers = three_layers(rng)
    with pytest.raises(InputError, match="30 and 29 points"):
        similarity_matrices(activations(layers), activations({k: v[:29] for k, v in layers.items()}))
    labels = rng.integers(0, 3, size=30)
    with pytest.raises(InputError, match="different labels"):
        similarity_matrices(activations(layers, labels), activations(layers, np.roll(labels, 1)))
    source = {"data": "digits", "split": "test", "seed": 0, "n_points": 30}
    with pytest.raises(InputError, match="split 'test' and 'train'"):
        similarity_matrices(activations(layers, source=source),
                            activations(layers, source={**source, "split": "train"}))  # fmt: skip
    similarity_matrices(activations(layers, labels, source), activations(layers, labels, dict(source)),
                        methods=("procrustes",))  # fmt: skip
    with pytest.raises(InputError, match="needs at least 4"):
        similarity_matrices(
            activations({k: v[:3] for k, v in layers.items()}), methods=("linear_cka_debiased",)
        )
    with pytest.raises(InputError, match="unknown similarity"):
        similarity_matrices(activations(layers), methods=("cka",))
