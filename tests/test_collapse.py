"""Neural collapse metrics against closed forms, a plain two-pass implementation and known traps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.geometry.collapse import (
    CollapseStatistics,
    neural_collapse,
    neural_collapse_streamed,
)


def simplex_means(n_classes: int, dim: int, norm: float, rng, offset: float = 0.0) -> np.ndarray:
    """C vertices of a simplex ETF of norm `norm` around `offset`, randomly rotated into R^dim."""
    basis, _ = np.linalg.qr(rng.standard_normal((dim, n_classes)))
    etf = np.sqrt(n_classes / (n_classes - 1)) * (np.eye(n_classes) - 1.0 / n_classes)
    return norm * (basis @ etf).T + offset


def star_design(means: np.ndarray, sigma: float, repeats=None):
    """Each class c: the 2p points mu_c +- sigma sqrt(p) e_j (repeated repeats[c] times).

    Its class means are exactly mu_c and its within-class covariance is exactly sigma^2 I, so
    every collapse metric has an exact closed form, free of sampling error."""
    n_classes, dim = means.shape
    star = sigma * np.sqrt(dim) * np.vstack([np.eye(dim), -np.eye(dim)])
    repeats = np.ones(n_classes, dtype=int) if repeats is None else np.asarray(repeats)
    features = np.vstack([np.tile(means[c] + star, (repeats[c], 1)) for c in range(n_classes)])
    labels = np.repeat(np.arange(n_classes), 2 * dim * repeats)
    return features, labels


def gaussian_classes(means: np.ndarray, sigma: float, per_class: int, rng):
    labels = np.repeat(np.arange(len(means)), per_class)
    return means[labels] + sigma * rng.standard_normal((len(labels), means.shape[1])), labels


def ncc_classifier(features: np.ndarray, labels: np.ndarray):
    """W, b with argmax(W h + b) = nearest class mean: w_c = mu_c, b_c = -||mu_c||^2 / 2."""
    means = np.stack([features[labels == c].mean(axis=0) for c in np.unique(labels)])
    return means, -0.5 * np.sum(means**2, axis=1)


def plain_metrics(features, labels, classifier=None):
    """Papyan's formulas written out on whole float64 arrays (two passes, explicit matrices)."""
    h = np.asarray(features, dtype=np.float64)
    classes = np.unique(labels)
    n_classes, n = len(classes), len(h)
    means = np.stack([h[labels == c].mean(axis=0) for c in classes])
    global_mean = means.mean(axis=0)
    centred = h - means[np.searchsorted(classes, labels)]
    sigma_w = centred.T @ centred / n
    m = (means - global_mean).T  # p x C
    sigma_b = m @ m.T / n_classes
    values, vectors = np.linalg.eigh(sigma_b)
    top = vectors[:, -(n_classes - 1) :] / values[-(n_classes - 1) :]
    nc1 = np.trace(sigma_w @ top @ vectors[:, -(n_classes - 1) :].T) / n_classes
    variances = np.array([np.mean(np.sum(centred[labels == c] ** 2, axis=1)) for c in classes])
    cdnv = np.mean(
        [
            (variances[a] + variances[b]) / (2 * np.sum((means[a] - means[b]) ** 2))
            for a in range(n_classes)
            for b in range(a + 1, n_classes)
        ]
    )
    out = {"nc1": nc1, "nc1_trace_ratio": np.trace(sigma_w) / np.trace(sigma_b), "cdnv": cdnv}
    gram = m.T @ m
    etf = (np.eye(n_classes) - 1 / n_classes) / np.sqrt(n_classes - 1)
    out["etf_distance"] = np.linalg.norm(gram / np.linalg.norm(gram) - etf)
    if classifier is not None:
        w = np.asarray(classifier, dtype=np.float64)
        difference = w.T / np.linalg.norm(w) - m / np.linalg.norm(m)
        out["nc3_self_duality"] = np.linalg.norm(difference) ** 2
    return out


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n_classes,dim,norm,sigma", [(3, 6, 2.0, 0.5), (10, 24, 5.0, 1.3)])
def test_exact_star_design_matches_every_closed_form(n_classes, dim, norm, sigma):
    rng = np.random.default_rng(0)
    means = simplex_means(n_classes, dim, norm, rng, offset=3.0)
    h, y = star_design(means, sigma)
    w = means - means.mean(axis=0)
    weights, bias = ncc_classifier(h, y)
    result = neural_collapse(h, y, classifier=w)
    m = result.metrics
    c, p, a2, s2 = n_classes, dim, norm**2, sigma**2
    # Sigma_W = s2 I; Sigma_B has C-1 eigenvalues a2/(C-1):
    # Tr(Sigma_W Sigma_B^+)/C = s2 (C-1)^2/(a2 C)
    assert m["nc1"] == pytest.approx(s2 * (c - 1) ** 2 / (a2 * c), rel=1e-10)
    assert m["nc1_trace_ratio"] == pytest.approx(p * s2 / a2, rel=1e-10)
    # var_c = p s2, ||mu_c - mu_c'||^2 = 2 a2 C/(C-1)
    assert m["cdnv"] == pytest.approx(p * s2 * (c - 1) / (2 * a2 * c), rel=1e-10)
    for name in (
        "etf_distance",
        "nc2_equinorm_means",
        "nc2_equiangular_means",
        "nc2_max_angle_means",
        "nc2_equinorm_weights",
        "nc2_max_angle_weights",
        "nc3_self_duality",
    ):
        assert abs(m[name]) < 1e-7, name
    ncc = neural_collapse(h, y, classifier=weights, bias=bias).metrics
    assert ncc["nc4_ncc_mismatch"] == 0.0


