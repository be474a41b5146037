"""Similarity of two representations of the same points: CKA, shape metrics, SVCCA, RSA.

Every estimator takes x (n x p) and y (n x q): the same n points, in the same order, seen by
two layers or two models (p and q may differ). Arithmetic is float64. What each number is,
which to use when, and how the tests check them: docs/similarity.md.

- `linear_cka`, `rbf_cka`: centred kernel alignment (Kornblith, Norouzi, Lee & Hinton 2019),
  biased (plug-in HSIC) or debiased (the unbiased HSIC of Song, Smola, Gretton, Bedo &
  Borgwardt 2012).
- `procrustes_distance`, `angular_shape_distance`: the rotation-invariant shape metrics of
  Williams, Kunz, Kornblith & Linderman (2021).
- `svcca`: singular vector CCA (Raghu, Gilmer, Yosinski & Sohl-Dickstein 2017).
- `rsa`: representational similarity analysis (Kriegeskorte, Mur & Bandettini 2008).
- `bootstrap_interval` and `permutation_test`: the uncertainty of any of them, by name
  (`SIMILARITY_METHODS`).

Resampling with repeats. A bootstrap resample draws the n points with replacement; it is held
as counts c_a (how often point a was drawn, summing to n) on the distinct points drawn
(`resample_counts`). The plug-in estimators (biased CKA, the shape metrics, SVCCA) of the
resample are those of the count-weighted points, exactly what they give on the resample with
its repeated rows. The U-statistics are different: a repeated point paired with its copy
would put a diagonal entry k(x_a, x_a) back among the off-diagonal ones that the debiased
HSIC averages (with a linear kernel at p >> n, a diagonal entry is p times larger than an
off-diagonal one), and in RSA a pair of copies adds a zero dissimilarity to both matrices.
So a pair of copies of one point counts as the diagonal it is: the debiased HSIC averages its
4-point kernel only over tuples of distinct points, each tuple weighted by the product of its
counts; RSA leaves out pairs of copies, and the RBF bandwidth is the median over pairs of
distinct points. With all counts 1 each is its plain estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.stats import rankdata

from ..errors import InputError
from ..validation import as_points, check_positive, check_seed, to_numpy
from .neighbours import point_scale

RBF_SIGMA_FRACTION = 0.8
"""The RBF bandwidth as a fraction of the median distance between points (Kornblith et al. 2019)."""

SVCCA_VARIANCE = 0.99
"""The share of variance the SVD step of SVCCA keeps (Raghu et al. 2017)."""

_EPS = np.finfo(np.float64).eps


# --- inputs -------------------------------------------------------------------------------


def _checked_pair(x, y, *, min_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """x and y as finite float64 arrays (n, p) and (n, q) with the same n, each rescaled to a
    spread near 1 (`point_scale`)."""
    x = as_points(to_numpy(x), name="x", min_points=min_points)
    y = as_points(to_numpy(y), name="y", min_points=min_points)
    if len(x) != len(y):
        raise InputError(
            f"x has {len(x)} rows but y has {len(y)}: a similarity compares two representations "
            "of the same points, so give both one row per point, in the same order."
        )
    return _rescaled(x), _rescaled(y)


def _rescaled(points: np.ndarray) -> np.ndarray:
    """A float64 copy divided by `point_scale`, a power of two near the spread: exact, and it keeps
    squares and Gram matrices of any finite points from overflowing (every similarity here is
    scale-invariant). One n x p copy, divided in place: touching fresh memory is not free."""
    copy = points.astype(np.float64)
    copy /= point_scale(points)
    return copy


def _centred(x: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """x minus its count-weighted mean row, or None when every row is the same point (no spread
    beyond the rounding of the mean): a similarity to it is undefined."""
    centred = x - counts @ x / counts.sum()
    if _largest_magnitude(centred) <= len(x) * _EPS * _largest_magnitude(x):
        return None
    return centred


def _largest_magnitude(a: np.ndarray) -> float:
    """max |a_ij|, without an |a| temporary."""
    return float(max(a.max(), -a.min()))


def _weighted_rows(x: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """The centred rows times sqrt(count): their Gram and cross-products are the resample's."""
    centred = _centred(x, counts)
    if centred is None or np.all(counts == 1):
        return centred
    return centred * np.sqrt(counts)[:, None]


# --- HSIC and CKA -------------------------------------------------------------------------


