"""The claims of the five papers, each tested with the training run as the unit.

Every claim reduces the study to numbers that are independent across training runs
(`Evidence`): one effect per run (a paired difference between seed twins, a change over a
run's terminal phase, a within-run rank correlation over layers or epochs), tested with the
exact sign-flip test and Hartigan's interval (`inference.location`); or one (x, y) pair per run
across the runs of a series, tested with the permutation test of Spearman's rho and the
Fisher-z interval (`inference.rank_correlation`). The claims fall in two pre-registered families
(`PRIMARY_CLAIMS`: one or two headline claims per paper, fixed before any study was run; every
other claim is secondary); the p-values are adjusted with Holm's method within each family, so
each family's error rate is at most 5 %, and `inference.verdict` decides: equivalent to no effect (the 90 %
interval inside +-margin), supported, contradicted, inconclusive. Each claim states its
margin and where the margin comes from.

Where each quantity is read (`Design.probes`): the neural-collapse and spectra claims on each
model's own training images (`collapse`, `spectra`); cross-model comparisons on one shared test
point set (`id`, `curvature`, `cutting-planes`); Kaufman & Azencot's curvature with their
perturbation neighbourhoods (`curvature`, raw MAPC) from the input (`StudyContext.input_mapc`,
the same for every model) to the logits. `ALTERNATIVES` names the other reasonable designs
(kNN neighbourhoods; collapse and spectra on the shared test points; a shorter terminal phase);
every claim is re-decided under each design that changes what it reads, and a verdict that
changes is *not robust* (`inference.robustness`).

Margins in decades (log10 ratios): 0.1 decade (a factor 1.26). Kaufman & Azencot's profiles
move by one decade or more between input, plateau and logits (the final rise about 1.2-1.9
decades, mixup's plateau about 10x flatter), and Papyan, Han & Donoho's NC1 falls by one to
several decades over the terminal phase: an effect under 0.1 decade is well below any the
papers discuss. Margins of rank correlations: 0.1 (Cohen 1988: |r| = 0.1 is a small effect),
0.3 (a medium one) where the claim is that a relation is absent. Other margins are given with
their claims.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .evidence import ModelRecord, Study, finite, group_by
from .inference import ALPHA, Inference, holm, location, rank_correlation, robustness, verdict

TPT_ERROR = 0.005
"""The training error at or below which a run counts as in its terminal phase (Papyan, Han &
Donoho: zero; small nets on a few thousand points stop a few samples short of it)."""
DECADE_MARGIN = 0.1
SMALL_CORRELATION = 0.1
MEDIUM_CORRELATION = 0.3
DECADE_SOURCE = (
    "0.1 decade: far below the papers' effects (profiles and NC1 move by a decade or more; module docstring)"
)
SMALL_SOURCE = "|rho| 0.1, a small effect (Cohen 1988)"
CNN, RESNET, MLP = "digits-cnn", "small-resnet", "digits-mlp"


@dataclass(frozen=True)
class Design:
    """Which result each quantity is read from: `probes` maps a role (collapse, spectra, curvature,
    id, cutting-planes) to the key of `ModelRecord.results`; `tpt_drop_last` drops that many of
    the last saved epochs of each CNN baseline run (shorter training: a shorter terminal phase, and
    the per-run claims read the run's checkpoint that many saved epochs before its end, where it
    was measured)."""

    name: str
    probes: tuple[tuple[str, str], ...] = ()
    tpt_drop_last: int = 0

    def probe(self, role: str) -> str:
        return dict(self.probes).get(role, role)

    @property
    def varies(self) -> set[str]:
        """The roles this design reads differently from the primary one."""
        changed = {role for role, key in self.probes if key != role}
        return changed | ({"epochs"} if self.tpt_drop_last else set())


PRIMARY = Design("primary")
ALTERNATIVES: tuple[Design, ...] = (
    Design("curvature: kNN neighbourhoods", probes=(("curvature", "curvature-knn"),)),
    Design(
        "collapse and spectra: test points",
        probes=(("collapse", "collapse-test"), ("spectra", "spectra-test")),
    ),
    Design("training one saved epoch shorter", tpt_drop_last=1),
)


@dataclass(frozen=True)
class StudyContext:
    """What the claims need beside the records: the class count, the input layer's raw MAPC per
    curvature result key (the input is the same for every model on the shared points), and each
    measured ensemble's gain: (ensemble name, its class-manifold dimension minus its members' mean)."""

    num_classes: int
    input_mapc: tuple[tuple[str, float], ...] = ()
    ensemble_gains: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Evidence:
    """Per-run numbers behind a claim: `values` (one effect per run) for a location, or `x` and
    `y` (one pair per run) for a rank correlation; `reason` when there is too little."""

    values: tuple[float, ...] | None = None
    x: tuple[float, ...] | None = None
    y: tuple[float, ...] | None = None
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def infer(self, seed: int) -> tuple[Inference | None, str]:
        """The inference over runs, or None with the reason."""
        if self.reason:
            return None, self.reason
        try:
            if self.values is not None:
                return location(self.values, seed=seed), ""
            return rank_correlation(self.x, self.y, seed=seed), ""
        except ValueError as error:
            return None, str(error)


def _values(values: Sequence[float], **details) -> Evidence:
    return Evidence(values=tuple(float(v) for v in values), details=details)


def _pairs(x: Sequence[float], y: Sequence[float], **details) -> Evidence:
    return Evidence(x=tuple(float(v) for v in x), y=tuple(float(v) for v in y), details=details)


@dataclass(frozen=True)
class Finding:
    """One claim tested: effect, 95 % interval, exact and Holm-adjusted p, runs, verdict, robustness
    and `designs`: each design's verdict, effect, interval and runs (the primary one first)."""

    claim: str
    paper: str
    statement: str
    statistic: str
    prediction: str
    margin: float
    margin_source: str
    family: str
    value: float | None
    interval: tuple[float, float] | None
    equivalence_interval: tuple[float, float] | None
    p_value: float | None
    p_adjusted: float | None
    n: int
    verdict: str
    reason: str = ""
    method: str = ""
    robustness: str = "untested"
    designs: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": self.claim, "paper": self.paper, "statement": self.statement,
            "statistic": self.statistic, "prediction": self.prediction, "margin": self.margin,
            "margin_source": self.margin_source, "family": self.family, "value": self.value,
            "interval": None if self.interval is None else list(self.interval),
            "equivalence_interval": (
                None if self.equivalence_interval is None else list(self.equivalence_interval)
            ),
            "p_value": self.p_value, "p_adjusted": self.p_adjusted, "n": self.n, "verdict": self.verdict,
            "reason": self.reason, "method": self.method, "robustness": self.robustness,
            "designs": self.designs, "details": self.details,
        }  # fmt: skip


