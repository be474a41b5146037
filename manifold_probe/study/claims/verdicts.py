"""The claims of the five papers, each as a statistic with a 95 % interval and a verdict.

Every claim names what it predicts about one statistic:

- `increase` / `decrease`: the statistic is above / below 0;
- `none`: it lies within +-`margin` of 0 (no relation of a size that matters);
- `within`: it lies in [low, high].

Verdict from the 95 % bootstrap percentile interval [lo, hi] of the statistic (`decide`):

- increase: *supported* if lo > 0; *not supported* if hi < 0, or if the whole interval lies
  within +-margin (an effect too small to matter); *inconclusive* otherwise;
  decrease: the mirror image;
- none: *supported* if -margin <= lo and hi <= margin (any relation is too weak to matter);
  otherwise *not supported* if lo > 0 or hi < 0; *inconclusive* otherwise;
- within [a, b]: *supported* if a <= lo and hi <= b; *not supported* if hi < a or lo > b;
  *inconclusive* otherwise.

A claim whose models are missing, or whose statistic cannot be computed (too few models, a
constant variable), is *inconclusive* with the reason, never given a number it does not have.

Margins: 0.3 for rank correlations (a weak relation), log10(1.25) ~ 0.097 for log ratios
(a 25 % change). Intervals: Spearman correlations use `report.statistics.correlation`
(pairs resampled, 2,000 resamples); means and differences of group means resample the
models within each group (2,000 resamples), all seeded.

The statistic of each claim is stated in its `statistic` text and in docs/claims.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from ...report.statistics import correlation
from .evidence import ModelRecord, Study, finite, group_by

N_BOOT = 2000
TPT_ERROR = 0.005
"""The training error at or below which a run counts as in its terminal phase."""
CORRELATION_MARGIN = 0.3
RATIO_MARGIN = math.log10(1.25)
VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class Finding:
    """One claim tested: the statistic's value, its 95 % interval, the number of units, the verdict."""

    claim: str
    paper: str
    statement: str
    statistic: str
    prediction: str
    value: float | None
    interval: tuple[float, float] | None
    n: int
    verdict: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim,
            "paper": self.paper,
            "statement": self.statement,
            "statistic": self.statistic,
            "prediction": self.prediction,
            "value": self.value,
            "interval": None if self.interval is None else list(self.interval),
            "n": self.n,
            "verdict": self.verdict,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class Estimate:
    """A statistic, its interval (None when it has none) and the number of units behind it."""

    value: float | None
    interval: tuple[float, float] | None
    n: int
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def decide(interval: tuple[float, float] | None, kind: str, *, margin: float = 0.0, bounds=None) -> str:
    """The verdict for an interval under the rules of the module docstring."""
    if interval is None or not all(np.isfinite(interval)):
        return "inconclusive"
    lo, hi = interval
    if kind in ("increase", "decrease"):
        if kind == "decrease":
            lo, hi = -hi, -lo
        if lo > 0:
            return "supported"
        if hi < 0 or (-margin <= lo and hi <= margin):
            return "not supported"
        return "inconclusive"
    if kind == "none":
        if -margin <= lo and hi <= margin:
            return "supported"
        if lo > 0 or hi < 0:
            return "not supported"
        return "inconclusive"
    if kind == "within":
        low, high = bounds
        if low <= lo and hi <= high:
            return "supported"
        if hi < low or lo > high:
            return "not supported"
        return "inconclusive"
    raise ValueError(f"unknown claim kind {kind!r}")


# --- estimators ------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float], *, seed: int) -> Estimate:
    """Spearman's rho of the finite pairs with its bootstrap interval (report.statistics)."""
    result = correlation(x, y, "spearman", seed=seed, n_bootstrap=N_BOOT, n_perm=N_BOOT)
    if result.insufficient:
        missing = len(x) - result.n
        lacking = f" ({missing} of {len(x)} without a value)" if missing else ""
        return Estimate(None, None, result.n, f"fewer than 3 values{lacking}, or a constant variable")
    return Estimate(result.value, result.interval, result.n, details={"p_value": result.p_value})


def group_means_difference(
    groups: Sequence[Sequence[float]], combine: Callable[..., float], *, seed: int
) -> Estimate:
    """combine(mean of group 0, mean of group 1, ...) with a bootstrap that resamples each group.

    One group with `combine = lambda m: m` is the mean of that group and its interval.
    """
    arrays = [finite(g) for g in groups]
    n = sum(len(a) for a in arrays)
    if any(len(a) == 0 for a in arrays):
        return Estimate(None, None, n, "a group of models is empty (missing models or results)")
    value = combine(*(a.mean() for a in arrays))
    if any(len(a) < 2 for a in arrays):
        return Estimate(float(value), None, n, "a group has a single model: no interval")
    rng = np.random.default_rng(seed)
    draws = [a[rng.integers(0, len(a), size=(N_BOOT, len(a)))].mean(axis=1) for a in arrays]
    boot = combine(*draws)
    low, high = np.quantile(boot, [0.025, 0.975])
    return Estimate(float(value), (float(low), float(high)), n)