def _cka_ratio(cross: float, self_x: float, self_y: float) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); NaN when a self-term is not positive."""
    if not (self_x > 0 and self_y > 0):
        return float("nan")
    return float(cross / np.sqrt(self_x * self_y))


def _gram_form_is_cheaper(n: int, p: int, q: int) -> bool:
    """X^T Y, X^T X and Y^T Y cost n (pq + p^2 + q^2) multiply-adds; X X^T and Y Y^T n^2 (p + q)."""
    return n * (p + q) < p * q + p * p + q * q


def _biased_cka_gram(gram_x: np.ndarray, gram_y: np.ndarray, counts: np.ndarray) -> float:
    """CKA with the plug-in HSIC (Gretton et al. 2005) of the resample, sum_ab c_a c_b Kc_ab Lc_ab
    (up to the factor 1 / n^2) with Kc = (I - 1 pi^T) K (I - pi 1^T), pi = c / sum c."""
    weights, root = counts / counts.sum(), np.sqrt(counts)

    def centred(gram):  # sqrt(c_a c_b) Kc_ab
        row = gram @ weights
        return (gram - row[:, None] - row[None, :] + weights @ row) * root[:, None] * root[None, :]

    kc, lc = centred(gram_x), centred(gram_y)
    return _cka_ratio(np.sum(kc * lc), np.sum(kc * kc), np.sum(lc * lc))


def _quadruple_count(counts: np.ndarray) -> float:
    """The number of ordered 4-tuples of distinct points, each weighted by the product of its
    counts: 24 e_4(c) = s1^4 - 6 s1^2 s2 + 3 s2^2 + 8 s1 s3 - 6 s4 in the power sums
    s_k = sum_a c_a^k (Newton's identities); n(n-1)(n-2)(n-3) when every count is 1."""
    s1, s2, s3, s4 = (float(np.sum(counts**k)) for k in (1, 2, 3, 4))
    return s1**4 - 6 * s1**2 * s2 + 3 * s2**2 + 8 * s1 * s3 - 6 * s4


def _unbiased_hsic(pair_sums, kw, lw, counts: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC as the average over 4-tuples of distinct points (a, b, c, d),
    each weighted by w_a w_b w_c w_d (w the counts), of the kernel
        h = K_ab L_ab + K_ab L_cd - 2 K_ab L_ac,
    i.e. (A + B - 2 C) / N4 with A, B, C the weighted sums of the three terms and N4 the
    weighted number of tuples (`_quadruple_count`). K and L have zero diagonals; the sums come
    from pair_sums = (P11, P21, P22, P31), P_ij = sum_ab w_a^i w_b^j K_ab L_ab, and
    kw = (K w, K w^2), lw = (L w, L w^2), by counting the tuples that repeat a point out of
    the free sums:
        B = (w^T K w)(w^T L w) - 4 R - 2 P22,   R = (w^2)^T (Kw o Lw) - P22,
        A = (s1^2 - s2) P11 - 4 s1 P21 + 4 P31 + 2 P22,
        C = s1 T - R - (w^T (K w^2 o L w) - P31) - (w^T (K w o L w^2) - P31),
        T = w^T (Kw o Lw) - P21,
    with s_k = sum w^k. With every count 1 this is (1 / (n(n-3))) [tr(KL) + 1^T K 1 1^T L 1 /
    ((n-1)(n-2)) - 2/(n-2) 1^T K L 1] (Song et al. 2012, eq. 5). Being an average of one kernel
    over tuples, it is unchanged by translating x or y (h is), and a point never meets its own copy.
    """
    quadruples = _quadruple_count(counts)
    if quadruples <= 0:  # fewer than 4 distinct points
        return float("nan")
    (kw1, kw2), (lw1, lw2) = kw, lw
    p11, p21, p22, p31 = pair_sums
    w, w2 = counts, counts**2
    s1, s2 = w.sum(), w2.sum()
    repeat = w2 @ (kw1 * lw1) - p22  # sum over a, b, d distinct of w_a^2 w_b w_d K_ab L_ad
    triples = w @ (kw1 * lw1) - p21  # sum over a, b, c distinct of w_a w_b w_c K_ab L_ac
    same_pair = (s1**2 - s2) * p11 - 4 * s1 * p21 + 4 * p31 + 2 * p22
    disjoint = (w @ kw1) * (w @ lw1) - 4 * repeat - 2 * p22
    shared = s1 * triples - repeat - (w @ (kw2 * lw1) - p31) - (w @ (kw1 * lw2) - p31)
    return float((same_pair + disjoint - 2 * shared) / quadruples)


def _unbiased_cka_gram(gram_x: np.ndarray, gram_y: np.ndarray, counts: np.ndarray) -> float:
    """Debiased CKA from two Gram matrices whose diagonals are set to 0."""
    unit = bool(np.all(counts == 1))
    powers = [counts**k for k in (1, 2, 3)]

    def times_counts(gram):  # (K w, K w^2)
        first = gram @ counts
        return first, first if unit else gram @ powers[1]

    def pair_sums(a, b):  # (P11, P21, P22, P31)
        product = a * b
        first = product @ counts
        second = first if unit else product @ powers[1]
        return powers[0] @ first, powers[1] @ first, powers[1] @ second, powers[2] @ first

    kw, lw = times_counts(gram_x), times_counts(gram_y)
    return _cka_ratio(
        _unbiased_hsic(pair_sums(gram_x, gram_y), kw, lw, counts),
        _unbiased_hsic(pair_sums(gram_x, gram_x), kw, kw, counts),
        _unbiased_hsic(pair_sums(gram_y, gram_y), lw, lw, counts),
    )


def _unbiased_linear_cka_features(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> float:
    """Debiased linear CKA of K = x x^T and L = y y^T (diagonals left out) without forming them:
    with C_i = x^T diag(w^i) y, P_ij = sum_ab w_a^i w_b^j K_ab L_ab = <C_i, C_j>_F less the
    diagonal terms sum_a w_a^(i+j) K_aa L_aa; K v = x (x^T v) less K's diagonal times v."""
    unit = bool(np.all(counts == 1))
    powers = {k: counts**k for k in (1, 2, 3, 4)}

    def diagonal(a):
        return np.einsum("ij,ij->i", a, a)

    def times_counts(a, a_diagonal):  # (K w, K w^2)
        first = a @ (counts @ a) - a_diagonal * counts
        return first, first if unit else a @ (powers[2] @ a) - a_diagonal * powers[2]

    def pair_sums(a, b, a_diagonal, b_diagonal):  # (P11, P21, P22, P31)
        crosses = [a.T @ b] if unit else [(a * powers[k][:, None]).T @ b for k in (1, 2, 3)]
        c1, c2, c3 = (crosses * 3)[:3]
        diagonals = a_diagonal * b_diagonal
        parts = ((c1, c1, 2), (c2, c1, 3), (c2, c2, 4), (c3, c1, 4))
        return tuple(np.sum(left * right) - powers[k] @ diagonals for left, right, k in parts)

    dx, dy = diagonal(x), diagonal(y)
    kw, lw = times_counts(x, dx), times_counts(y, dy)
    return _cka_ratio(
        _unbiased_hsic(pair_sums(x, y, dx, dy), kw, lw, counts),
        _unbiased_hsic(pair_sums(x, x, dx, dx), kw, kw, counts),
        _unbiased_hsic(pair_sums(y, y, dy, dy), lw, lw, counts),
    )


def _linear_cka(x: np.ndarray, y: np.ndarray, counts: np.ndarray, *, debiased: bool = False) -> float:
    gram_form = _gram_form_is_cheaper(len(x), x.shape[1], y.shape[1])
    if debiased:
        xc, yc = _centred(x, counts), _centred(y, counts)
        if xc is None or yc is None:
            return float("nan")
        if not gram_form:
            return _unbiased_linear_cka_features(xc, yc, counts)
        gram_x, gram_y = xc @ xc.T, yc @ yc.T
        np.fill_diagonal(gram_x, 0.0)
        np.fill_diagonal(gram_y, 0.0)
        return _unbiased_cka_gram(gram_x, gram_y, counts)
    xs, ys = _weighted_rows(x, counts), _weighted_rows(y, counts)
    if xs is None or ys is None:
        return float("nan")
    if gram_form:  # sum_ab c_a c_b Kc_ab Lc_ab = <xs xs^T, ys ys^T>
        gram_x, gram_y = xs @ xs.T, ys @ ys.T
        return _cka_ratio(np.sum(gram_x * gram_y), np.sum(gram_x * gram_x), np.sum(gram_y * gram_y))
    cross, self_x, self_y = xs.T @ ys, xs.T @ xs, ys.T @ ys
    return _cka_ratio(np.sum(cross * cross), np.sum(self_x * self_x), np.sum(self_y * self_y))


def linear_cka(x, y, *, debiased: bool = False) -> float:
    """Linear centred kernel alignment (Kornblith, Norouzi, Lee & Hinton, ICML 2019).

    On column-centred x (n x p) and y (n x q),
        CKA = ||y^T x||_F^2 / (||x^T x||_F ||y^T y||_F) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
    with K = x x^T, L = y y^T and the biased HSIC tr(K H L H) / (n-1)^2, H = I - 11^T/n. It is in
    [0, 1], 1 when y is a rotation and rescaling of x, and invariant to orthogonal maps and
    isotropic scaling of either side, not to other invertible linear maps. Computed in the
    feature form (p x q products) or the Gram form (n x n), whichever costs fewer operations.

    debiased: use the unbiased HSIC estimator of Song, Smola, Gretton, Bedo & Borgwardt (JMLR
    2012), a U-statistic over distinct points (zero Gram diagonals) whose mean is the population
    HSIC. The biased CKA of independent representations is inflated when p, q are not small
    against n (about sqrt(pq / ((p + n)(q + n))) for independent Gaussian features, near 1 at
    p >> n); the debiased one stays near 0. Its range is [-1, 1] up to sampling error: it can be
    slightly negative, or slightly above 1. Needs 4 points.

    NaN when x or y has no spread (every row the same point).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    >>> round(linear_cka(x, 3 * x @ rotation), 12)
    1.0
    >>> bool(linear_cka(x, rng.normal(size=(100, 5))) < 0.2)
    True
    """
    x, y = _checked_pair(x, y, min_points=4 if debiased else 2)
    return _linear_cka(x, y, np.ones(len(x)), debiased=debiased)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of `values` each repeated `weights` times (whole numbers): np.median of the
    expanded list, the mean of its two middle entries when their count is even."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    half = cumulative[-1] / 2
    low = values[order][np.searchsorted(cumulative, half, side="left")]
    high = values[order][np.searchsorted(cumulative, half, side="right")]
    return float((low + high) / 2)


def _rbf_gram(x: np.ndarray, counts: np.ndarray, sigma_fraction: float) -> np.ndarray | None:
    """exp(-||x_a - x_b||^2 / (2 sigma^2)) with sigma = sigma_fraction x the median distance over
    pairs of distinct points (each pair weighted by its counts); None when that median is 0."""
    centred = _centred(x, counts)
    if centred is None:
        return None
    gram = centred @ centred.T
    norms = np.diag(gram)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0.0)
    np.fill_diagonal(squared, 0.0)
    rows, cols = np.triu_indices(len(x), 1)
    median = _weighted_median(np.sqrt(squared[rows, cols]), counts[rows] * counts[cols])
    if median <= 0:
        return None
    sigma = sigma_fraction * median
    return np.exp(-squared / (2 * sigma * sigma))


def _rbf_cka(x, y, counts, *, sigma_fraction: float = RBF_SIGMA_FRACTION, debiased: bool = False) -> float:
    gram_x, gram_y = _rbf_gram(x, counts, sigma_fraction), _rbf_gram(y, counts, sigma_fraction)
    if gram_x is None or gram_y is None:
        return float("nan")
    if not debiased:
        return _biased_cka_gram(gram_x, gram_y, counts)
    np.fill_diagonal(gram_x, 0.0)
    np.fill_diagonal(gram_y, 0.0)
    return _unbiased_cka_gram(gram_x, gram_y, counts)


def rbf_cka(x, y, *, sigma_fraction: float = RBF_SIGMA_FRACTION, debiased: bool = False) -> float:
    """CKA with Gaussian (RBF) kernels (Kornblith et al., ICML 2019, section 3).

    K_ab = exp(-||x_a - x_b||^2 / (2 sigma_x^2)), sigma_x = sigma_fraction x the median of the
    distances ||x_a - x_b|| over pairs a < b (Kornblith et al. use 0.8); likewise L on y with its
    own sigma_y. CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with the biased HSIC
    tr(K H L H) / (n-1)^2, or with `debiased` the unbiased HSIC of Song et al. (2012) (see
    `linear_cka`; it needs 4 points). The bandwidth follows the scale of the points, so the value
    is invariant to orthogonal maps, translations and isotropic scaling. Forms n x n matrices.

    NaN when x or y has no spread, or when more than half the pairs are identical points
    (a median distance of 0).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> round(rbf_cka(x, 2 * x + 1), 12)
    1.0
    """
    x, y = _checked_pair(x, y, min_points=4 if debiased else 2)
    sigma_fraction = check_positive(sigma_fraction, name="sigma_fraction")
    return _rbf_cka(x, y, np.ones(len(x)), sigma_fraction=sigma_fraction, debiased=debiased)


# --- shape metrics ------------------------------------------------------------------------


def _narrow(x: np.ndarray) -> np.ndarray:
    """x itself when it has no more columns than rows, else the n x n factor R^T of x^T = Q R:
    x = R^T Q^T with orthonormal Q, so R^T has x's Gram matrix and the same shape metrics."""
    if x.shape[1] <= x.shape[0]:
        return x
    return np.linalg.qr(x.T, mode="r").T


def _shape_alignment(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> float:
    """||x^T y||_* in [0, 1] after centring and scaling each to unit Frobenius norm (NaN
    when either has no spread)."""
    xs, ys = _weighted_rows(x, counts), _weighted_rows(y, counts)
    if xs is None or ys is None:
        return float("nan")
    nuclear = np.linalg.svd(_narrow(xs).T @ _narrow(ys), compute_uv=False).sum()
    return float(min(nuclear / (np.linalg.norm(xs) * np.linalg.norm(ys)), 1.0))


def _procrustes_distance(x, y, counts) -> float:
    return float(np.sqrt(max(2.0 - 2.0 * _shape_alignment(x, y, counts), 0.0)))


def _angular_shape_distance(x, y, counts) -> float:
    return float(np.arccos(_shape_alignment(x, y, counts)))


def procrustes_distance(x, y) -> float:
    """Orthogonal Procrustes distance between the shapes of x and y (Williams, Kunz, Kornblith &
    Linderman, "Generalized shape metrics on neural representations", NeurIPS 2021).

    With x and y centred and scaled to unit Frobenius norm,
        d = min over orthogonal Q of ||x - y Q||_F = sqrt(2 - 2 ||x^T y||_*),
    ||.||_* the nuclear norm (sum of singular values). When p != q the narrower one is padded
    with zero columns to the wider width first; that leaves x^T y's singular values as they are,
    so no padding is materialised. d is a metric on shapes (symmetric, triangle inequality, 0
    exactly when y is a rotation, reflection, rescaling and translation of x), in [0, sqrt 2].
    Near 0 its absolute accuracy is about 1e-8 (the square root of the rounding of
    1 - ||x^T y||_*). NaN when x or y has no spread.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(100, 5))
    >>> rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    >>> bool(procrustes_distance(x, 2 * x @ rotation + 1) < 1e-7)
    True
    """
    x, y = _checked_pair(x, y)
    return _procrustes_distance(x, y, np.ones(len(x)))


def angular_shape_distance(x, y) -> float:
    """The angular shape metric of Williams et al. (NeurIPS 2021): with x, y centred and scaled
    to unit Frobenius norm, theta = min over orthogonal Q of arccos <x, y Q> = arccos ||x^T y||_*,
    in [0, pi/2]; the same optimal rotation as `procrustes_distance` (d = 2 sin(theta / 2)),
    the same zero padding when p != q. A metric on shapes; NaN when x or y has no spread.

    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> round(angular_shape_distance(x, x[:, :1]) / np.pi, 12)  # arccos(1/sqrt 2) = pi / 4
    0.25
    """
    x, y = _checked_pair(x, y)
    return _angular_shape_distance(x, y, np.ones(len(x)))


# --- SVCCA --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SVCCA:
    """SVCCA of two representations: the canonical correlations (largest first) between the top
    `kept_x` singular directions of x and the top `kept_y` of y, and their mean."""

    mean_correlation: float
    correlations: np.ndarray
    kept_x: int
    kept_y: int


def _top_directions(x: np.ndarray, counts: np.ndarray, variance: float) -> np.ndarray | None:
    """Orthonormal n-vectors spanning the fewest top singular directions of the centred x whose
    variance reaches `variance` of the total (None when x has no spread)."""
    rows = _weighted_rows(x, counts)
    if rows is None:
        return None
    left, singular, _ = np.linalg.svd(rows, full_matrices=False)
    share = np.cumsum(singular**2) / np.sum(singular**2)
    rank = int(np.count_nonzero(singular > max(rows.shape) * _EPS * singular[0]))
    return left[:, : min(int(np.searchsorted(share, variance)) + 1, rank)]


def _svcca(x, y, counts, *, variance: float = SVCCA_VARIANCE) -> SVCCA:
    ux, uy = _top_directions(x, counts, variance), _top_directions(y, counts, variance)
    if ux is None or uy is None:
        return SVCCA(float("nan"), np.array([]), 0, 0)
    correlations = np.clip(np.linalg.svd(ux.T @ uy, compute_uv=False), 0.0, 1.0)
    return SVCCA(float(correlations.mean()), correlations, ux.shape[1], uy.shape[1])


def svcca(x, y, *, variance: float = SVCCA_VARIANCE) -> SVCCA:
    """Singular vector canonical correlation analysis (Raghu, Gilmer, Yosinski & Sohl-Dickstein,
    NeurIPS 2017).

    1. SVD: centre x and keep its fewest top singular directions whose variance (squared
       singular values) reaches `variance` of the total (0.99, as in the paper): x' = U_k S_k;
       the same for y.
    2. CCA of x' and y': the canonical correlations rho_1 >= ... >= rho_m, m = min(k_x, k_y),
       are the singular values of U_kx^T U_ky (the cosines of the principal angles between the
       two kept subspaces of R^n).
    Reported: the mean of the rho_i and the rho_i. Invariant to any invertible linear map of a
    representation that keeps its kept subspace (then 1), to translation and scaling. With
    k_x + k_y near n every correlation tends to 1 whatever the data: keep n well above both.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 3))
    >>> result = svcca(x, x @ np.array([[2.0, 1, 0], [0, 1, 0], [0, 1, 3]]))
    >>> round(result.mean_correlation, 12), result.kept_x, result.kept_y
    (1.0, 3, 3)

    NaN (and no directions kept) when x or y has no spread.
    """
    x, y = _checked_pair(x, y)
    if not 0 < variance <= 1:
        raise InputError(f"variance must be in (0, 1], the share of variance SVCCA keeps, got {variance}.")
    return _svcca(x, y, np.ones(len(x)), variance=variance)


# --- RSA ----------------------------------------------------------------------------------

RSA_DISSIMILARITIES = ("correlation", "euclidean")
RSA_CORRELATIONS = ("spearman", "pearson")


def _dissimilarities(x: np.ndarray, dissimilarity: str) -> np.ndarray | None:
    """The n x n representational dissimilarity matrix (None when a row is constant across its
    features, for which the correlation distance is undefined)."""
    if dissimilarity == "correlation":
        rows = x - x.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(rows, axis=1)
        if np.any(norms <= x.shape[1] * _EPS * np.abs(x).max(axis=1)):
            return None
        rows = rows / norms[:, None]
        return 1.0 - rows @ rows.T
    centred = x - x.mean(axis=0)
    gram = centred @ centred.T
    norms = np.diag(gram)
    return np.sqrt(np.maximum(norms[:, None] + norms[None, :] - 2 * gram, 0.0))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def _rsa(x, y, counts, *, dissimilarity: str = "correlation", correlation: str = "spearman") -> float:
    dx, dy = _dissimilarities(x, dissimilarity), _dissimilarities(y, dissimilarity)
    if dx is None or dy is None:
        return float("nan")
    positions = np.repeat(np.arange(len(x)), counts.astype(np.int64))
    first, second = np.triu_indices(len(positions), 1)
    a, b = positions[first], positions[second]
    distinct = a != b  # a pair of copies of one point is a diagonal entry
    ux, uy = dx[a[distinct], b[distinct]], dy[a[distinct], b[distinct]]
    if correlation == "spearman":
        ux, uy = rankdata(ux), rankdata(uy)
    return float(np.clip(_pearson(ux, uy), -1.0, 1.0))


def rsa(x, y, *, dissimilarity: str = "correlation", correlation: str = "spearman") -> float:
    """Representational similarity analysis (Kriegeskorte, Mur & Bandettini, Front. Syst.
    Neurosci. 2008): the correlation of the upper triangles (a < b) of the two representational
    dissimilarity matrices (RDMs).

    dissimilarity: "correlation", D_ab = 1 - Pearson(x_a, x_b) across features (the paper's; it
    needs 2 features, and is NaN when a point's features are all equal), or "euclidean",
    D_ab = ||x_a - x_b||. correlation: "spearman" (default: only the order of dissimilarities
    counts) or "pearson" of the n(n-1)/2 pairs. In [-1, 1]; forms n x n matrices.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 4))
    >>> round(rsa(x, 5 * x + 2), 12)
    1.0
    """
    if dissimilarity not in RSA_DISSIMILARITIES:
        raise InputError(f"unknown dissimilarity {dissimilarity!r}: use {' or '.join(RSA_DISSIMILARITIES)}.")
    if correlation not in RSA_CORRELATIONS:
        raise InputError(f"unknown correlation {correlation!r}: use {' or '.join(RSA_CORRELATIONS)}.")
    x, y = _checked_pair(x, y, min_points=3)
    if dissimilarity == "correlation" and min(x.shape[1], y.shape[1]) < 2:
        raise InputError(
            "the correlation distance needs at least 2 features per point; use dissimilarity='euclidean'."
        )
    return _rsa(x, y, np.ones(len(x)), dissimilarity=dissimilarity, correlation=correlation)


# --- methods by name, resampling ----------------------------------------------------------


@dataclass(frozen=True)
class SimilarityMethod:
    """One similarity by name: `function` (the public estimator with this method's settings),
    whether a larger value means more similar, the fewest points it needs, its keyword options,
    and `statistic`, the same estimator on checked float64 arrays with resample counts (see the
    module docstring)."""

    name: str
    function: Callable[..., object]
    larger_is_more_similar: bool
    min_points: int
    options: tuple[str, ...]
    statistic: Callable[..., float]


def _svcca_mean(x, y, counts, **options) -> float:
    return _svcca(x, y, counts, **options).mean_correlation


def _methods() -> dict[str, SimilarityMethod]:
    debiased = {"debiased": True}
    rsa_options = ("dissimilarity", "correlation")
    table = (  # name, public, private, fixed settings, larger is more similar, min points, options
        ("linear_cka", linear_cka, _linear_cka, {}, True, 2, ()),
        ("linear_cka_debiased", linear_cka, _linear_cka, debiased, True, 4, ()),
        ("rbf_cka", rbf_cka, _rbf_cka, {}, True, 2, ("sigma_fraction",)),
        ("rbf_cka_debiased", rbf_cka, _rbf_cka, debiased, True, 4, ("sigma_fraction",)),
        ("procrustes", procrustes_distance, _procrustes_distance, {}, False, 2, ()),
        ("angular_shape", angular_shape_distance, _angular_shape_distance, {}, False, 2, ()),
        ("svcca", svcca, _svcca_mean, {}, True, 2, ("variance",)),
        ("rsa", rsa, _rsa, {}, True, 3, rsa_options),
    )
    return {
        name: SimilarityMethod(
            name, partial(public, **fixed), larger, least, options, partial(private, **fixed)
        )
        for name, public, private, fixed, larger, least, options in table
    }


SIMILARITY_METHODS: dict[str, SimilarityMethod] = _methods()
"""Every similarity by name, as `representation_similarity`, `bootstrap_interval` and
`permutation_test` take them; the distances (procrustes, angular_shape) are the two with
`larger_is_more_similar` False."""


def similarity_method(name: str, options=None) -> SimilarityMethod:
    """The method called `name`, checking that `options` are among its keyword options."""
    if name not in SIMILARITY_METHODS:
        raise InputError(f"unknown similarity {name!r}; choose from {', '.join(SIMILARITY_METHODS)}.")
    method = SIMILARITY_METHODS[name]
    unknown = sorted(set(options or ()) - set(method.options))
    if unknown:
        takes = ", ".join(method.options) if method.options else "no options"
        raise InputError(f"{name} has no option {unknown[0]!r}; it takes {takes}.")
    return method


def _checked_for(method: SimilarityMethod, x, y, options) -> tuple[np.ndarray, np.ndarray, float]:
    """Inputs checked by the public estimator itself (so its option checks apply too), and its
    value on them."""
    value = method.function(x, y, **options)
    value = value.mean_correlation if isinstance(value, SVCCA) else value
    return *_checked_pair(x, y, min_points=method.min_points), value


def representation_similarity(x, y, method: str = "linear_cka", **options) -> float:
    """The similarity called `method` (a key of `SIMILARITY_METHODS`) of x and y, with that
    estimator's keyword options; SVCCA gives its mean correlation.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(60, 3))
    >>> round(representation_similarity(x, -x, "svcca"), 12)
    1.0
    """
    return float(_checked_for(similarity_method(method, options), x, y, options)[2])


def resample_counts(n_points: int, n_bootstrap: int, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of n points as counts, shape (n_bootstrap, n_points): row r says how
    often each point is drawn in resample r (a multinomial draw of n from n equally likely
    points, `np.random.default_rng(seed).multinomial`). The same (n_points, n_bootstrap, seed)
    give the same resamples, so intervals of several pairs of layers share them.

    >>> resample_counts(5, 2, seed=0).sum(axis=1).tolist()
    [5, 5]
    """
    n_points = check_positive(n_points, name="n_points", integer=True)
    n_bootstrap = check_positive(n_bootstrap, name="n_bootstrap", integer=True)
    rng = np.random.default_rng(check_seed(seed, name="seed"))
    return rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_bootstrap)


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval: [low, high] holds `level` of the resampled values.

    `draws` holds the statistic of every resample, NaN where it is undefined on that resample
    (then left out of the interval); `value` is the estimate on all the points.
    """

    value: float
    low: float
    high: float
    level: float
    draws: np.ndarray

    @property
    def n_used(self) -> int:
        """The number of resamples with a defined value."""
        return int(np.isfinite(self.draws).sum())


def bootstrap_interval(
    x, y, method: str = "linear_cka", *, n_bootstrap: int = 200, level: float = 0.95, seed: int = 0, **options
) -> BootstrapInterval:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of the similarity `method`:
    the n points (rows of x and y together) are resampled with replacement `n_bootstrap` times
    (`resample_counts`), the statistic recomputed on each, and [low, high] are the
    (1 - level)/2 and (1 + level)/2 quantiles of those values. Repeated points are handled as
    the module docstring says (a point is never paired with its own copy in the debiased CKA
    or RSA).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(80, 3))
    >>> found = bootstrap_interval(x, x + rng.normal(size=(80, 3)), n_bootstrap=100)
    >>> bool(found.low < found.value < found.high), found.n_used
    (True, 100)
    """
    spec = similarity_method(method, options)
    if not 0 < level < 1:
        raise InputError(f"level must be between 0 and 1 (e.g. 0.95), got {level}.")
    x, y, value = _checked_for(spec, x, y, options)
    draws = np.full(n_bootstrap, np.nan)
    for index, counts in enumerate(resample_counts(len(x), n_bootstrap, seed)):
        drawn = counts > 0
        if drawn.sum() >= spec.min_points:
            draws[index] = spec.statistic(x[drawn], y[drawn], counts[drawn].astype(np.float64), **options)
    finite = draws[np.isfinite(draws)]
    low, high = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)]) if len(finite) else (np.nan,) * 2
    return BootstrapInterval(float(value), float(low), float(high), float(level), draws)


@dataclass(frozen=True)
class PermutationTest:
    """The similarity of x and y (`observed`), the same statistic with y's rows permuted
    (`null`, one value per permutation) and the one-sided p-value of "no more similar than
    unrelated points": (1 + #{null at least as similar}) / (1 + #null) (Phipson & Smyth 2010)."""

    observed: float
    null: np.ndarray
    p_value: float


def permutation_test(
    x, y, method: str = "linear_cka", *, n_permutations: int = 200, seed: int = 0, **options
) -> PermutationTest:
    """A matched null for the similarity `method`: the statistic after `n_permutations` seeded
    permutations of y's rows (which breaks the pairing of points and keeps each representation
    as it is), and the permutation p-value. "At least as similar" is >= for similarities and <=
    for the distances (procrustes, angular_shape), with a relative slack of 1e-12 so that a
    permutation reproducing the observed value up to rounding counts. Undefined (NaN) null
    values are left out.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3))
    >>> permutation_test(x, x + 0.1 * rng.normal(size=(40, 3)), n_permutations=99).p_value
    0.01
    """
    spec = similarity_method(method, options)
    n_permutations = check_positive(n_permutations, name="n_permutations", integer=True)
    x, y, observed = _checked_for(spec, x, y, options)
    rng = np.random.default_rng(check_seed(seed, name="seed"))
    ones = np.ones(len(x))
    permutations = (rng.permutation(len(y)) for _ in range(n_permutations))
    null = np.array([spec.statistic(x, y[order], ones, **options) for order in permutations])
    defined = null[np.isfinite(null)]
    slack = 1e-12 * abs(observed)
    as_similar = defined >= observed - slack if spec.larger_is_more_similar else defined <= observed + slack
    p_value = (1 + np.count_nonzero(as_similar)) / (1 + len(defined)) if np.isfinite(observed) else np.nan
    return PermutationTest(float(observed), null, float(p_value))


__all__ = [
    "RBF_SIGMA_FRACTION",
    "SIMILARITY_METHODS",
    "SVCCA",
    "SVCCA_VARIANCE",
    "BootstrapInterval",
    "PermutationTest",
    "SimilarityMethod",
    "angular_shape_distance",
    "bootstrap_interval",
    "linear_cka",
    "permutation_test",
    "procrustes_distance",
    "rbf_cka",
    "representation_similarity",
    "resample_counts",
    "rsa",
    "similarity_method",
    "svcca",
]