# --- quantities ---------------------------------------------------------------------------


def log10(value: float) -> float:
    return math.log10(value) if np.isfinite(value) and value > 0 else math.nan


def raw_profile(record: ModelRecord, design: Design, context: StudyContext) -> np.ndarray:
    """Raw MAPC from the input (the shared input value, NaN if not measured) to the logits."""
    key = design.probe("curvature")
    inputs = dict(context.input_mapc).get(key, math.nan)
    return np.concatenate([[inputs], record.metric_profile(key, "mapc")])


def final_rise(record: ModelRecord, design: Design, context: StudyContext) -> float:
    """log10 of the logits' raw MAPC over the median of the hidden layers' (input excluded)."""
    profile = raw_profile(record, design, context)[1:]
    hidden = finite(profile[:-1])
    if len(hidden) == 0:
        return math.nan
    return log10(profile[-1]) - log10(float(np.median(hidden)))


def initial_rise(record: ModelRecord, design: Design, context: StudyContext) -> float:
    """log10 of the first layer's raw MAPC over the input's."""
    profile = raw_profile(record, design, context)
    return log10(profile[1]) - log10(profile[0]) if len(profile) > 1 else math.nan


def plateau_flatness(record: ModelRecord, design: Design, context: StudyContext) -> float:
    """The final rise minus the hidden layers' spread (log10 max / min over the hidden layers)."""
    hidden = finite(raw_profile(record, design, context)[1:-1])
    hidden = hidden[hidden > 0]
    if len(hidden) < 2:
        return math.nan
    return final_rise(record, design, context) - (math.log10(hidden.max()) - math.log10(hidden.min()))


def plateau_level(record: ModelRecord, design: Design, context: StudyContext) -> float:
    """log10 of the median raw MAPC of the hidden layers."""
    hidden = finite(raw_profile(record, design, context)[1:-1])
    hidden = hidden[hidden > 0]
    return math.log10(float(np.median(hidden))) if len(hidden) else math.nan