def test_unbalanced_classes_keep_the_simplex_and_the_closed_form():
    """mu_G is the mean of the class means: unequal class sizes do not bend an ETF."""
    rng = np.random.default_rng(1)
    n_classes, dim, norm, sigma = 5, 8, 3.0, 0.4
    means = simplex_means(n_classes, dim, norm, rng, offset=-2.0)
    h, y = star_design(means, sigma, repeats=[1, 2, 3, 5, 8])
    m = neural_collapse(h, y).metrics
    assert m["etf_distance"] < 1e-7
    assert m["nc1"] == pytest.approx(sigma**2 * (n_classes - 1) ** 2 / (norm**2 * n_classes), rel=1e-10)
    # the sample-weighted global mean would make the centred means far from a simplex
    weighted = means - np.bincount(y) @ means / len(y)
    gram = weighted @ weighted.T
    etf = (np.eye(n_classes) - 1 / n_classes) / np.sqrt(n_classes - 1)
    assert np.linalg.norm(gram / np.linalg.norm(gram) - etf) > 0.1


@pytest.mark.parametrize(
    "n_classes,dim,norm,sigma,per_class", [(4, 16, 2.0, 0.5, 1500), (10, 64, 3.0, 0.7, 600)]
)
def test_gaussian_noise_around_simplex_gives_closed_form_nc1(n_classes, dim, norm, sigma, per_class):
    """Population value s2 (C-1)^2 / (a2 C) (docs/methods.md#neural-collapse), checked within sampling error.

    Finite samples bias the estimate: the empirical centred means carry noise of variance
    s2/n per coordinate, which adds p s2/n to every non-zero eigenvalue a2 C/(C-1) of their
    Gram matrix, and the 1/N Sigma_W has expectation s2 (N-C)/N. To first order
        E nc1 = s2 (C-1)^2 / (a2 C + (C-1) p s2 / n) * (N - C) / N.
    """
    rng = np.random.default_rng(2)
    means = simplex_means(n_classes, dim, norm, rng, offset=5.0)
    h, y = gaussian_classes(means, sigma, per_class, rng)
    c, p, a2, s2, n = n_classes, dim, norm**2, sigma**2, len(y)
    population = s2 * (c - 1) ** 2 / (a2 * c)
    finite = s2 * (c - 1) ** 2 / (a2 * c + (c - 1) * p * s2 / per_class) * (n - c) / n
    # relative standard error of sum_k v_k^T Sigma_W v_k over C-1 directions: sqrt(2 / (N (C-1)))
    tolerance = 4 * np.sqrt(2 / (n * (c - 1)))
    nc1 = neural_collapse(h, y).metrics["nc1"]
    assert nc1 == pytest.approx(finite, rel=tolerance)
    assert nc1 == pytest.approx(population, rel=tolerance + abs(finite / population - 1))


def test_random_means_in_few_dimensions_are_far_from_a_simplex():
    """C = 10 means spanning only r = 3 dimensions: G/||G|| has rank 3 and unit norm, so its
    distance to the ETF (C-1 equal eigenvalues 1/sqrt(C-1)) is at least
    sqrt(2 - 2 sqrt(r/(C-1)))."""
    rng = np.random.default_rng(3)
    n_classes, dim = 10, 3
    means = rng.uniform(-1, 1, size=(n_classes, dim))
    h, y = gaussian_classes(means, 0.05, 30, rng)
    m = neural_collapse(h, y).metrics
    assert m["etf_distance"] >= np.sqrt(2 - 2 * np.sqrt(dim / (n_classes - 1))) - 1e-12
    assert m["nc2_max_angle_means"] > 0.1
    assert m["nc2_equinorm_means"] > 0.1
    exact = neural_collapse(*star_design(simplex_means(n_classes, 12, 1.0, rng), 0.05)).metrics
    assert exact["etf_distance"] < 1e-7