def mean_of(values: Sequence[float], *, seed: int) -> Estimate:
    return group_means_difference([values], lambda m: m, seed=seed)


# --- the quantities the claims use -------------------------------------------------------


def final_rise(record: ModelRecord) -> float:
    """log10 of the last layer's scaled MAPC over the median of the hidden layers' (before it)."""
    profile = record.metric_profile("curvature", "mapc_scaled")
    hidden = finite(profile[:-1])
    if len(profile) < 2 or len(hidden) == 0 or not np.isfinite(profile[-1]) or profile[-1] <= 0:
        return math.nan
    middle = float(np.median(hidden))
    return math.log10(profile[-1] / middle) if middle > 0 else math.nan


def plateau(record: ModelRecord) -> float:
    """log10 of the median scaled MAPC of the hidden layers (all but the first and the last)."""
    profile = finite(record.metric_profile("curvature", "mapc_scaled")[1:-1])
    profile = profile[profile > 0]
    return math.log10(float(np.median(profile))) if len(profile) else math.nan


def log10(value: float) -> float:
    return math.log10(value) if np.isfinite(value) and value > 0 else math.nan


def tpt_points(study: Study, metric: Callable[[ModelRecord], float]) -> tuple[list[float], list[float], dict]:
    """(epoch, log10 metric centred per run) over every checkpoint of a run in its terminal phase.

    The terminal phase of a run starts at its first checkpoint whose training error is at most
    TPT_ERROR (Papyan, Han & Donoho train past zero training error; small nets on a few
    thousand points stop a few samples short of it).
    """
    epochs: list[float] = []
    values: list[float] = []
    reached = {}
    for name, members in study.runs().items():
        start = next((m.epoch for m in members if (m.train_accuracy or 0) >= 1.0 - TPT_ERROR), None)
        reached[name] = start
        if start is None:
            continue
        chosen = [m for m in members if m.epoch >= start]
        logs = np.array([log10(metric(m)) for m in chosen])
        ok = np.isfinite(logs)
        if ok.sum() < 2:
            continue
        epochs += [float(m.epoch) for m, keep in zip(chosen, ok, strict=True) if keep]
        values += list(logs[ok] - logs[ok].mean())
    return epochs, values, {"terminal_phase_starts": reached}


def run_points(study: Study, metric: Callable[[ModelRecord], float]) -> tuple[list[float], list[float]]:
    """(epoch, metric centred per run) over every checkpoint of every run, from its first epoch."""
    epochs: list[float] = []
    values: list[float] = []
    for members in study.runs().values():
        series = np.array([metric(m) for m in members])
        ok = np.isfinite(series)
        if ok.sum() < 2:
            continue
        epochs += [float(m.epoch) for m, keep in zip(members, ok, strict=True) if keep]
        values += list(series[ok] - series[ok].mean())
    return epochs, values


def manifold_dim(record: ModelRecord) -> float:
    return record.summary("cutting-planes", "mean_manifold_dim")


def layer_spearman(record: ModelRecord, metric: str) -> float:
    """Spearman's rho between layer index and `metric` over the hidden layers of one model."""
    profile = record.metric_profile("spectra", metric)[:-1]
    ok = np.isfinite(profile)
    if ok.sum() < 3 or np.ptp(profile[ok]) == 0:
        return math.nan
    return float(correlation(np.flatnonzero(ok), profile[ok], "spearman", n_bootstrap=0, n_perm=0).value)