def depth_rho(values: np.ndarray) -> float:
    """Spearman's rho between layer index and `values` (finite entries; NaN with fewer than 3)."""
    ok = np.isfinite(values)
    if ok.sum() < 3 or np.ptp(values[ok]) == 0:
        return math.nan
    return rank_correlation(np.flatnonzero(ok), values[ok]).value


def manifold_dim(record: ModelRecord, design: Design = PRIMARY) -> float:
    return record.summary(design.probe("cutting-planes"), "mean_manifold_dim")


def baselines(study: Study, arch: str, depth: int | None = None) -> list[ModelRecord]:
    """Trained baselines of `arch` (and `depth`), in seed order."""
    found = [r for r in study.baselines() if r.arch == arch and (depth is None or r.depth == depth)]
    return sorted(found, key=lambda r: (r.width or 0, r.seed))


def deep_baselines(study: Study, design: Design = PRIMARY) -> list[ModelRecord]:
    """The CNN baselines (the nets of Papyan, Han & Donoho and of Papyan): each run's final checkpoint,
    or with `design.tpt_drop_last` its checkpoint that many saved epochs earlier (the final when the
    run saved no epochs)."""
    runs = study.runs()
    found = []
    for final in baselines(study, CNN):
        members = runs.get(final.name, [final])
        found.append(members[max(0, len(members) - 1 - design.tpt_drop_last)])
    return found


def tpt_change(
    study: Study, design: Design, quantity: Callable[[ModelRecord], float], *, logarithmic: bool = True
) -> Evidence:
    """Per CNN baseline run: the quantity at its last checkpoint minus at the first checkpoint of its
    terminal phase (training error at most TPT_ERROR); in log10 when `logarithmic`."""
    values, reached = [], {}
    for name, members in study.runs().items():
        if members[-1].arch != CNN:
            continue
        members = members[: len(members) - design.tpt_drop_last]
        start = next((i for i, m in enumerate(members) if (m.train_accuracy or 0) >= 1 - TPT_ERROR), None)
        reached[name] = None if start is None else members[start].epoch
        if start is None or start == len(members) - 1:
            continue
        first, last = quantity(members[start]), quantity(members[-1])
        values.append(log10(last) - log10(first) if logarithmic else last - first)
    if not reached:
        return Evidence(reason="no CNN baseline run with saved epochs")
    if not values:
        return Evidence(reason=f"no run reached {TPT_ERROR:.1%} training error before its last checkpoint",
                        details={"terminal_phase_starts": reached})  # fmt: skip
    return _values(values, terminal_phase_starts=reached)


def seed_pairs(first: list[ModelRecord], second: list[ModelRecord]) -> list[tuple[ModelRecord, ModelRecord]]:
    """(a, b) with a in `first`, b in `second` of the same seed and width."""
    index = {(r.seed, r.width): r for r in second}
    return [(a, index[(a.seed, a.width)]) for a in first if (a.seed, a.width) in index]


def twin_differences(study: Study, select, quantity, arch: str = CNN) -> Evidence:
    """quantity(twin) - quantity(baseline) over (baseline, twin) seed pairs of `arch`."""
    pairs = [(b, t) for b, t in study.twins(select) if b.arch == arch]
    if not pairs:
        return Evidence(reason="no (baseline, twin) pairs in the zoo")
    return _values([quantity(t) - quantity(b) for b, t in pairs], pairs=[[b.name, t.name] for b, t in pairs])


# --- the claims ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A claim of a paper: the statistic that tests it, the predicted direction (`kind`: increase,
    decrease, none), the margin of no effect and its source, and the roles it reads."""

    claim: str
    paper: str
    statement: str
    statistic: str
    kind: str
    evidence: Callable[[Study, Design, StudyContext], Evidence]
    margin: float
    margin_source: str
    reads: frozenset[str]

    @property
    def family(self) -> str:
        """`primary` (the pre-registered set, `PRIMARY_CLAIMS`) or `secondary`: Holm's family."""
        return "primary" if self.claim in PRIMARY_CLAIMS else "secondary"

    def prediction(self) -> str:
        if self.kind == "none":
            return f"within +-{self.margin:g} of 0"
        return "above 0" if self.kind == "increase" else "below 0"