def test_self_duality_is_zero_only_when_the_classifier_is_the_means():
    rng = np.random.default_rng(4)
    means = simplex_means(6, 20, 2.0, rng, offset=1.0)
    h, y = gaussian_classes(means, 0.3, 50, rng)
    stats = CollapseStatistics(6)
    stats.update(h, y)
    centred = stats.class_means - stats.class_means.mean(axis=0)
    assert stats.result(3.7 * centred).metrics["nc3_self_duality"] < 1e-20
    other = stats.result(rng.standard_normal((6, 20))).metrics["nc3_self_duality"]
    assert other > 0.5


# ---------------------------------------------------------------- numerics


def naive_float32_nc1(features: np.ndarray, labels: np.ndarray) -> float:
    """What a float32 pipeline does: float32 scatter matrices, pinv with a float64-sized cutoff."""
    h = features.astype(np.float32)
    n_classes = labels.max() + 1
    means = np.stack([h[labels == c].mean(axis=0) for c in range(n_classes)])
    m = (means - h.mean(axis=0)).T
    sigma_b = m @ m.T / n_classes
    centred = h - means[labels]
    sigma_w = centred.T @ centred / len(h)
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-15)) / n_classes)


def test_float32_input_avoids_the_pseudo_inverse_trap():
    rng = np.random.default_rng(5)
    n_classes, dim, norm, sigma = 10, 64, 3.0, 0.7
    means = simplex_means(n_classes, dim, norm, rng, offset=100.0)
    h64, y = gaussian_classes(means, sigma, 200, rng)
    h32 = h64.astype(np.float32)
    expected = sigma**2 * (n_classes - 1) ** 2 / (norm**2 * n_classes)

    naive = naive_float32_nc1(h32, y)
    assert naive < 0 or abs(naive / expected) > 100  # the trap is real on this data

    ours = neural_collapse(h32, y).metrics["nc1"]
    assert 0 < ours
    assert ours == pytest.approx(expected, rel=0.05)
    same_data_float64 = neural_collapse(h32.astype(np.float64), y).metrics["nc1"]
    assert ours == pytest.approx(same_data_float64, rel=1e-12)


def test_large_offset_costs_no_precision():
    """Chan's pooled update: no E[hh^T] - mu mu^T cancellation."""
    rng = np.random.default_rng(6)
    means = simplex_means(4, 5, 2.0, rng)
    h, y = gaussian_classes(means, 0.5, 200, rng)
    offset = 1e7
    shifted = h + offset
    near, far = CollapseStatistics(4), CollapseStatistics(4)
    for start in range(0, len(y), 37):
        near.update(h[start : start + 37], y[start : start + 37])
        far.update(shifted[start : start + 37], y[start : start + 37])
    reference = near.within_class_covariance
    scale = np.abs(reference).max()
    # the shifted data themselves are rounded to ~1e7 * 2e-16 = 2e-9
    assert np.abs(far.within_class_covariance - reference).max() < 1e-7 * scale
    assert far.result().metrics["nc1"] == pytest.approx(near.result().metrics["nc1"], rel=1e-6)
    # the one-pass second-moment formula fails on the same data
    second_moment = sum(
        shifted[y == c].T @ shifted[y == c]
        - np.sum(y == c) * np.outer(shifted[y == c].mean(0), shifted[y == c].mean(0))
        for c in range(4)
    ) / len(y)
    assert np.abs(second_moment - reference).max() > 1e-3 * scale


@pytest.mark.parametrize("batch_size", [1, 7, 64, 10_000])
def test_streaming_in_batches_equals_the_whole_array_computation(batch_size):
    rng = np.random.default_rng(7)
    n_classes, dim = 5, 12
    means = rng.standard_normal((n_classes, dim)) * 2 + 1
    labels = rng.integers(0, n_classes, size=600)  # shuffled, unbalanced
    h = means[labels] + rng.standard_normal((600, dim)) * rng.uniform(0.2, 1.0, size=dim)
    w = rng.standard_normal((n_classes, dim))
    expected = plain_metrics(h, labels, w)
    got = neural_collapse(h, labels, classifier=w, batch_size=batch_size).metrics
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9), name


