"""Neural collapse NC1-NC4 (Papyan, Han & Donoho, PNAS 2020), streamed over batches.

Notation: features h (the input of the last Linear, or any layer's activations), labels in
{0..C-1}, class sizes n_c, N = sum n_c, class means mu_c, classifier W (C x p), bias b.

Conventions, chosen so that every metric is defined for unbalanced classes too (for balanced
classes they are exactly Papyan's):
- mu_G is the mean of the class means, (1/C) sum_c mu_c, not the mean of all samples. Then the
  centred means m_c = mu_c - mu_G sum to zero, M = [m_1..m_C] (p x C) has rank <= C-1 whatever
  the class sizes, and a simplex ETF of means scores as an ETF however many samples each class
  has. (With the sample-weighted mean, an ETF with unequal classes would look far from one.)
- Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, averaged over samples: the pooled
  within-class covariance (Papyan's Ave_{i,c}), so a large class weighs more.
- Sigma_B = (1/C) sum_c m_c m_c^T, every class counted once.
- Every class needs at least two samples: a class with one sample has no within-class
  variance to estimate, and counting it as zero would fake collapse (InputError).

Metrics (names as in docs/methods.md#neural-collapse):
- nc1 = Tr(Sigma_W Sigma_B^+) / C, with Sigma_B^+ built from its top r = min(C-1, p)
  eigenpairs in float64 (the thin SVD of M^T: Sigma_B = sum_k s_k^2/C v_k v_k^T, so
  nc1 = sum_k v_k^T Sigma_W v_k / s_k^2). If one of those r eigenvalues is zero to rounding
  (the class means span fewer dimensions), nc1 is +inf. A float32 pseudo-inverse with a tiny
  cutoff instead inverts rounding noise and returns garbage, even negative values.
- nc1_trace_ratio = Tr Sigma_W / Tr Sigma_B.
- cdnv: class-distance normalized variance (Galanti, Gyorgy & Hutter, "On the role of neural
  collapse in transfer learning", ICLR 2022): the mean over unordered class pairs c < c' of
  (var_c + var_c') / (2 ||mu_c - mu_c'||^2), with var_c = (1/n_c) sum_{i in c} ||h_i - mu_c||^2
  the plug-in total variance of class c.
- nc2_equinorm_means = std_c ||m_c|| / mean_c ||m_c||; nc2_equiangular_means = std over pairs
  c < c' of cos(m_c, m_c'); nc2_max_angle_means = mean over pairs of |cos(m_c, m_c') + 1/(C-1)|.
  Standard deviations are sample standard deviations (ddof = 1, as the torch.std of the widely
  reused NC analysis code); with a single pair (C = 2) the equiangular std is 0.
- etf_distance = || G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F with G = M^T M (0 for a simplex
  ETF of any scale and rotation, at most 2).
- With the classifier (rows w_c, not centred, as in the paper): nc2_equinorm_weights,
  nc2_equiangular_weights, nc2_max_angle_weights as above on w_c;
  nc3_self_duality = || W^T/||W||_F - M/||M||_F ||_F^2.
- nc4_ncc_mismatch: the share of samples whose argmax_c (W h + b)_c differs from the nearest
  class mean argmin_c ||h - mu_c||. It needs the means first, so it takes a second pass over
  the same batches (`CollapseStatistics.ncc_mismatch`, or `neural_collapse_streamed`, which
  runs both passes).

Numerics: batches are cast to float64 before any arithmetic. Each batch is centred on its own
class means, and the running class means and pooled within-class scatter are merged with the
pairwise update of Chan, Golub & LeVeque (1979):
    S = S_a + S_b + (n_a n_b / (n_a + n_b)) (m_b - m_a)(m_b - m_a)^T   per class,
so no E[hh^T] - mu mu^T cancellation occurs (a feature offset of 1e7 costs no accuracy).
Memory: the pooled scatter is p x p float64 (8 p^2 bytes: 2 MB at p = 512, 512 MB at p = 8192);
reduce very wide layers (pooling, random projection) before measuring them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import pdist

from ..errors import InputError
from ..progress import track
from ..validation import as_class_indices, as_classifier, as_labels, as_points, check_positive, to_numpy

# A feature/label batch as the caller yields it (numpy arrays or torch tensors).
Batch = tuple[object, object]


@dataclass(frozen=True)
class CollapseResult:
    """Neural-collapse metrics of one layer.

    metrics: metric name -> float (names in the module docstring; the classifier metrics only
    when a classifier was given, nc4_ncc_mismatch only after the second pass).
    class_counts: (C,) samples per class; class_means: (C, p) float64.
    """

    metrics: dict[str, float]
    n_samples: int
    class_counts: np.ndarray
    class_means: np.ndarray


class CollapseStatistics:
    """First pass: class counts, class means and the pooled within-class scatter, in float64.

    Feed batches with `update(features, labels)` (labels are class indices 0..n_classes-1),
    then call `result()`. For NC4 build `ncc_mismatch(classifier, bias)` after the first pass,
    feed it the same features again, and pass it to `result(ncc=...)`.
    """

    def __init__(self, n_classes: int):
        n_classes = check_positive(n_classes, name="n_classes", integer=True)
        if n_classes < 2:
            raise InputError(f"neural collapse needs at least 2 classes, got n_classes={n_classes}.")
        self.n_classes = n_classes
        self._counts = np.zeros(n_classes, dtype=np.int64)
        self._class_sq = np.zeros(n_classes)  # per class: sum_i ||h_i - mu_c||^2
        self._means: np.ndarray | None = None  # (C, p) running class means
        self._scatter: np.ndarray | None = None  # (p, p) pooled within-class scatter

    @property
    def n_features(self) -> int | None:
        return None if self._means is None else self._means.shape[1]

    @property
    def n_samples(self) -> int:
        return int(self._counts.sum())

    @property
    def class_counts(self) -> np.ndarray:
        return self._counts.copy()

    @property
    def class_means(self) -> np.ndarray:
        """(C, p) float64 class means (rows of absent classes are zero)."""
        self._require_data()
        return self._means.copy()

    @property
    def within_class_covariance(self) -> np.ndarray:
        """Sigma_W = pooled within-class scatter / N, (p, p) float64."""
        self._require_data()
        return self._scatter / self.n_samples

    def update(self, features, labels) -> None:
        """Add one batch: features (n, p), labels (n,) class indices."""
        points = as_points(to_numpy(features), name="features", min_points=1)
        y = as_class_indices(labels, len(points), self.n_classes)
        x = points.astype(np.float64)
        n_features = x.shape[1]
        if self._means is None:
            self._means = np.zeros((self.n_classes, n_features))
            self._scatter = np.zeros((n_features, n_features))
        elif n_features != self.n_features:
            raise InputError(
                f"features have {n_features} columns in this batch but {self.n_features} before; "
                "every batch must come from the same layer."
            )

        batch_counts = np.bincount(y, minlength=self.n_classes)
        batch_sums = np.zeros_like(self._means)
        _add_rows_by_class(batch_sums, x, y)
        present = batch_counts > 0
        batch_means = np.zeros_like(self._means)
        batch_means[present] = batch_sums[present] / batch_counts[present, None]

        centred = x - batch_means[y]
        batch_class_sq = np.bincount(
            y, weights=np.einsum("ij,ij->i", centred, centred), minlength=self.n_classes
        )

        old = self._counts.astype(np.float64)
        new = old + batch_counts
        delta = batch_means - self._means
        delta[~present] = 0.0
        weight = np.divide(old * batch_counts, new, out=np.zeros_like(new), where=new > 0)

        self._scatter += centred.T @ centred
        self._scatter += (delta.T * weight) @ delta
        self._class_sq += batch_class_sq + weight * np.einsum("ij,ij->i", delta, delta)
        self._means[present] += delta[present] * (batch_counts[present] / new[present])[:, None]
        self._counts += batch_counts

    def ncc_mismatch(self, classifier, bias=None) -> NccMismatch:
        """A second-pass counter for NC4 against the class means seen so far."""
        self._require_data()
        self._require_classes()
        return NccMismatch(self._means.copy(), classifier, bias)

    def result(self, classifier=None, *, ncc: NccMismatch | None = None) -> CollapseResult:
        """All metrics from the statistics gathered so far (see the module docstring)."""
        self._require_data()
        self._require_classes()
        counts = self._counts
        n = self.n_samples
        n_classes = self.n_classes
        means = self._means
        centred_means = means - means.mean(axis=0)  # rows m_c = mu_c - mu_G
        sigma_w = self._scatter / n

        metrics: dict[str, float] = {}
        metrics["nc1"] = _nc1(sigma_w, centred_means)
        trace_b = float(np.einsum("ij,ij->", centred_means, centred_means)) / n_classes
        trace_w = float(self._class_sq.sum()) / n
        metrics["nc1_trace_ratio"] = _ratio(trace_w, trace_b)
        metrics["cdnv"] = _cdnv(self._class_sq / counts, means)
        metrics.update(_simplex_metrics(centred_means, suffix="means"))
        metrics["etf_distance"] = _etf_distance(centred_means)

        if classifier is not None:
            weights, _ = as_classifier(classifier, None, n_classes=n_classes, n_features=means.shape[1])
            metrics.update(_simplex_metrics(weights, suffix="weights"))
            metrics["nc3_self_duality"] = _self_duality(weights, centred_means)
        if ncc is not None:
            if not np.array_equal(ncc.class_means, means):
                raise ValueError("the NC4 counter was built before the last update; rebuild it")
            metrics["nc4_ncc_mismatch"] = ncc.share
        return CollapseResult(
            metrics=metrics, n_samples=n, class_counts=counts.copy(), class_means=means.copy()
        )

    def _require_data(self) -> None:
        if self._means is None:
            raise InputError("no features were given; feed at least one batch before asking for results.")

    def _require_classes(self) -> None:
        small = np.flatnonzero(self._counts < 2)
        if len(small):
            c = small[0]
            raise InputError(
                f"class {c} has {self._counts[c]} sample(s); neural collapse needs at least 2 per "
                "class: drop that class or give more data."
            )


class NccMismatch:
    """Second pass for NC4: counts the samples whose argmax(W h + b) is not the nearest class mean.

    Distances are taken after subtracting the mean of the class means from both h and the
    means, so a large common offset costs no precision. Ties go to the lowest class index in
    both rules.
    """

    def __init__(self, class_means: np.ndarray, classifier, bias=None):
        self.class_means = np.asarray(class_means, dtype=np.float64)
        n_classes, n_features = self.class_means.shape
        self.weights, self.bias = as_classifier(classifier, bias, n_classes=n_classes, n_features=n_features)
        self._centre = self.class_means.mean(axis=0)
        self._centred_means = self.class_means - self._centre
        self._half_sq_norms = 0.5 * np.einsum("ij,ij->i", self._centred_means, self._centred_means)
        self._mismatches = 0
        self._n = 0

    def update(self, features) -> None:
        x = as_points(to_numpy(features), name="features", min_points=1).astype(np.float64)
        if x.shape[1] != self.class_means.shape[1]:
            raise InputError(
                f"features have {x.shape[1]} columns but the class means have "
                f"{self.class_means.shape[1]}; feed the same layer as in the first pass."
            )
        predicted = np.argmax(x @ self.weights.T + self.bias, axis=1)
        # argmin ||h - mu_c||^2 = argmax <h - mu_G, m_c> - ||m_c||^2 / 2
        scores = (x - self._centre) @ self._centred_means.T - self._half_sq_norms
        nearest = np.argmax(scores, axis=1)
        self._mismatches += int(np.count_nonzero(predicted != nearest))
        self._n += len(x)

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def share(self) -> float:
        if self._n == 0:
            raise InputError("the NC4 pass saw no features; feed the batches a second time.")
        return self._mismatches / self._n


def neural_collapse_streamed(
    batches: Callable[[], Iterable[Batch]],
    n_classes: int,
    *,
    classifier=None,
    bias=None,
    n_batches: int | None = None,
    progress: bool = False,
) -> CollapseResult:
    """Neural-collapse metrics of one layer from batches, never holding the whole layer.

    batches: a function returning a fresh iterable of (features (n, p), labels (n,)) pairs;
    it is called once, or twice when a classifier is given (the second pass is for NC4).
    Features may be numpy arrays or torch tensors; labels are class indices 0..n_classes-1.
    classifier: (n_classes, p) weights of the last Linear; bias: its (n_classes,) bias.
    n_batches: the number of batches, for the progress bar only.
    """
    stats = CollapseStatistics(n_classes)
    for features, labels in track(
        batches(), description="collapse: class statistics", total=n_batches, enabled=progress
    ):
        stats.update(features, labels)
    ncc = None
    if classifier is not None:
        ncc = stats.ncc_mismatch(classifier, bias)
        for features, _ in track(
            batches(), description="collapse: NC4 pass", total=n_batches, enabled=progress
        ):
            ncc.update(features)
    return stats.result(classifier, ncc=ncc)


def neural_collapse(
    features,
    labels,
    *,
    classifier=None,
    bias=None,
    batch_size: int = 8192,
    progress: bool = False,
) -> CollapseResult:
    """Neural-collapse metrics of whole arrays (features (N, p), labels (N,)).

    Without a classifier, labels may be any values; the classes are the sorted distinct
    labels, and the rows of `class_means` follow that order. With a classifier (C, p), labels
    are class indices 0..C-1 (label c goes with row c) and every class must be present.
    The arrays are processed in slices of `batch_size` rows, exactly as a stream would be.
    """
    points = as_points(features, name="features", min_points=4)
    batch_size = check_positive(batch_size, name="batch_size", integer=True)
    if classifier is None:
        _, y = np.unique(as_labels(labels, len(points)), return_inverse=True)
        n_classes = int(y.max()) + 1
    else:
        n_classes = as_points(to_numpy(classifier), name="classifier", min_points=2).shape[0]
        y = as_class_indices(labels, len(points), n_classes)

    def slices() -> Iterable[Batch]:
        for start in range(0, len(points), batch_size):
            yield points[start : start + batch_size], y[start : start + batch_size]

    return neural_collapse_streamed(
        slices,
        n_classes,
        classifier=classifier,
        bias=bias,
        n_batches=-(-len(points) // batch_size),
        progress=progress,
    )


def _add_rows_by_class(sums: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    """sums[c] += sum of the rows of x labelled c (sorted segment sums: O(n p))."""
    order = np.argsort(y, kind="stable")
    sorted_labels = y[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sums[sorted_labels[starts]] += np.add.reduceat(x[order], starts, axis=0)


def _nc1(sigma_w: np.ndarray, centred_means: np.ndarray) -> float:
    """Tr(Sigma_W Sigma_B^+)/C through the top min(C-1, p) eigenpairs of Sigma_B = M M^T / C."""
    n_classes, n_features = centred_means.shape
    rank = min(n_classes - 1, n_features)
    _, singular, directions = np.linalg.svd(centred_means, full_matrices=False)
    singular, directions = singular[:rank], directions[:rank]
    if singular[-1] <= singular[0] * max(n_classes, n_features) * np.finfo(np.float64).eps:
        return float("inf")
    projected = np.einsum("kp,pq,kq->k", directions, sigma_w, directions)
    return float(np.sum(projected / singular**2))


def _cdnv(class_variances: np.ndarray, means: np.ndarray) -> float:
    """Mean over pairs c < c' of (var_c + var_c') / (2 ||mu_c - mu_c'||^2)."""
    sq_distances = pdist(means, "sqeuclidean")
    first, second = np.triu_indices(len(means), k=1)
    numerators = class_variances[first] + class_variances[second]
    with np.errstate(divide="ignore", invalid="ignore"):  # coinciding means: inf (or NaN)
        return float(np.mean(numerators / (2.0 * sq_distances)))


def _simplex_metrics(vectors: np.ndarray, *, suffix: str) -> dict[str, float]:
    """Equinorm, equiangularity and maximal-angle deviation of C vectors (rows)."""
    n_classes = len(vectors)
    norms = np.linalg.norm(vectors, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero vector has no angle: NaN
        cosines = (vectors @ vectors.T) / np.outer(norms, norms)
    pairs = cosines[np.triu_indices(n_classes, k=1)]
    return {
        f"nc2_equinorm_{suffix}": _ratio(float(np.std(norms, ddof=1)), float(np.mean(norms))),
        f"nc2_equiangular_{suffix}": float(np.std(pairs, ddof=1)) if len(pairs) > 1 else 0.0,
        f"nc2_max_angle_{suffix}": float(np.mean(np.abs(pairs + 1.0 / (n_classes - 1)))),
    }


def _etf_distance(centred_means: np.ndarray) -> float:
    """|| G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F with G the Gram matrix of the centred means."""
    n_classes = len(centred_means)
    gram = centred_means @ centred_means.T
    scale = np.linalg.norm(gram)
    if scale == 0:  # all class means coincide: no shape to compare
        return float("nan")
    etf = (np.eye(n_classes) - 1.0 / n_classes) / np.sqrt(n_classes - 1)
    return float(np.linalg.norm(gram / scale - etf))


def _self_duality(weights: np.ndarray, centred_means: np.ndarray) -> float:
    """|| W/||W||_F - M^T/||M||_F ||_F^2 (the same as with W^T and M)."""
    difference = weights / np.linalg.norm(weights) - centred_means / np.linalg.norm(centred_means)
    return float(np.sum(difference**2))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")
