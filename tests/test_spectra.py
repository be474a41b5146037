"""Class/cross-class spectra against explicit matrices, closed forms and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

from manifold_probe.errors import InputError
from manifold_probe.geometry.collapse import CollapseStatistics
from manifold_probe.geometry.spectra import (
    FISHER_PARTS,
    FisherBlock,
    covariance_spectra,
    covariance_spectra_from_statistics,
    fisher_spectra,
)

# ---------------------------------------------------------------- covariance spectra


def test_covariance_spectra_equal_plain_eigenvalues():
    rng = np.random.default_rng(0)
    n_classes, dim = 4, 9
    labels = rng.integers(0, n_classes, size=300)
    h = rng.standard_normal((n_classes, dim))[labels] * 3 + rng.standard_normal((300, dim)) + 7
    spectra = covariance_spectra(h, labels, batch_size=23)

    total = np.linalg.eigvalsh(np.cov(h.T, bias=True))[::-1]
    means = np.stack([h[labels == c].mean(axis=0) for c in range(n_classes)])
    centred = h - means[labels]
    within = np.linalg.eigvalsh(centred.T @ centred / len(h))[::-1]
    offsets = means[labels] - h.mean(axis=0)
    between = np.linalg.eigvalsh(offsets.T @ offsets / len(h))[::-1][: n_classes - 1]
    np.testing.assert_allclose(spectra.total, total, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(spectra.within, within, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(spectra.between, between, rtol=1e-9)


def test_covariance_spectra_of_an_exact_simplex_design():
    """ETF means of norm a, each class the 2p points mu_c +- s sqrt(p) e_j: Sigma_W = s^2 I,
    Sigma_B has C-1 eigenvalues a^2/(C-1), Sigma_T adds them: everything in closed form."""
    rng = np.random.default_rng(1)
    n_classes, dim, a, s = 6, 15, 4.0, 0.5
    basis, _ = np.linalg.qr(rng.standard_normal((dim, n_classes)))
    etf = np.sqrt(n_classes / (n_classes - 1)) * (np.eye(n_classes) - 1 / n_classes)
    means = a * (basis @ etf).T - 2.0
    star = s * np.sqrt(dim) * np.vstack([np.eye(dim), -np.eye(dim)])
    h = np.vstack([m + star for m in means])
    labels = np.repeat(np.arange(n_classes), 2 * dim)
    spectra = covariance_spectra(h, labels)

    outlier = a**2 / (n_classes - 1)
    np.testing.assert_allclose(spectra.within, s**2, rtol=1e-10)
    np.testing.assert_allclose(spectra.between, outlier, rtol=1e-10)
    np.testing.assert_allclose(spectra.total[: n_classes - 1], outlier + s**2, rtol=1e-10)
    np.testing.assert_allclose(spectra.total[n_classes - 1 :], s**2, rtol=1e-10)
    m = spectra.metrics
    total_variance = a**2 + dim * s**2
    assert m["n_outliers"] == n_classes - 1
    assert m["outlier_variance_share"] == pytest.approx(
        (a**2 + (n_classes - 1) * s**2) / total_variance, rel=1e-10
    )
    assert m["between_variance_share"] == pytest.approx(a**2 / total_variance, rel=1e-10)
    assert m["outlier_bulk_ratio"] == pytest.approx(outlier / s**2, rel=1e-10)
    assert m["class_means_abs_cos"] == pytest.approx(1 / (n_classes - 1), rel=1e-10)


def _spiked(n_per_class, n_classes, dim, strength, seed):
    """Features N(0, I_p) plus class means of norm `strength` along random directions (the
    spikes of Sigma_T have population size strength^2 (C-1)/C / (C-1) per direction)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    means = strength * rng.standard_normal((n_classes, dim)) / np.sqrt(dim)
    return rng.standard_normal((len(labels), dim)) + means[labels], labels


def test_pure_noise_has_no_outliers():
    """No class structure: Sigma_T's top eigenvalue sits above lambda_1(Sigma_W) by a
    Tracy-Widom fluctuation only; with the margin 0 outliers in (almost) every sample (the
    bare comparison counted 1 in every one of them)."""
    counts = []
    for seed in range(40):
        h, labels = _spiked(100, 10, 64, 0.0, seed)
        spectra = covariance_spectra(h, labels)
        counts.append(spectra.metrics["n_outliers"])
        bare = np.sum(spectra.total > spectra.within[0] * (1 + 1e-12))
        assert bare >= 1
        assert spectra.metrics["bulk_edge"] == spectra.within[0]
        assert spectra.metrics["outlier_margin"] > 0
    assert sum(counts) <= 1