KA = "Kaufman & Azencot 2023"
PHD = "Papyan, Han & Donoho 2020"
EW = "E & Wojtowytsch 2021"
PAPYAN = "Papyan 2020"
FORT = "Fort et al. 2022"
CURVATURE = frozenset({"curvature"})
COLLAPSE = frozenset({"collapse", "epochs"})
SPECTRA = frozenset({"spectra", "epochs"})
PLANES = frozenset({"cutting-planes"})


def _per_run(arch: str, quantity: Callable[[ModelRecord, Design, StudyContext], float]):
    def evidence(study: Study, design: Design, context: StudyContext) -> Evidence:
        runs = baselines(study, arch)
        if not runs:
            return Evidence(reason=f"no trained {arch} baselines in the zoo")
        return _values([quantity(r, design, context) for r in runs], runs=[r.name for r in runs])

    return evidence


def _ka_untrained(study: Study, design: Design, context: StudyContext) -> Evidence:
    return twin_differences(study, lambda r: not r.trained, lambda r: -final_rise(r, design, context))


def _ka_mixup(study: Study, design: Design, context: StudyContext) -> Evidence:
    mixed = lambda r: r.mixup > 0 and r.label_noise == 0 and r.label_smoothing == 0  # noqa: E731
    return twin_differences(study, mixed, lambda r: plateau_level(r, design, context))


def _ka_gap(study: Study, design: Design, _context: StudyContext) -> Evidence:
    lengths = {b.epochs for b in deep_baselines(study)}
    runs = [r for r in study.trained if r.arch == CNN and r.epochs in lengths]
    return _pairs([r.summary(design.probe("curvature"), "curvature_gap") for r in runs],
                  [math.nan if r.test_accuracy is None else r.test_accuracy for r in runs],
                  runs=[r.name for r in runs])  # fmt: skip


def _ka_id(study: Study, design: Design, _context: StudyContext) -> Evidence:
    values = []
    for r in deep_baselines(study):
        ids = r.metric_profile("id", "id_twonn")
        mapc = r.metric_profile(design.probe("curvature"), "mapc")
        ok = np.isfinite(ids) & np.isfinite(mapc) if len(ids) == len(mapc) else np.zeros(0, bool)
        values.append(rank_correlation(ids[ok], mapc[ok]).value if ok.sum() >= 3 else math.nan)
    return _values(values)


def _collapse(metric: str, *, logarithmic: bool = True):
    def evidence(study: Study, design: Design, _context: StudyContext) -> Evidence:
        return tpt_change(study, design, lambda r: r.classifier_metric(design.probe("collapse"), metric),
                          logarithmic=logarithmic)  # fmt: skip

    return evidence


def _tpt_accuracy(study: Study, design: Design, _context: StudyContext) -> Evidence:
    return tpt_change(study, design, lambda r: math.nan if r.test_accuracy is None else r.test_accuracy,
                      logarithmic=False)  # fmt: skip


def _ew(metric: str, layer: str):
    def evidence(study: Study, design: Design, _context: StudyContext) -> Evidence:
        key = design.probe("collapse")

        def read(r: ModelRecord) -> float:
            if layer == "penultimate":
                return log10(r.classifier_metric(key, metric))
            profile = r.metric_profile(key, metric)
            return log10(profile[-1]) if len(profile) else math.nan

        pairs = seed_pairs(
            baselines(study, MLP, 1), [r for r in baselines(study, MLP) if (r.depth or 0) >= 2]
        )
        if not pairs:
            return Evidence(reason="no (one-hidden-layer, deep) MLP pairs of one seed and width")
        return _values([read(s) - read(d) for s, d in pairs], pairs=[[s.name, d.name] for s, d in pairs])

    return evidence


def _papyan_outliers(study: Study, design: Design, context: StudyContext) -> Evidence:
    target = context.num_classes - 0.5  # C - 1 and C both count: +-0.5 around their midpoint
    counts = [
        r.classifier_metric(design.probe("spectra"), "n_outliers") - target
        for r in deep_baselines(study, design)
    ]
    return _values(counts)


def _papyan_depth(metric: str):
    def evidence(study: Study, design: Design, _context: StudyContext) -> Evidence:
        return _values([depth_rho(r.metric_profile(design.probe("spectra"), metric)[:-1])
                        for r in deep_baselines(study, design)])  # fmt: skip

    return evidence