# --- the claims --------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyContext:
    """What the claims need beside the records: the class count and the ensembles measured,
    as (ensemble size, mean class-manifold dimension) pairs (each member alone has size 1)."""

    num_classes: int
    ensembles: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Claim:
    """A claim of a paper, what statistic tests it and what that statistic should do."""

    claim: str
    paper: str
    statement: str
    statistic: str
    kind: str
    estimate: Callable[[Study, int, StudyContext], Estimate]
    margin: float = 0.0
    bounds: tuple[float, float] | None = None

    def prediction(self, context: StudyContext) -> str:
        if self.kind == "within":
            low, high = self.bounds_for(context)
            return f"within [{low:g}, {high:g}]"
        if self.kind == "none":
            return f"within +-{self.margin:.2g} of 0"
        return "above 0" if self.kind == "increase" else "below 0"

    def bounds_for(self, context: StudyContext) -> tuple[float, float] | None:
        """The `within` bounds: fixed, or C-1.5 .. C+0.5 for a class-outlier count."""
        if self.kind != "within":
            return None
        if self.bounds is not None:
            return self.bounds
        return (context.num_classes - 1.5, context.num_classes + 0.5)

    def evaluate(self, study: Study, context: StudyContext, *, seed: int) -> Finding:
        estimate = self.estimate(study, seed, context)
        verdict = decide(estimate.interval, self.kind, margin=self.margin, bounds=self.bounds_for(context))
        reason = estimate.reason
        if verdict == "inconclusive" and not reason and estimate.interval is not None:
            reason = "the interval reaches both sides of the decision"
        elif verdict == "not supported" and self.kind in ("increase", "decrease"):
            low, high = estimate.interval
            if -self.margin <= low and high <= self.margin:
                reason = f"the whole interval lies within +-{self.margin:.2g}: too small to matter"
        return Finding(
            claim=self.claim,
            paper=self.paper,
            statement=self.statement,
            statistic=self.statistic,
            prediction=self.prediction(context),
            value=estimate.value,
            interval=estimate.interval,
            n=estimate.n,
            verdict=verdict,
            reason=reason,
            details=estimate.details,
        )


KA = "Kaufman & Azencot 2023"
PHD = "Papyan, Han & Donoho 2020"
EW = "E & Wojtowytsch 2021"
PAPYAN = "Papyan 2020"
FORT = "Fort et al. 2022"


def _ka_final_rise(study: Study, seed: int, _context: StudyContext) -> Estimate:
    return mean_of([final_rise(r) for r in study.trained], seed=seed)


def _ka_untrained(study: Study, seed: int, _context: StudyContext) -> Estimate:
    pairs = study.twins(lambda r: not r.trained)
    differences = [final_rise(base) - final_rise(untrained) for base, untrained in pairs]
    return mean_of(differences, seed=seed)


def _ka_gap_across(study: Study, seed: int, _context: StudyContext) -> Estimate:
    trained = study.trained
    return spearman(
        [r.summary("curvature", "curvature_gap") for r in trained],
        [np.nan if r.test_accuracy is None else r.test_accuracy for r in trained],
        seed=seed,
    )


def _ka_gap_within(study: Study, seed: int, _context: StudyContext) -> Estimate:
    families = group_by(study.trained, lambda r: r.shape)
    shape, members = max(families.items(), key=lambda item: len(item[1]))
    estimate = _ka_gap_across(Study(tuple(members)), seed, None)
    return Estimate(
        estimate.value, estimate.interval, estimate.n, estimate.reason,
        {**estimate.details, "family": "/".join(str(v) for v in shape)},
    )  # fmt: skip


def _ka_mixup(study: Study, seed: int, _context: StudyContext) -> Estimate:
    pairs = study.twins(lambda r: r.mixup > 0 and r.label_noise == 0 and r.label_smoothing == 0)
    return mean_of([plateau(mixed) - plateau(base) for base, mixed in pairs], seed=seed)


def _ka_id_curvature(study: Study, seed: int, _context: StudyContext) -> Estimate:
    ids, curvatures = [], []
    for record in study.trained:
        ids += list(record.metric_profile("id", "id_twonn")[:-1])
        curvatures += list(record.metric_profile("curvature", "mapc_scaled")[:-1])
    if len(ids) != len(curvatures):
        return Estimate(None, None, 0, "the id and curvature results list different layers")
    return spearman(ids, curvatures, seed=seed)


def _phd(metric: Callable[[ModelRecord], float]):
    def estimate(study: Study, seed: int, _context: StudyContext) -> Estimate:
        epochs, values, details = tpt_points(study, metric)
        if not epochs:
            reason = f"no run reached {TPT_ERROR:.1%} training error with two or more checkpoints after it"
            return Estimate(None, None, 0, reason, details)
        result = spearman(epochs, values, seed=seed)
        return Estimate(result.value, result.interval, result.n, result.reason, {**result.details, **details})

    return estimate


def _phd_ncc(study: Study, seed: int, _context: StudyContext) -> Estimate:
    finals = [m[-1] for m in study.runs().values()] or study.baselines()
    return mean_of([r.classifier_metric("collapse", "nc4_ncc_mismatch") for r in finals], seed=seed)