def test_spikes_below_the_bbp_threshold_are_not_outliers_and_strong_ones_are():
    """Class means as spikes of strength l per direction: below the BBP threshold
    l < sqrt(p / N) they do not leave the bulk (0 outliers); well above, all C - 1 do."""
    n_classes, dim, per_class = 5, 100, 200  # sqrt(p / N) = 0.32
    weak = [covariance_spectra(*_spiked(per_class, n_classes, dim, 0.3, s)).metrics for s in range(10)]
    assert sum(m["n_outliers"] for m in weak) <= 1
    strong = covariance_spectra(*_spiked(per_class, n_classes, dim, 4.0, 0)).metrics
    assert strong["n_outliers"] == n_classes - 1


def test_tracy_widom_margin_shrinks_like_n_to_the_minus_two_thirds():
    from manifold_probe.geometry.spectra import tracy_widom_margin

    small, large = tracy_widom_margin(1000, 100), tracy_widom_margin(8000, 800)
    assert small / large == pytest.approx(4.0, rel=0.02)  # (8000 / 1000)^(2/3) at fixed p / n
    assert tracy_widom_margin(1000, 100, level=0.05) < small


@pytest.mark.parametrize("seed", range(8))
def test_outliers_obey_weyl_bounds(seed):
    rng = np.random.default_rng(seed)
    n_classes, dim = int(rng.integers(2, 6)), int(rng.integers(3, 12))
    labels = np.r_[np.repeat(np.arange(n_classes), 2), rng.integers(0, n_classes, size=80)]
    h = rng.standard_normal((len(labels), dim)) * rng.uniform(0.1, 3, size=dim)
    h += rng.standard_normal((n_classes, dim))[labels] * rng.uniform(0, 4)
    spectra = covariance_spectra(h, labels)
    assert spectra.metrics["n_outliers"] <= n_classes - 1
    assert np.all(spectra.total >= spectra.within - 1e-12)  # Sigma_B is positive semi-definite
    # lambda_{i + C - 1}(Sigma_T) <= lambda_i(Sigma_W)
    if dim >= n_classes:
        bulk = spectra.total[n_classes - 1 :]
        assert np.all(bulk <= spectra.within[: len(bulk)] + 1e-12)


def test_streamed_statistics_give_the_same_spectra():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=90)
    h = rng.standard_normal((90, 5)) + labels[:, None]
    stats = CollapseStatistics(3)
    for start in range(0, 90, 11):
        stats.update(h[start : start + 11].astype(np.float32), labels[start : start + 11])
    streamed = covariance_spectra_from_statistics(stats)
    whole = covariance_spectra(h.astype(np.float32), labels)
    np.testing.assert_allclose(streamed.total, whole.total, rtol=1e-10)
    assert streamed.metrics == pytest.approx(whole.metrics, rel=1e-10)


# ---------------------------------------------------------------- Fisher / Gauss-Newton block


