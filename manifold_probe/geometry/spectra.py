"""Class/cross-class spectra (Papyan, "Traces of class/cross-class structure pervade deep
learning spectra", JMLR 2020, arXiv 2008.11865).

Two measurements:

1. Covariance spectra of any layer (streamed: built on `CollapseStatistics`). With class
   weights pi_c = n_c / N, the global sample mean mu = sum_c pi_c mu_c and
       Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T      (within-class, pooled)
       Sigma_B = sum_c pi_c (mu_c - mu)(mu_c - mu)^T                 (between-class, rank <= C-1)
   the feature covariance splits exactly, Sigma_T = Sigma_W + Sigma_B, for any class sizes
   (for balanced classes Sigma_B is Papyan's (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T).
   Outliers: the eigenvalues of Sigma_T above the bulk edge lambda_1(Sigma_W). Weyl's inequality
   lambda_{i+C-1}(Sigma_W + Sigma_B) <= lambda_i(Sigma_W) bounds their number by C-1, the
   between-class directions. Metrics:
   - n_outliers: #{k : lambda_k(Sigma_T) > lambda_1(Sigma_W) + margin} (0..C-1). The bulk edge
     lambda_1(Sigma_W) is itself a sample's largest eigenvalue: with no class structure at all,
     lambda_1(Sigma_T) >= lambda_1(Sigma_W) (Sigma_B is PSD) and the two differ by a Tracy-Widom
     fluctuation, so a bare comparison counts one outlier in pure noise. The margin is the width
     of that fluctuation at level 1 % on each side (Johnstone 2001, "On the distribution of the
     largest eigenvalue in principal components analysis", Ann. Stat.): for a white Wishart
     matrix with n = N - C degrees of freedom and p features, (n lambda_1 - mu)/s -> TW1 with
     mu = (sqrt(n - 1) + sqrt(p))^2, s = (sqrt(n - 1) + sqrt(p)) (1/sqrt(n - 1) + 1/sqrt(p))^(1/3);
     margin = (TW1_0.99 - TW1_0.01) (s / mu) lambda_1(Sigma_W) = 5.92 (s / mu) lambda_1(Sigma_W)
     (plus rounding, 16 p eps lambda_1(Sigma_T)). Pure noise then gives 0 outliers (measured:
     0 in 200 of 200 seeds at N = 1000, p = 64, C = 10) and a class-mean direction counts once
     it stands clear of the bulk's own fluctuation. `bulk_edge` and `outlier_margin` are
     reported beside the count. (For a non-white bulk the TW scale s / mu is an approximation.)
   - outlier_variance_share: their sum / Tr Sigma_T;
   - between_variance_share: Tr Sigma_B / Tr Sigma_T;
   - outlier_bulk_ratio: lambda_r(Sigma_B) / lambda_1(Sigma_W), r = min(C-1, p): how far the
     weakest class-mean direction stands above the largest within-class direction;
   - class_means_abs_cos: the mean over pairs c < c' of |cos(mu_c - mu_G, mu_c' - mu_G)|, mu_G the
     mean of the class means (as in collapse.py): 1/(C-1) for a simplex ETF, near 0 for
     orthogonal class-distinctive directions.
   Memory: p x p float64 (the eigendecompositions are O(p^3)).

2. The Gauss-Newton / Fisher block of the last layer's weights (whole arrays, e.g. a seeded
   subset of a few thousand samples; every matrix-vector product costs O(N C p)). With
   h~_i = [h_i, 1] when `append_one` (the block of the weights and the bias together; h~_i = h_i
   otherwise), p_i = softmax(W h_i + b), q = len(h~_i):
       G = (1/N) sum_i (diag(p_i) - p_i p_i^T) (x) h~_i h~_i^T          (Cq x Cq),
   acting on the classifier as a C x q matrix flattened row by row. It is the Hessian of the
   mean cross-entropy in (W, b) on fixed features. Since diag(p) - p p^T =
   sum_c' p_c' (e_c' - p)(e_c' - p)^T,
       G = (1/N) sum_i sum_c' v_{i,c'} v_{i,c'}^T,   v_{i,c'} = sqrt(p_{i,c'}) (e_c' - p_i) (x) h~_i
   (the gradient of example i as if it were labelled c'). Class/cross-class means
   D_{c,c'} = Ave_{i in c} v_{i,c'} and d_c = Ave_{c' != c} D_{c,c'} give the exact split
       G = G0 + G1 + G2 + G_within,
       G0 = sum_c pi_c D_{c,c} D_{c,c}^T                                (same class: C terms)
       G1 = sum_c pi_c (C-1) d_c d_c^T                                  (class means: C outliers)
       G2 = sum_c pi_c sum_{c' != c} (D_{c,c'} - d_c)(D_{c,c'} - d_c)^T  (cross-class: C(C-1) terms,
                                                                         the mini-bulk)
       G_within = (1/N) sum_i sum_c' (v_{i,c'} - D_{y_i,c'})(v_{i,c'} - D_{y_i,c'})^T  (the bulk)
   (within each class the deviations from a mean sum to zero, so the cross terms vanish). With
   pi_c = n_c / N the split is exact for any class sizes; for balanced classes pi_c = 1/C, which
   is Papyan's averaging over classes. (d_c averages over c' != c only, so that G0 and G1 are
   separate parts; averaging over all c' would fold the c' = c terms into G1 and G2 and leave
   no G0.)
   Eigenvalues: G0 and G1 from their C x C Gram matrices, G2 from its C(C-1) x C(C-1) Gram
   matrix (its vectors take C^3 q numbers; above `gram_limit` numbers its top `n_top`
   eigenvalues come from Lanczos instead); G: top `n_top`, G_within: top min(n_top, C), by
   Lanczos on matrix-free products (dense only when Cq is small). The (Cq x Cq) matrix is
   never formed for large Cq.
   Precision: p_i is often nearly one-hot late in training; 1 - p_ik is then taken as the sum
   of the other probabilities, and the products are arranged so that nothing cancels, which
   keeps G accurate even when 1 - max p_i is below float64's epsilon. Metrics:
   - fisher_n_outliers: eigenvalues of G above lambda_1(G_within) (by more than rounding); at
     most C^2 (Weyl: G - G_within has rank <= C^2), exact when n_top >= C^2, else a lower bound;
   - fisher_outlier_bulk_ratio: lambda_C(G1) / lambda_1(G_within), the weakest class outlier over
     the bulk edge (Papyan relates the outlier-to-bulk ratio to misclassification);
   - fisher_{same_class,class_means,cross_class,within_class}_share: Tr(part) / Tr(G).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from ..errors import InputError
from ..validation import as_class_indices, as_classifier, as_labels, as_points, check_positive, to_numpy
from .collapse import CollapseStatistics


@dataclass(frozen=True)
class CovarianceSpectra:
    """Eigenvalues (descending) of the feature covariance of one layer and of its parts.

    total: (p,) of Sigma_T; between: (min(C-1, p),) of Sigma_B; within: (p,) of Sigma_W.
    """

    total: np.ndarray
    between: np.ndarray
    within: np.ndarray
    metrics: dict[str, float]


def covariance_spectra_from_statistics(stats: CollapseStatistics) -> CovarianceSpectra:
    """Covariance spectra from the statistics of a (streamed) first pass."""
    counts = stats.class_counts
    if np.any(counts == 0):
        raise InputError(
            f"class {np.flatnonzero(counts == 0)[0]} has no samples; give labels 0..C-1 with "
            "every class present."
        )
    n_classes = stats.n_classes
    means = stats.class_means
    sigma_w = stats.within_class_covariance
    n_features = sigma_w.shape[0]
    weights = counts / counts.sum()
    offsets = np.sqrt(weights)[:, None] * (means - weights @ means)  # rows sqrt(pi_c)(mu_c - mu)
    rank = min(n_classes - 1, n_features)

    between = np.linalg.svd(offsets, compute_uv=False)[:rank] ** 2
    within = np.linalg.eigvalsh(sigma_w)[::-1]
    total = np.linalg.eigvalsh(sigma_w + offsets.T @ offsets)[::-1]
    # class means spanning fewer than C - 1 directions (a layer narrower than C - 1, e.g. logits
    # behind an 8-wide layer) leave between-class eigenvalues at rounding level: they are zero
    between = np.where(between > rounding_level(total[0], n_features), between, 0.0)

    bulk_edge = within[0]
    margin = tracy_widom_margin(int(counts.sum()) - n_classes, n_features) * bulk_edge
    margin += rounding_level(total[0], n_features)
    outliers = total[total > bulk_edge + margin]
    trace_total = float(np.sum(total))
    centred_means = means - means.mean(axis=0)
    norms = np.linalg.norm(centred_means, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = centred_means @ centred_means.T / np.outer(norms, norms)
        metrics = {
            "n_outliers": float(len(outliers)),
            "outlier_variance_share": float(np.sum(outliers)) / trace_total,
            "between_variance_share": float(np.sum(offsets**2)) / trace_total,
            "outlier_bulk_ratio": float(between[-1] / bulk_edge),
            "class_means_abs_cos": float(np.mean(np.abs(cosines[np.triu_indices(n_classes, 1)]))),
            "bulk_edge": float(bulk_edge),
            "outlier_margin": float(margin),
        }
    return CovarianceSpectra(total=total, between=between, within=within, metrics=metrics)


def covariance_spectra(features, labels, *, batch_size: int = 8192) -> CovarianceSpectra:
    """Covariance spectra of whole arrays (features (N, p), labels of any kind, at least 2
    classes); processed in slices of `batch_size` rows as a stream would be."""
    points = as_points(features, name="features", min_points=4)
    batch_size = check_positive(batch_size, name="batch_size", integer=True)
    _, y = np.unique(as_labels(labels, len(points)), return_inverse=True)
    stats = CollapseStatistics(int(y.max()) + 1)
    for start in range(0, len(points), batch_size):
        stats.update(points[start : start + batch_size], y[start : start + batch_size])
    return covariance_spectra_from_statistics(stats)


FISHER_PARTS = ("total", "same_class", "class_means", "cross_class", "within_class")


class FisherBlock:
    """The last layer's Gauss-Newton block G and its exact parts as matrix-free operators.

    Parts (module docstring): "total" G, "same_class" G0, "class_means" G1, "cross_class" G2,
    "within_class" G_within. A vector is a C x q matrix (classifier-shaped) flattened row by
    row. Every product costs O(N C q) and never forms a (Cq x Cq) matrix.
    """

    def __init__(self, features, labels, classifier, bias=None, *, append_one: bool = True):
        points = as_points(to_numpy(features), name="features", min_points=2).astype(np.float64)
        n_points, n_features = points.shape
        weights = as_points(to_numpy(classifier), name="classifier", min_points=2)
        n_classes = weights.shape[0]
        weights, offsets = as_classifier(weights, bias, n_classes=n_classes, n_features=n_features)
        y = as_class_indices(labels, n_points, n_classes)
        counts = np.bincount(y, minlength=n_classes)
        if np.any(counts == 0):
            raise InputError(
                f"class {np.flatnonzero(counts == 0)[0]} has no samples; the Fisher split needs "
                "every class of the classifier in the data."
            )
        logits = points @ weights.T + offsets
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=1, keepdims=True)

        self.n_classes = n_classes
        self.labels = y
        self.class_counts = counts
        self.features = np.hstack([points, np.ones((n_points, 1))]) if append_one else points
        self.probabilities = probabilities
        self._sqrt_p = np.sqrt(probabilities)
        # 1 - p_ik without cancellation: for the most probable class, the sum of the others
        top_mask = np.zeros_like(probabilities, dtype=bool)
        top_mask[np.arange(n_points), np.argmax(probabilities, axis=1)] = True
        self._top_mask = top_mask
        self._complement = 1.0 - probabilities
        self._complement[top_mask] = np.where(top_mask, 0.0, probabilities).sum(axis=1)
        self._own = np.zeros((n_points, n_classes), dtype=bool)  # [c' == y_i]
        self._own[np.arange(n_points), y] = True

    @property
    def shape(self) -> tuple[int, int]:
        """(C, q): the shape of the classifier matrix the operators act on."""
        return self.n_classes, self.features.shape[1]

    def matvec(self, part: str, vector: np.ndarray) -> np.ndarray:
        """part @ vector, for a flattened C x q vector."""
        x = np.asarray(vector, dtype=np.float64).reshape(self.shape)
        return self._combine(self._coefficients(part, self._measure(x))).ravel()

    def operator(self, part: str) -> LinearOperator:
        """The part as a symmetric scipy LinearOperator of size Cq x Cq."""
        if part not in FISHER_PARTS:
            raise ValueError(f"unknown part {part!r}; one of {FISHER_PARTS}")
        size = self.n_classes * self.features.shape[1]
        return LinearOperator(
            (size, size),
            matvec=lambda v: self.matvec(part, v),
            rmatvec=lambda v: self.matvec(part, v),
            dtype=np.float64,
        )

    def class_cross_class_means(self, c: int) -> np.ndarray:
        """D_{c,c'} for every c': (C, C, q), D_{c,c'} = Ave_{i in c} v_{i,c'} as a C x q matrix."""
        rows = self.labels == c
        sqrt_p, p, h = self._sqrt_p[rows], self.probabilities[rows], self.features[rows]
        n_c, n_classes = p.shape
        # u_{i,c',k} = sqrt(p_ic') (delta_c'k - p_ik), with 1 - p_ik taken without cancellation
        u = -sqrt_p[:, :, None] * p[:, None, :]
        diagonal = np.arange(n_classes)
        u[:, diagonal, diagonal] = sqrt_p * self._complement[rows]
        return (u.reshape(n_c, n_classes * n_classes).T @ h).reshape(n_classes, n_classes, -1) / n_c

    def trace(self) -> float:
        """Tr G = (1/N) sum_i sum_k p_ik (1 - p_ik) ||h~_i||^2."""
        per_sample = np.sum(self.probabilities * self._complement, axis=1)
        return float(np.mean(per_sample * np.sum(self.features**2, axis=1)))

    def _measure(self, x: np.ndarray) -> np.ndarray:
        """s_{i,c'} = <v_{i,c'}, x> = sqrt(p_ic') (z_ic' - p_i . z_i), z_i = x h~_i.

        (e_c' - p_i) . z_i does not change when z_i is shifted by a constant, so z_i is taken
        relative to its entry of the most probable class: then p_i . z_i has no dominant term
        and nothing cancels when p_i is nearly one-hot."""
        z = self.features @ x.T
        z -= z[self._top_mask][:, None]
        return self._sqrt_p * (z - np.sum(self.probabilities * z, axis=1, keepdims=True))

    def _combine(self, coefficients: np.ndarray) -> np.ndarray:
        """(1/N) sum_{i,c'} a_{i,c'} v_{i,c'} as a C x q matrix.

        Per sample the C-vector is (I - p_i 1^T)(a_i * sqrt(p_i)); its entries sum to zero, so
        the entry of the most probable class (where 1 - p cancels) is minus the sum of the rest."""
        scaled = coefficients * self._sqrt_p
        rows = scaled - self.probabilities * scaled.sum(axis=1, keepdims=True)
        rows[self._top_mask] = 0.0
        rows[self._top_mask] = -rows.sum(axis=1)
        # as (features^T rows)^T: the (C x N)(N x q) form ran ~10x slower with OpenBLAS here
        return (self.features.T @ rows).T / len(self.features)

    def _coefficients(self, part: str, s: np.ndarray) -> np.ndarray:
        """The a_{i,c'} with part @ x = (1/N) sum a_{i,c'} v_{i,c'}, from s = <v, x>."""
        if part == "total":
            return s
        n_classes = self.n_classes
        onehot = np.zeros((n_classes, len(s)))
        onehot[self.labels, np.arange(len(s))] = 1.0
        class_avg = (onehot @ s) / self.class_counts[:, None]  # t_{c,c'} = <D_{c,c'}, x>
        own_avg = np.diag(class_avg)  # t_{c,c}
        other_avg = (class_avg.sum(axis=1) - own_avg) / (n_classes - 1)  # m_c = <d_c, x>
        y = self.labels
        if part == "within_class":
            return s - class_avg[y]
        if part == "same_class":
            return np.where(self._own, own_avg[y][:, None], 0.0)
        if part == "class_means":
            return np.where(self._own, 0.0, other_avg[y][:, None])
        if part == "cross_class":
            return np.where(self._own, 0.0, class_avg[y] - other_avg[y][:, None])
        raise ValueError(f"unknown part {part!r}; one of {FISHER_PARTS}")


@dataclass(frozen=True)
class FisherSpectra:
    """Eigenvalues (descending) of the last layer's Gauss-Newton block and of its parts.

    total: the top n_top; within_class: the top min(n_top, C); same_class (G0), class_means
    (G1): all C; cross_class (G2): all C(C-1), or the top n_top when its Gram matrix was over
    the limit.
    traces: part -> trace. metrics: see the module docstring.
    """

    total: np.ndarray
    same_class: np.ndarray
    class_means: np.ndarray
    cross_class: np.ndarray
    within_class: np.ndarray
    traces: dict[str, float]
    metrics: dict[str, float]


def fisher_spectra(
    features,
    labels,
    classifier,
    bias=None,
    *,
    append_one: bool = True,
    n_top: int | None = None,
    gram_limit: int = 2**25,
    seed: int = 0,
) -> FisherSpectra:
    """Spectra of the Gauss-Newton block of the classifier (C x p) and its exact split.

    features (N, p) feed the classifier (whole arrays: pass a seeded subset for large N);
    labels are class indices 0..C-1, every class present; bias enters the logits (whether G
    covers the bias too is `append_one`).
    n_top: eigenvalues computed for G (default min(C(C+1), 256, Cq - 1)); G_within gets the top
        min(n_top, C) (its top one is the bulk edge: the bulk itself is a continuum, slow for
        Lanczos). Cost: a few hundred products of O(N C q) each; measured on two busy cores
        with C = 10, p = 512: 8 s for N = 2000, 37 s for N = 5000.
    gram_limit: most numbers held for the cross-class vectors (C^3 q) before switching to Lanczos.
    seed: start vector of the Lanczos iterations.
    """
    block = FisherBlock(features, labels, classifier, bias, append_one=append_one)
    n_classes, width = block.shape
    size = n_classes * width
    if n_top is None:
        n_top = min(n_classes * (n_classes + 1), 256, size - 1)
    n_top = min(check_positive(n_top, name="n_top", integer=True), size)
    rng = np.random.default_rng(seed)
    weights = block.class_counts / block.class_counts.sum()

    store_cross = n_classes**3 * width <= gram_limit
    same, means, cross, trace_cross = [], [], [], 0.0
    for c in range(n_classes):
        class_means = block.class_cross_class_means(c).reshape(n_classes, size)
        others = np.delete(class_means, c, axis=0)
        d_c = others.mean(axis=0)
        same.append(np.sqrt(weights[c]) * class_means[c])
        means.append(np.sqrt(weights[c] * (n_classes - 1)) * d_c)
        trace_cross += weights[c] * float(np.sum((others - d_c) ** 2))
        if store_cross:
            cross.append(np.sqrt(weights[c]) * (others - d_c))

    same_eig = _gram_eigenvalues(np.array(same))
    means_eig = _gram_eigenvalues(np.array(means))
    if store_cross:
        cross_eig = _gram_eigenvalues(np.concatenate(cross))
    else:
        cross_eig = _top_eigenvalues(block.operator("cross_class"), n_top, rng)
    total_eig = _top_eigenvalues(block.operator("total"), n_top, rng)
    within_eig = _top_eigenvalues(block.operator("within_class"), min(n_top, n_classes), rng)

    # the traces of the mean parts are the squared norms of their vectors
    trace_total = block.trace()
    traces = {
        "total": trace_total,
        "same_class": float(np.sum(np.array(same) ** 2)),
        "class_means": float(np.sum(np.array(means) ** 2)),
        "cross_class": trace_cross,
    }
    traces["within_class"] = trace_total - sum(traces[part] for part in FISHER_PARTS[1:4])
    bulk_edge = within_eig[0]
    metrics = {
        "fisher_n_outliers": float(
            np.count_nonzero(total_eig > bulk_edge + rounding_level(total_eig[0], size))
        ),
        "fisher_outlier_bulk_ratio": float(means_eig[n_classes - 1] / bulk_edge),
    }
    if trace_total <= 0:  # every softmax saturated (p = 0 or 1 in float64): G = 0, shares 0/0
        warnings.warn(
            "the classifier's Gauss-Newton block is zero (its softmax is saturated on every "
            "point), so the Fisher shares are NaN.",
            stacklevel=2,
        )
    for part in FISHER_PARTS[1:]:
        share = traces[part] / trace_total if trace_total > 0 else float("nan")
        metrics[f"fisher_{part}_share"] = float(share)
    return FisherSpectra(
        total=total_eig,
        same_class=same_eig,
        class_means=means_eig,
        cross_class=cross_eig,
        within_class=within_eig,
        traces=traces,
        metrics=metrics,
    )


# quantiles of the Tracy-Widom law TW1 (Tracy & Widom 1996; tabulated e.g. by Bejan 2005)
TW1_QUANTILES = {0.01: -3.8954, 0.05: -3.1804, 0.95: 0.9793, 0.99: 2.0234}


def tracy_widom_margin(n_samples: int, n_features: int, level: float = 0.01) -> float:
    """Relative width (q_{1-level} - q_level) s / mu of the largest sample-covariance eigenvalue's
    Tracy-Widom fluctuation for n_samples degrees of freedom and n_features variables
    (Johnstone 2001: mu = (sqrt(n - 1) + sqrt(p))^2, s = (sqrt(n - 1) + sqrt(p))
    (1/sqrt(n - 1) + 1/sqrt(p))^(1/3)); level is 0.01 or 0.05.

    >>> round(tracy_widom_margin(990, 64), 4)
    0.0809
    """
    n = max(n_samples - 1, 1)
    root_n, root_p = np.sqrt(n), np.sqrt(n_features)
    mu = (root_n + root_p) ** 2
    s = (root_n + root_p) * (1 / root_n + 1 / root_p) ** (1 / 3)
    return float((TW1_QUANTILES[1 - level] - TW1_QUANTILES[level]) * s / mu)


def rounding_level(largest: float, size: int) -> float:
    """A bound on the rounding error of the eigenvalues of a size x size symmetric matrix whose
    largest eigenvalue is `largest`, 16 size eps largest: an eigenvalue counts as above the bulk
    edge only when it exceeds the edge by more than this, and one below it is numerical zero
    (the pages leave such eigenvalues out).

    >>> bool(rounding_level(1.0, 10) == 160 * np.finfo(np.float64).eps)
    True
    """
    return 16 * size * np.finfo(np.float64).eps * max(largest, 0.0)


def _gram_eigenvalues(vectors: np.ndarray) -> np.ndarray:
    """Eigenvalues of sum_k v_k v_k^T (rows v_k) from the small Gram matrix V V^T, descending."""
    return np.linalg.eigvalsh(vectors @ vectors.T)[::-1]


def _top_eigenvalues(operator: LinearOperator, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k largest eigenvalues of a symmetric operator, descending: Lanczos (ARPACK) when the
    operator is large, else the dense matrix built column by column."""
    size = operator.shape[0]
    if size <= 256 or k >= size // 2:
        dense = operator.matmat(np.eye(size))
        return np.linalg.eigvalsh((dense + dense.T) / 2)[::-1][:k]
    values = eigsh(operator, k=k, which="LA", v0=rng.standard_normal(size), return_eigenvectors=False)
    return np.sort(values)[::-1]