def _papyan_fisher(study: Study, design: Design, _context: StudyContext) -> Evidence:
    runs = [r for r in study.trained if r.arch == CNN]
    key = design.probe("spectra")
    return _pairs([log10(r.classifier_metric(key, "fisher_outlier_bulk_ratio")) for r in runs],
                  [math.nan if r.test_accuracy is None else 1 - r.test_accuracy for r in runs],
                  runs=[r.name for r in runs])  # fmt: skip


def _papyan_cross(study: Study, design: Design, context: StudyContext) -> Evidence:
    return _values([r.classifier_metric(design.probe("spectra"), "fisher_n_outliers") - context.num_classes
                    for r in deep_baselines(study, design)])  # fmt: skip


def _fort_training(study: Study, design: Design, _context: StudyContext) -> Evidence:
    values = []
    for members in study.runs().values():
        if members[-1].arch == MLP:
            dims = np.array([manifold_dim(m, design) for m in members])
            values.append(depth_rho(dims))  # the index is the saved epoch's order
    return _values(values) if values else Evidence(reason="no MLP run with cutting planes at saved epochs")


def _fort_ensembles(_study: Study, _design: Design, context: StudyContext) -> Evidence:
    gains = dict(context.ensemble_gains)
    return (
        _values(list(gains.values()), ensembles=list(gains))
        if gains
        else Evidence(reason="no ensembles measured")
    )


def _fort_series(attribute: str, predictor: Callable[[ModelRecord], float] | None = None):
    def evidence(study: Study, design: Design, _context: StudyContext) -> Evidence:
        runs = [r for r in study.series(attribute, MLP) if np.isfinite(manifold_dim(r, design))]
        read = predictor or (lambda r: float(getattr(r, attribute)))
        return _pairs(
            [read(r) for r in runs], [manifold_dim(r, design) for r in runs], runs=[r.name for r in runs]
        )

    return evidence


def _fort_across(predictor: Callable[[ModelRecord], float]):
    def evidence(study: Study, design: Design, _context: StudyContext) -> Evidence:
        runs = [r for r in study.trained if r.arch == MLP and np.isfinite(manifold_dim(r, design))]
        return _pairs([predictor(r) for r in runs], [manifold_dim(r, design) for r in runs],
                      runs=[r.name for r in runs])  # fmt: skip

    return evidence


def _accuracy(r: ModelRecord) -> float:
    return math.nan if r.test_accuracy is None else r.test_accuracy


def _width_series(study: Study, design: Design, _context: StudyContext) -> Evidence:
    runs = [r for r in baselines(study, MLP) if (r.depth or 0) >= 2 and np.isfinite(manifold_dim(r, design))]
    return _pairs([float(r.width or 0) for r in runs], [manifold_dim(r, design) for r in runs],
                  runs=[r.name for r in runs])  # fmt: skip


def _claim(
    claim, paper, statement, statistic, kind, evidence, reads, margin=DECADE_MARGIN, source=DECADE_SOURCE
):
    return Claim(claim, paper, statement, statistic, kind, evidence, margin, source, reads)