def test_streamed_torch_batches_and_two_passes():
    rng = np.random.default_rng(8)
    n_classes, dim = 4, 6
    h, y = gaussian_classes(rng.standard_normal((n_classes, dim)) * 3, 0.8, 40, rng)
    order = rng.permutation(len(y))
    h, y = h[order], y[order]
    w, b = rng.standard_normal((n_classes, dim)), rng.standard_normal(n_classes)
    calls = []

    def batches():
        calls.append(1)
        for start in range(0, len(y), 25):
            rows = slice(start, start + 25)
            yield torch.from_numpy(h[rows]).float(), torch.from_numpy(y[rows])

    streamed = neural_collapse_streamed(
        batches, n_classes, classifier=torch.from_numpy(w), bias=torch.from_numpy(b)
    )
    whole = neural_collapse(h.astype(np.float32), y, classifier=w, bias=b)
    assert len(calls) == 2
    for name, value in whole.metrics.items():
        assert streamed.metrics[name] == pytest.approx(value, rel=1e-9), name
    half = torch.from_numpy(h).bfloat16()
    stats = CollapseStatistics(n_classes)
    stats.update(half, torch.from_numpy(y))
    np.testing.assert_array_equal(stats.class_counts, np.bincount(y))
    rounded = half.float().numpy().astype(np.float64)
    np.testing.assert_allclose(stats.class_means[0], rounded[y == 0].mean(axis=0), rtol=1e-12)


def test_ncc_mismatch_against_brute_force():
    rng = np.random.default_rng(9)
    n_classes, dim = 5, 7
    h, y = gaussian_classes(rng.standard_normal((n_classes, dim)), 1.0, 60, rng)
    weights, bias = ncc_classifier(h, y)
    assert neural_collapse(h, y, classifier=weights, bias=bias).metrics["nc4_ncc_mismatch"] == 0
    # rows rotated by one class: every prediction moves to another class
    rotated = neural_collapse(h, y, classifier=np.roll(weights, 1, axis=0), bias=np.roll(bias, 1)).metrics[
        "nc4_ncc_mismatch"
    ]
    assert rotated == 1.0
    w, b = rng.standard_normal((n_classes, dim)), rng.standard_normal(n_classes)
    means = np.stack([h[y == c].mean(axis=0) for c in range(n_classes)])
    nearest = np.argmin(((h[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    expected = np.mean(np.argmax(h @ w.T + b, axis=1) != nearest)
    assert neural_collapse(h, y, classifier=w, bias=b).metrics["nc4_ncc_mismatch"] == expected


def test_any_labels_map_to_sorted_classes():
    rng = np.random.default_rng(12)
    h, y = gaussian_classes(rng.standard_normal((3, 4)) * 2, 0.5, 20, rng)
    names = np.array(["cat", "dog", "emu"])[y]
    by_index = neural_collapse(h, y)
    by_name = neural_collapse(h, names)
    assert by_name.metrics == by_index.metrics
    np.testing.assert_array_equal(by_name.class_counts, [20, 20, 20])
    np.testing.assert_allclose(by_name.class_means[2], h[y == 2].mean(axis=0), rtol=1e-12)


def test_degenerate_means_give_infinite_nc1():
    """Three classes whose means lie on a line: Sigma_B has rank 1 < C-1, and the within-class
    spread orthogonal to the line has no between-class separation to be measured against."""
    rng = np.random.default_rng(10)
    means = np.outer([0.0, 1.0, 2.0], rng.standard_normal(4)) + 1.0
    h, y = star_design(means, 0.1)
    assert neural_collapse(h, y).metrics["nc1"] == np.inf


# ---------------------------------------------------------------- input checks


def test_bad_input_raises_one_clear_input_error():
    rng = np.random.default_rng(11)
    h = rng.standard_normal((20, 3))
    y = np.repeat([0, 1], 10)
    with pytest.raises(InputError, match="at least 2 classes"):
        CollapseStatistics(1)
    with pytest.raises(InputError, match="at least 2"):
        neural_collapse(h, np.r_[np.zeros(19, int), 1])  # class 1 has one sample
    with pytest.raises(InputError, match="NaN"):
        neural_collapse(np.where(np.eye(20, 3) > 0, np.nan, h), y)
    stats = CollapseStatistics(2)
    with pytest.raises(InputError, match="outside"):
        stats.update(h, np.r_[y[:-1], 2])
    with pytest.raises(InputError, match="integer class indices"):
        stats.update(h, np.where(y == 0, "cat", "dog"))
    with pytest.raises(InputError, match="no features"):
        stats.result()
    stats.update(h, y)
    with pytest.raises(InputError, match="columns"):
        stats.update(rng.standard_normal((4, 5)), [0, 1, 0, 1])
    with pytest.raises(InputError, match="shape"):
        stats.result(rng.standard_normal((3, 3)))
    with pytest.raises(InputError, match="bias"):
        stats.ncc_mismatch(rng.standard_normal((2, 3)), bias=[1.0, 2.0, 3.0])
    counter = stats.ncc_mismatch(rng.standard_normal((2, 3)))
    counter.update(h)
    stats.update(h[:2], y[:2])
    with pytest.raises(ValueError, match="rebuild"):
        stats.result(ncc=counter)
    with pytest.raises(InputError, match="class 1 has 0"):
        partial = CollapseStatistics(2)
        partial.update(h[:10], y[:10])
        partial.result()