def _ew(metric: str):
    def estimate(study: Study, seed: int, _context: StudyContext) -> Estimate:
        baselines = study.baselines()
        shallow = [log10(r.classifier_metric("collapse", metric)) for r in baselines if r.depth == 1]
        deep = [log10(r.classifier_metric("collapse", metric)) for r in baselines if (r.depth or 0) >= 2]
        return group_means_difference([shallow, deep], lambda s, d: s - d, seed=seed)

    return estimate


def _papyan_outliers(study: Study, seed: int, _context: StudyContext) -> Estimate:
    deep = [r for r in study.baselines() if (r.depth or 0) >= 2]
    return mean_of([r.classifier_metric("spectra", "n_outliers") for r in deep], seed=seed)


def _papyan_depth(study: Study, seed: int, _context: StudyContext) -> Estimate:
    deep = [r for r in study.baselines() if (r.depth or 0) >= 2]
    return mean_of([layer_spearman(r, "outlier_variance_share") for r in deep], seed=seed)


def _papyan_fisher(study: Study, seed: int, _context: StudyContext) -> Estimate:
    deep = [r for r in study.baselines() if (r.depth or 0) >= 2]
    ratios = [log10(r.classifier_metric("spectra", "fisher_outlier_bulk_ratio")) for r in deep]
    return mean_of(ratios, seed=seed)


def _fort_training(study: Study, seed: int, _context: StudyContext) -> Estimate:
    epochs, values = run_points(study, manifold_dim)
    return spearman(epochs, values, seed=seed)


def _fort_ensembles(study: Study, seed: int, context: StudyContext) -> Estimate:
    sizes = [float(size) for size, _ in context.ensembles]
    return spearman(sizes, [dim for _, dim in context.ensembles], seed=seed)


def _fort_series(attribute: str):
    def estimate(study: Study, seed: int, _context: StudyContext) -> Estimate:
        members = study.series(attribute)
        return spearman([float(getattr(r, attribute)) for r in members], [manifold_dim(r) for r in members],
                        seed=seed)  # fmt: skip

    return estimate