CLAIMS: tuple[Claim, ...] = (
    _claim("ka-initial-rise", KA,
           "Trained networks' curvature rises steeply from the input to the first layers.",
           "per CNN baseline run: log10(raw MAPC of the first layer / the input's)", "increase",
           _per_run(CNN, initial_rise), CURVATURE),
    _claim("ka-plateau", KA, "After the first layers the curvature profile stays on a plateau until the end.",
           "per CNN baseline run: final rise minus the hidden layers' spread log10(max / min raw MAPC)",
           "increase", _per_run(CNN, plateau_flatness), CURVATURE),
    _claim("ka-final-rise", KA, "Trained networks' curvature profile ends in a sharp rise at the last layer.",
           "per CNN baseline run: log10(raw MAPC of the logits / median of the hidden layers')", "increase",
           _per_run(CNN, final_rise), CURVATURE),
    _claim("ka-final-rise-resnet", KA, "The profile is the same across architectures: the final rise also "
           "appears in a residual network.", "per small-resnet baseline run: the final rise of ka-final-rise",
           "increase", _per_run(RESNET, final_rise), CURVATURE),
    _claim("ka-untrained-flat", KA, "Untrained networks do not show the trained profile: their curvature "
           "does not rise at the end.", "per seed: final rise of the trained CNN minus its untrained twin's",
           "increase", _ka_untrained, CURVATURE),
    _claim("ka-gap-accuracy", KA, "The curvature gap between the last two layers is larger for networks "
           "that generalise better.", "Spearman rho over CNN runs of one length (baselines, mixup, label "
           "noise, training-set sizes) of curvature_gap (raw MAPC, logits minus penultimate) and test "
           "accuracy", "increase", _ka_gap, CURVATURE, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("ka-mixup-flattens", KA, "Mixup lowers the curvature of the plateau.",
           "per seed: log10 median hidden-layer raw MAPC, mixup twin minus baseline", "decrease", _ka_mixup,
           CURVATURE),
    _claim("ka-id-not-curvature", KA, "Intrinsic dimension and curvature are not related: one does not "
           "predict the other.", "per CNN baseline run: Spearman rho over layers of TwoNN ID and raw MAPC",
           "none", _ka_id, CURVATURE | {"id"}, MEDIUM_CORRELATION, "|rho| 0.3, a medium effect (Cohen 1988): "
           "a weaker relation counts as none"),
    _claim("phd-nc1", PHD,
           "Within-class variability collapses: NC1 falls towards 0 during the terminal phase.",
           "per CNN baseline run: log10 NC1 (own training images), last checkpoint minus the terminal "
           "phase's first", "decrease", _collapse("nc1"), COLLAPSE),
    _claim("phd-etf", PHD, "The centred class means converge to a simplex equiangular tight frame.",
           "per CNN baseline run: log10 etf_distance, end minus start of the terminal phase", "decrease",
           _collapse("etf_distance"), COLLAPSE),
    _claim("phd-classifier-etf", PHD, "The classifier's rows also converge to a simplex ETF (equal norms, "
           "maximal equal angles).",
           "per CNN baseline run: log10 nc2_max_angle_weights (mean |cos + 1/(C-1)| "
           "between classifier rows), end minus start of the terminal phase", "decrease",
           _collapse("nc2_max_angle_weights"), COLLAPSE),
    _claim("phd-self-duality", PHD, "The classifier rows converge to the class means, up to scale "
           "(self-duality).", "per CNN baseline run: log10 nc3_self_duality, end minus start of the "
           "terminal phase", "decrease", _collapse("nc3_self_duality"), COLLAPSE),
    _claim("phd-ncc", PHD, "The classifier's decisions converge to those of the nearest class centre.",
           "per CNN baseline run: nc4_ncc_mismatch (share of samples), end minus start of the terminal "
           "phase", "decrease", _collapse("nc4_ncc_mismatch", logarithmic=False), COLLAPSE, 0.005,
           "0.5 % of the samples (5 of 1,000 training images): below it the rule cannot be told apart"),
    _claim("phd-tpt-accuracy", PHD, "Training on through the terminal phase still improves test accuracy.",
           "per CNN baseline run: test accuracy (whole test split), end minus start of the terminal "
           "phase", "increase", _tpt_accuracy, frozenset({"epochs"}), 0.002,
           "0.2 percentage points (20 of 10,000 test images), our choice: a change too small to report"),
    _claim("ew-deep-collapse", EW, "Deep networks collapse each class at the penultimate layer; a network "
           "with one hidden layer does not.", "per (seed, width): log10 NC1 at the penultimate layer, "
           "one-hidden-layer MLP minus deep MLP", "increase", _ew("nc1", "penultimate"), COLLAPSE),
    _claim("ew-simplex", EW, "Deep networks' class means form a regular simplex; a one-hidden-layer "
           "network's need not.", "per (seed, width): log10 etf_distance at the penultimate layer, "
           "one-hidden-layer MLP minus deep MLP", "increase", _ew("etf_distance", "penultimate"), COLLAPSE),
    _claim("ew-shallow-output", EW, "A one-hidden-layer network's outputs do not collapse to the simplex "
           "vertices the deep network's do.", "per (seed, width): log10 NC1 at the logits, "
           "one-hidden-layer MLP minus deep MLP", "increase", _ew("nc1", "logits"), COLLAPSE),
    _claim("papyan-outliers", PAPYAN, "The feature covariance of a deep net's last hidden layer has C (or "
           "C - 1) outliers above the bulk, one per class mean.", "per CNN baseline run: n_outliers at the "
           "penultimate layer minus (C - 0.5)", "none", _papyan_outliers, SPECTRA, 1.0,
           "C - 1 and C both agree with the paper: the count within C - 0.5 +- 1"),
    _claim("papyan-depth", PAPYAN, "With depth, the class means' share of the variance grows: the outliers "
           "separate from the bulk.", "per CNN baseline run: Spearman rho of layer index and "
           "outlier_variance_share over the hidden layers", "increase",
           _papyan_depth("outlier_variance_share"),
           SPECTRA, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("papyan-orthogonal", PAPYAN, "With depth the centred class means become more nearly orthogonal.",
           "per CNN baseline run: Spearman rho of layer index and class_means_abs_cos over the hidden layers",
           "decrease", _papyan_depth("class_means_abs_cos"), SPECTRA, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("papyan-fisher", PAPYAN, "The separation of the class outliers from the bulk predicts "
           "misclassification.",
           "Spearman rho over CNN runs of log10 fisher_outlier_bulk_ratio and test error",
           "decrease", _papyan_fisher, frozenset({"spectra"}), SMALL_CORRELATION, SMALL_SOURCE),
    _claim("papyan-cross-class", PAPYAN, "Beside the C class outliers, the C(C-1) cross-class terms give "
           "further outliers (a mini-bulk) in the classifier's Fisher spectrum.", "per CNN baseline run: "
           "fisher_n_outliers minus C", "increase", _papyan_cross, SPECTRA, 0.5,
           "half an eigenvalue: any cross-class outlier at all counts"),
    _claim("fort-training", FORT, "Class manifolds grow in dimension as training proceeds.",
           "per MLP run: Spearman rho of saved epoch and mean class-manifold dimension", "increase",
           _fort_training, PLANES, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("fort-ensembles", FORT, "An ensemble's class manifolds have a higher dimension than its members'.",
           "per disjoint pair of MLP seeds: mean class-manifold dimension of the pair's averaged-probability "
           "ensemble minus its members' mean", "increase", _fort_ensembles, PLANES, 1.0,
           "one dimension: the resolution of the cutting-plane grid near the critical dimension is coarser"),
    _claim("fort-accuracy", FORT, "Better models have higher-dimensional class manifolds.",
           "Spearman rho over trained MLP runs of test accuracy and mean class-manifold dimension",
           "increase", _fort_across(_accuracy), PLANES, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("fort-width", FORT, "Wider networks have higher-dimensional class manifolds.",
           "Spearman rho over deep MLP baselines of width and mean class-manifold dimension", "increase",
           _width_series, PLANES, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("fort-label-noise", FORT, "Label randomisation lowers the class-manifold dimension.",
           "Spearman rho over MLP runs of the label-noise fraction and mean class-manifold dimension",
           "decrease", _fort_series("label_noise"), PLANES, SMALL_CORRELATION, SMALL_SOURCE),
    _claim("fort-train-size", FORT, "More training data raises the class-manifold dimension.",
           "Spearman rho over MLP runs of the training-set size and mean class-manifold dimension",
           "increase",
           _fort_series("train_size"), PLANES, SMALL_CORRELATION, SMALL_SOURCE),
)  # fmt: skip
"""Every claim tested, in the order of the findings page (docs/claims.md quotes each source)."""

PRIMARY_CLAIMS: tuple[str, ...] = (
    "ka-final-rise",
    "ka-gap-accuracy",
    "phd-nc1",
    "ew-deep-collapse",
    "papyan-outliers",
    "fort-training",
)
"""The pre-registered primary claims (docs/claims.md#the-primary-claims): each paper's headline, six
so that eight runs can pass Holm's correction (the sign-flip test's smallest p, 2 / 2^8 = 0.0078, is
below 0.05 / 6); the other claims form the secondary family, adjusted among themselves."""


def decide_all(
    study: Study, context: StudyContext, design: Design, *, seed: int = 0
) -> list[tuple[Inference | None, str, float | None, str, Evidence]]:
    """(inference, reason, Holm-adjusted p, verdict, evidence) of every claim under one design."""
    evidence = [claim.evidence(study, design, context) for claim in CLAIMS]
    inferred = [item.infer(seed) for item in evidence]
    p_values = np.array([np.nan if inf is None else inf.p_value for inf, _ in inferred])
    adjusted = np.full(len(CLAIMS), np.nan)
    for family in ("primary", "secondary"):
        members = np.array([claim.family == family for claim in CLAIMS])
        adjusted[members] = holm(p_values[members])
    decided = []
    for claim, (inf, reason), p, item in zip(CLAIMS, inferred, adjusted, evidence, strict=True):
        p_adj = None if inf is None else float(p)
        outcome = verdict(claim.kind, None if inf is None else inf.value,
                          None if inf is None else inf.equivalence_interval, p_adj, claim.margin)  # fmt: skip
        decided.append((inf, reason, p_adj, outcome, item))
    return decided


def _reason(claim: Claim, inf: Inference | None, p_adj: float | None, outcome: str, reason: str) -> str:
    if reason:
        return reason
    if outcome == "inconclusive" and inf is not None:
        if inf.interval is None:
            return f"{inf.n} runs give no finite 95 % interval (six or more are needed)"
        if inf.p_value < ALPHA <= (p_adj or 1.0):
            return f"significant alone, not after Holm's correction across the {claim.family} claims"
        return "the interval reaches both sides of 0 and beyond the margin"
    if outcome in ("equivalent to no effect", "supported") and claim.kind in ("increase", "none"):
        if outcome == "equivalent to no effect" or claim.kind == "none":
            return f"the 90 % interval lies within +-{claim.margin:g}"
    return ""


def _reading(inf: Inference | None, outcome: str) -> dict[str, Any]:
    """One design's verdict with its effect, 95 % interval and runs (the robustness row)."""
    return {"verdict": outcome, "value": None if inf is None else inf.value,
            "interval": None if inf is None or inf.interval is None else list(inf.interval),
            "n": 0 if inf is None else inf.n}  # fmt: skip


def evaluate_claims(
    study: Study, context: StudyContext, *, seed: int = 0, designs: Sequence[Design] = ALTERNATIVES
) -> list[Finding]:
    """Every claim of CLAIMS tested on the study under the primary design, each re-decided under
    every design of `designs` that reads one of its roles differently (its robustness)."""
    primary = decide_all(study, context, PRIMARY, seed=seed)
    others = {design.name: (design, decide_all(study, context, design, seed=seed)) for design in designs}
    findings = []
    for index, (claim, (inf, reason, p_adj, outcome, item)) in enumerate(zip(CLAIMS, primary, strict=True)):
        readings = {PRIMARY.name: _reading(inf, outcome)}
        for name, (design, decided) in others.items():
            if design.varies & claim.reads:
                readings[name] = _reading(decided[index][0], decided[index][3])
        decided_by = {k: d["verdict"] for k, d in readings.items() if d["n"] or k == PRIMARY.name}
        findings.append(
            Finding(
                claim=claim.claim, paper=claim.paper, statement=claim.statement, statistic=claim.statistic,
                prediction=claim.prediction(), margin=claim.margin, margin_source=claim.margin_source,
                family=claim.family,
                value=None if inf is None else inf.value, interval=None if inf is None else inf.interval,
                equivalence_interval=None if inf is None else inf.equivalence_interval,
                p_value=None if inf is None else inf.p_value, p_adjusted=p_adj,
                n=0 if inf is None else inf.n, verdict=outcome,
                reason=_reason(claim, inf, p_adj, outcome, reason),
                method="" if inf is None else inf.method, robustness=robustness(decided_by),
                designs=readings,
                details={**item.details, "per_run": list(item.values) if item.values is not None else
                         [list(item.x or ()), list(item.y or ())]},
            )
        )  # fmt: skip
    return findings


def ensemble_pairs(study: Study) -> list[list[ModelRecord]]:
    """Disjoint pairs of the deep MLP baselines of the width with the most seeds (seeds in order:
    (s0, s1), (s2, s3), ...), the ensembles of fort-ensembles: disjoint, so that each pair's gain
    is independent of the others'."""
    deep = [r for r in baselines(study, MLP) if (r.depth or 0) >= 2]
    groups = group_by(deep, lambda r: (r.width, r.epochs))
    if not groups:
        return []
    members = sorted(max(groups.values(), key=len), key=lambda r: r.seed)
    return [members[i : i + 2] for i in range(0, len(members) - 1, 2)]