def fisher_problem(seed: int, n_classes: int, dim: int, per_class, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centres = rng.standard_normal((n_classes, dim)) * 2
    h = centres[labels] + rng.standard_normal((len(labels), dim))
    w = scale * centres + 0.3 * rng.standard_normal((n_classes, dim))
    b = rng.standard_normal(n_classes)
    return h, labels, w, b


def explicit_gradients(h, labels, w, b, append_one=True):
    """v_{i,c'} = sqrt(p_ic') (e_c' - p_i) (x) h~_i, as an (N, C, C q) array, and p."""
    h_tilde = np.hstack([h, np.ones((len(h), 1))]) if append_one else h
    logits = h @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n_classes = w.shape[0]
    v = np.stack(
        [
            np.stack(
                [
                    np.sqrt(p[i, c]) * np.kron(np.eye(n_classes)[c] - p[i], h_tilde[i])
                    for c in range(n_classes)
                ]
            )
            for i in range(len(h))
        ]
    )
    return v, p, h_tilde


def explicit_parts(h, labels, w, b, append_one=True):
    """G = Ave_i (diag p_i - p_i p_i^T) (x) h~ h~^T and its split written from the definitions."""
    v, p, h_tilde = explicit_gradients(h, labels, w, b, append_one)
    n, n_classes = p.shape
    total = (
        sum(np.kron(np.diag(p[i]) - np.outer(p[i], p[i]), np.outer(h_tilde[i], h_tilde[i])) for i in range(n))
        / n
    )
    weights = np.bincount(labels) / n
    d = np.stack([v[labels == c].mean(axis=0) for c in range(n_classes)])  # D[c, c']
    parts = {"total": total}
    parts["same_class"] = sum(weights[c] * np.outer(d[c, c], d[c, c]) for c in range(n_classes))
    class_means = [np.mean([d[c, k] for k in range(n_classes) if k != c], axis=0) for c in range(n_classes)]
    parts["class_means"] = sum(
        weights[c] * (n_classes - 1) * np.outer(class_means[c], class_means[c]) for c in range(n_classes)
    )
    parts["cross_class"] = sum(
        weights[c] * np.outer(d[c, k] - class_means[c], d[c, k] - class_means[c])
        for c in range(n_classes)
        for k in range(n_classes)
        if k != c
    )
    deviations = (v - d[labels]).reshape(-1, v.shape[2])
    parts["within_class"] = deviations.T @ deviations / n
    return parts


def test_gauss_newton_block_is_the_hessian_of_the_cross_entropy():
    """The logits are linear in (W, b), so the Hessian of the mean cross-entropy in (W, b) is
    exactly the Gauss-Newton matrix: autograd gives an independent answer."""
    h, labels, w, b = fisher_problem(0, 3, 4, [5, 7, 4])
    features = torch.from_numpy(h)
    targets = torch.from_numpy(labels)

    def loss(flat):
        params = flat.reshape(3, 5)
        logits = features @ params[:, :4].T + params[:, 4]
        return torch.nn.functional.cross_entropy(logits, targets)

    start = torch.from_numpy(np.hstack([w, b[:, None]]).ravel())
    hessian = torch.autograd.functional.hessian(loss, start).numpy()
    block = FisherBlock(h, labels, w, b)
    dense = block.operator("total").matmat(np.eye(15))
    np.testing.assert_allclose(dense, hessian, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(explicit_parts(h, labels, w, b)["total"], hessian, atol=1e-13)


@pytest.mark.parametrize("append_one", [True, False])
def test_fisher_parts_sum_to_the_whole_and_match_their_definitions(append_one):
    h, labels, w, b = fisher_problem(1, 4, 3, [6, 3, 9, 5])  # unbalanced on purpose
    explicit = explicit_parts(h, labels, w, b, append_one)
    block = FisherBlock(h, labels, w, b, append_one=append_one)
    size = explicit["total"].shape[0]
    dense = {part: block.operator(part).matmat(np.eye(size)) for part in FISHER_PARTS}
    scale = np.abs(explicit["total"]).max()
    whole = sum(dense[part] for part in FISHER_PARTS[1:])
    np.testing.assert_allclose(whole, explicit["total"], rtol=0, atol=1e-13 * scale)
    for part in FISHER_PARTS:
        np.testing.assert_allclose(dense[part], explicit[part], rtol=0, atol=1e-13 * scale, err_msg=part)
        np.testing.assert_allclose(dense[part], dense[part].T, rtol=0, atol=1e-13 * scale)


def test_fisher_eigenvalues_from_gram_matrices_equal_explicit_eigenvalues():
    h, labels, w, b = fisher_problem(2, 3, 4, [8, 8, 8])
    explicit = explicit_parts(h, labels, w, b)
    spectra = fisher_spectra(h, labels, w, b)
    for part in FISHER_PARTS:
        mine = getattr(spectra, part)
        reference = np.linalg.eigvalsh(explicit[part])[::-1][: len(mine)]
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-12, err_msg=part)
        # what the Gram matrix does not return is zero
        rest = np.linalg.eigvalsh(explicit[part])[::-1][len(mine) :]
        if part in ("same_class", "class_means", "cross_class"):
            assert np.all(np.abs(rest) < 1e-12), part
        assert spectra.traces[part] == pytest.approx(np.trace(explicit[part]), rel=1e-10), part
    shares = [spectra.metrics[f"fisher_{part}_share"] for part in FISHER_PARTS[1:]]
    assert sum(shares) == pytest.approx(1.0, rel=1e-12)
    bulk_edge = np.linalg.eigvalsh(explicit["within_class"])[-1]
    expected_outliers = np.sum(np.linalg.eigvalsh(explicit["total"]) > bulk_edge)
    assert spectra.metrics["fisher_n_outliers"] == expected_outliers
    assert expected_outliers <= 9  # Weyl: G - G_within has rank <= C^2
    assert spectra.metrics["fisher_outlier_bulk_ratio"] == pytest.approx(
        np.linalg.eigvalsh(explicit["class_means"])[-3] / bulk_edge, rel=1e-10
    )


def test_fisher_lanczos_path_matches_dense_eigenvalues():
    """Cq = 4 * 81 > 256: top eigenvalues by Lanczos on matrix-free products, and the cross-class
    part by Lanczos too once its Gram matrix is over the limit."""
    h, labels, w, b = fisher_problem(3, 4, 80, [30, 25, 20, 35], scale=0.05)
    block = FisherBlock(h, labels, w, b)
    size = 4 * 81
    spectra = fisher_spectra(h, labels, w, b, n_top=12, gram_limit=0)
    for part, count in (("total", 12), ("within_class", 4), ("cross_class", 12)):
        dense = block.operator(part).matmat(np.eye(size))
        reference = np.linalg.eigvalsh(dense)[::-1][:count]
        mine = getattr(spectra, part)
        assert len(mine) == count
        np.testing.assert_allclose(mine, reference, rtol=1e-8, atol=1e-12 * reference[0], err_msg=part)


def test_fisher_block_stays_accurate_when_the_softmax_is_nearly_one_hot():
    """Two classes with logit gaps of 40-60 (1 - p_max = 1e-18 .. 1e-26, below float64 eps):
    Q_i = diag(p_i) - p_i p_i^T = e_i (1 - e_i) [[1, -1], [-1, 1]] with e_i = expit(-|gap_i|), so
    G's non-zero eigenvalues are twice those of (1/N) sum_i e_i (1 - e_i) h~_i h~_i^T."""
    rng = np.random.default_rng(5)
    h = rng.standard_normal((40, 3))
    direction = np.array([1.0, 0.5, -0.2])
    h += np.sign(h @ direction)[:, None] * direction * 40  # push every point far from the boundary
    w = np.vstack([direction, -direction]) / 2
    gaps = h @ (w[0] - w[1])
    assert np.all(np.abs(gaps) > 40)
    labels = (gaps < 0).astype(int)
    h_tilde = np.hstack([h, np.ones((40, 1))])
    error = expit(-np.abs(gaps))
    reference = 2 * np.linalg.eigvalsh((h_tilde.T * (error * (1 - error))) @ h_tilde / 40)[::-1]
    spectra = fisher_spectra(h, labels, w)
    np.testing.assert_allclose(spectra.total[:4], reference, rtol=1e-9)
    np.testing.assert_allclose(spectra.total[4:], 0, atol=1e-12 * reference[0])
    assert spectra.traces["total"] == pytest.approx(reference.sum(), rel=1e-12)
    parts = sum(spectra.traces[part] for part in FISHER_PARTS[1:])
    assert parts == pytest.approx(spectra.traces["total"], rel=1e-9)
    # G0 lives entirely on the 1 - p_{i,y_i} = e_i entries: D_cc = Ave_{i in c} e_i sqrt(1 - e_i)
    # (e_c - e_other) (x) h~_i, so its Gram matrix is 2 [[pi_0 |a_0|^2, -sqrt(pi_0 pi_1) a_0.a_1],
    # [., pi_1 |a_1|^2]] with a_c = Ave_{i in c} e_i sqrt(1 - e_i) h~_i.
    weights = np.bincount(labels) / 40
    a = np.stack(
        [
            np.mean((error * np.sqrt(1 - error))[labels == c, None] * h_tilde[labels == c], axis=0)
            for c in (0, 1)
        ]
    )
    signs = np.array([[1.0, -1.0], [-1.0, 1.0]])
    gram = 2 * signs * np.sqrt(np.outer(weights, weights)) * (a @ a.T)
    same_class = np.linalg.eigvalsh(gram)[::-1]
    np.testing.assert_allclose(spectra.same_class, same_class, rtol=1e-9)
    operator = FisherBlock(h, labels, w).operator("same_class").matmat(np.eye(8))
    np.testing.assert_allclose(np.linalg.eigvalsh(operator)[::-1][:2], same_class, rtol=1e-9)


def test_fisher_bad_input():
    h, labels, w, b = fisher_problem(4, 3, 4, [4, 4, 4])
    with pytest.raises(InputError, match="class 2 has no samples"):
        FisherBlock(h[:8], labels[:8], w, b)
    with pytest.raises(InputError, match="shape"):
        FisherBlock(h, labels, w[:, :3], b)
    with pytest.raises(InputError, match="outside"):
        FisherBlock(h, labels + 1, w, b)