CLAIMS: tuple[Claim, ...] = (
    Claim(
        claim="ka-final-rise",
        paper=KA,
        statement="Trained networks' curvature profile ends in a final rise at the last layer.",
        statistic=(
            "mean over trained models of log10(scaled MAPC of the last layer / median of the hidden layers')"
        ),
        kind="increase",
        estimate=_ka_final_rise,
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="ka-untrained-flat",
        paper=KA,
        statement="Untrained networks do not show the trained profile (they flatten).",
        statistic=(
            "mean over (trained, untrained twin) pairs of the final rise of ka-final-rise, trained "
            "minus untrained"
        ),
        kind="increase",
        estimate=_ka_untrained,
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="ka-gap-accuracy",
        paper=KA,
        statement="The last-layer curvature gap rises with test accuracy across models.",
        statistic=(
            "Spearman rho of curvature_gap (raw MAPC, last minus penultimate layer) and test accuracy "
            "over trained models"
        ),
        kind="increase",
        estimate=_ka_gap_across,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="ka-gap-accuracy-within",
        paper=KA,
        statement="Within one architecture family the curvature gap rises with test accuracy.",
        statistic=(
            "Spearman rho of curvature_gap and test accuracy over the trained models of the largest family"
        ),
        kind="increase",
        estimate=_ka_gap_within,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="ka-mixup-flattens",
        paper=KA,
        statement="Mixup flattens the curvature plateau.",
        statistic=(
            "mean over (baseline, mixup twin) pairs of log10 median hidden-layer scaled MAPC, mixup "
            "minus baseline"
        ),
        kind="decrease",
        estimate=_ka_mixup,
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="ka-id-not-curvature",
        paper=KA,
        statement="Intrinsic dimension does not predict curvature.",
        statistic="Spearman rho of TwoNN ID and scaled MAPC over the hidden layers of every trained model",
        kind="none",
        estimate=_ka_id_curvature,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="phd-nc1",
        paper=PHD,
        statement="Within-class variability collapses (NC1 falls) through the terminal phase of training.",
        statistic=(
            "Spearman rho of epoch and log10 NC1 (penultimate layer, centred per run) over terminal- "
            "phase checkpoints"
        ),
        kind="decrease",
        estimate=_phd(lambda r: r.classifier_metric("collapse", "nc1")),
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="phd-etf",
        paper=PHD,
        statement="Class means approach a simplex equiangular tight frame.",
        statistic=(
            "Spearman rho of epoch and log10 etf_distance (centred per run) over terminal-phase checkpoints"
        ),
        kind="decrease",
        estimate=_phd(lambda r: r.classifier_metric("collapse", "etf_distance")),
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="phd-self-duality",
        paper=PHD,
        statement="Classifier rows align with the class means (self-duality).",
        statistic=(
            "Spearman rho of epoch and log10 nc3_self_duality (centred per run) over terminal-phase "
            "checkpoints"
        ),
        kind="decrease",
        estimate=_phd(lambda r: r.classifier_metric("collapse", "nc3_self_duality")),
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="phd-ncc",
        paper=PHD,
        statement="The classifier behaves as the nearest class centre rule at the end of training.",
        statistic=(
            "mean over runs' final checkpoints of nc4_ncc_mismatch (share of samples where the two disagree)"
        ),
        kind="within",
        estimate=_phd_ncc,
        bounds=(0.0, 0.05),
    ),
    Claim(
        claim="ew-deep-collapse",
        paper=EW,
        statement="Deep networks collapse the penultimate layer; a one-hidden-layer network does not.",
        statistic="mean log10 NC1 at the penultimate layer, one-hidden-layer MLPs minus deep baselines",
        kind="increase",
        estimate=_ew("nc1"),
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="ew-simplex",
        paper=EW,
        statement="Deep networks' class means form a simplex; a one-hidden-layer network's do not.",
        statistic=(
            "mean log10 etf_distance at the penultimate layer, one-hidden-layer MLPs minus deep baselines"
        ),
        kind="increase",
        estimate=_ew("etf_distance"),
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="papyan-outliers",
        paper=PAPYAN,
        statement="The feature covariance has C-1 (or C) class-mean outliers above the bulk.",
        statistic="mean over deep baselines of n_outliers at the penultimate layer",
        kind="within",
        estimate=_papyan_outliers,
    ),
    Claim(
        claim="papyan-depth",
        paper=PAPYAN,
        statement="The outliers separate from the bulk more with depth.",
        statistic=(
            "mean over deep baselines of Spearman rho(layer index, outlier_variance_share) over the "
            "hidden layers"
        ),
        kind="increase",
        estimate=_papyan_depth,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="papyan-fisher",
        paper=PAPYAN,
        statement=(
            "In the classifier's Fisher matrix the class-mean outliers stand above the within-class bulk."
        ),
        statistic=(
            "mean over deep baselines of log10 fisher_outlier_bulk_ratio (weakest class outlier / bulk edge)"
        ),
        kind="increase",
        estimate=_papyan_fisher,
        margin=RATIO_MARGIN,
    ),
    Claim(
        claim="fort-training",
        paper=FORT,
        statement="Class manifolds grow in dimension as training proceeds.",
        statistic=(
            "Spearman rho of epoch and mean class-manifold dimension (centred per run) over every saved epoch"
        ),
        kind="increase",
        estimate=_fort_training,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="fort-ensembles",
        paper=FORT,
        statement="Ensembles have higher-dimensional class manifolds than their members.",
        statistic=(
            "Spearman rho of ensemble size and mean class-manifold dimension over ensembles of the "
            "baseline seeds"
        ),
        kind="increase",
        estimate=_fort_ensembles,
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="fort-label-noise",
        paper=FORT,
        statement="Label randomisation lowers the class-manifold dimension.",
        statistic="Spearman rho of the label-noise fraction and mean class-manifold dimension",
        kind="decrease",
        estimate=_fort_series("label_noise"),
        margin=CORRELATION_MARGIN,
    ),
    Claim(
        claim="fort-train-size",
        paper=FORT,
        statement="More training data raises the class-manifold dimension.",
        statistic="Spearman rho of the training-set size and mean class-manifold dimension",
        kind="increase",
        estimate=_fort_series("train_size"),
        margin=CORRELATION_MARGIN,
    ),
)
"""Every claim tested, in the order of the findings page."""


def ensemble_members(study: Study, *, nested: bool = False) -> list[list[ModelRecord]]:
    """Every ensemble of two or more baseline seeds of one shape: all combinations, or with
    `nested` the first 2, 3, ... seeds only (one ensemble per size)."""
    groups = group_by(study.baselines(), lambda r: (r.shape, r.epochs, r.batch_size))
    ensembles = []
    for members in groups.values():
        members = sorted(members, key=lambda r: r.seed)
        for size in range(2, len(members) + 1):
            ensembles += [members[:size]] if nested else [list(c) for c in combinations(members, size)]
    return ensembles


def evaluate_claims(study: Study, context: StudyContext, *, seed: int = 0) -> list[Finding]:
    """Every claim of CLAIMS tested on the study."""
    return [claim.evaluate(study, context, seed=seed) for claim in CLAIMS]
