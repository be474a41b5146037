"""Claims: the verdict rules, each claim's statistic against a hand computation on a synthetic
study, and `mprobe claims --preset tiny` on digits end to end."""

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from manifold_probe.errors import InputError
from manifold_probe.results import LayerResult, Result
from manifold_probe.study.claims.design import design
from manifold_probe.study.claims.evidence import Study, record_from_checkpoint
from manifold_probe.study.claims.verdicts import CLAIMS, TPT_ERROR, StudyContext, decide, evaluate_claims

LAYERS = ("block1", "block2", "block3", "pool", "logits")


@pytest.mark.parametrize(
    "interval, kind, margin, bounds, expected",
    [
        ((0.1, 0.5), "increase", 0.3, None, "supported"),
        ((-0.5, -0.1), "increase", 0.3, None, "not supported"),
        ((-0.2, 0.25), "increase", 0.3, None, "not supported"),  # too small to matter
        ((-0.2, 0.6), "increase", 0.3, None, "inconclusive"),
        ((-0.5, -0.1), "decrease", 0.3, None, "supported"),
        ((0.1, 0.5), "decrease", 0.3, None, "not supported"),
        ((-0.2, 0.2), "none", 0.3, None, "supported"),
        ((0.05, 0.2), "none", 0.3, None, "supported"),  # a relation too weak to matter
        ((0.05, 0.5), "none", 0.3, None, "not supported"),
        ((-0.1, 0.5), "none", 0.3, None, "inconclusive"),
        ((8.6, 9.2), "within", 0, (8.5, 10.5), "supported"),
        ((3.0, 5.0), "within", 0, (8.5, 10.5), "not supported"),
        ((8.0, 9.0), "within", 0, (8.5, 10.5), "inconclusive"),
        (None, "increase", 0.3, None, "inconclusive"),
    ],
)
def test_verdict_rules(interval, kind, margin, bounds, expected):
    assert decide(interval, kind, margin=margin, bounds=bounds) == expected


def _layers(metrics_by_layer: dict[str, dict]) -> list[LayerResult]:
    return [
        LayerResult(name=name, index=i, depth=i / 4, ambient_dim=8, n_points=100, metrics=metrics)
        for i, (name, metrics) in enumerate(metrics_by_layer.items())
    ]


def _record(name, *, arch="digits-cnn", width=8, depth=3, seed=0, epoch=10, epochs=10, mixup=0.0,
            label_noise=0.0, train_size=1000, train_accuracy=1.0, test_accuracy=0.9, rng):  # fmt: skip
    """A checkpoint record whose probe results are random numbers (the statistics are then
    recomputed by hand from the same numbers)."""
    metadata = {
        "arch": arch, "epoch": epoch, "seed": seed,
        "arch_args": {"width": width, "depth": depth, "num_classes": 10},
        "training": {"epochs": epochs, "seed": seed, "batch_size": 64, "train_size": train_size,
                     "mixup": mixup, "label_smoothing": 0.0, "label_noise": label_noise},
        "metrics": {"train_accuracy": train_accuracy, "test_accuracy": test_accuracy},
    }  # fmt: skip
    curvature = Result(
        "curvature",
        {},
        {},
        _layers({n: {"mapc_scaled": float(rng.uniform(0.05, 3))} for n in LAYERS}),
        summary={"curvature_gap": float(rng.normal())},
    )
    ids = Result("id", {}, {}, _layers({n: {"id_twonn": float(rng.uniform(2, 20))} for n in LAYERS}))
    collapse_metrics = {m: float(rng.uniform(0.01, 1)) for m in ("nc1", "etf_distance", "nc3_self_duality")}
    collapse_metrics["nc4_ncc_mismatch"] = float(rng.uniform(0, 0.02))
    collapse = Result("collapse", {}, {}, _layers({n: dict(collapse_metrics) for n in LAYERS}),
                      summary={"classifier": {"layer": "pool"}})  # fmt: skip
    spectra_layers = {
        n: {"n_outliers": float(rng.integers(7, 11)), "outlier_variance_share": float(rng.uniform()),
            "fisher_outlier_bulk_ratio": float(rng.uniform(0.5, 20))}
        for n in LAYERS
    }  # fmt: skip
    spectra = Result("spectra", {}, {}, _layers(spectra_layers), summary={"classifier": {"layer": "pool"}})
    planes = Result("cutting-planes", {}, {}, summary={"mean_manifold_dim": float(rng.uniform(10, 60))})
    results = {"curvature": curvature, "id": ids, "collapse": collapse, "spectra": spectra,
               "cutting-planes": planes}  # fmt: skip
    return record_from_checkpoint(name, metadata, results)


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(0)
    records = []
    for seed in (0, 1, 2):
        base = f"cnn-s{seed}"
        for epoch, accuracy in ((3, 0.9), (6, 0.997), (9, 1.0)):
            name = f"{base}-epoch{epoch:03d}"
            records.append(_record(name, seed=seed, epoch=epoch, train_accuracy=accuracy, rng=rng))
        records.append(_record(base, seed=seed, test_accuracy=0.9 + 0.01 * seed, rng=rng))
        records.append(_record(f"cnn-e0-s{seed}", seed=seed, epoch=0, epochs=0, train_accuracy=0.1,
                               test_accuracy=0.1, rng=rng))  # fmt: skip
        records.append(_record(f"cnn-mix-s{seed}", seed=seed, mixup=0.4, test_accuracy=0.88, rng=rng))
    for level in (0.2, 0.5):
        noisy = _record(f"cnn-ln{level}", label_noise=level, train_accuracy=0.8, test_accuracy=0.7, rng=rng)
        records.append(noisy)
    for size in (100, 300):
        records.append(_record(f"cnn-n{size}", train_size=size, test_accuracy=0.6, rng=rng))
    records.append(_record("cnn-e1", epoch=1, epochs=1, train_accuracy=0.5, test_accuracy=0.5, rng=rng))
    for width in (32, 64):
        records.append(_record(f"mlp-w{width}", arch="digits-mlp", width=width, depth=1, rng=rng))
    return Study(tuple(records))


def _by_name(study, name):
    return next(r for r in study.records if r.name == name)


def test_comparisons_are_found_from_the_settings(study):
    assert sorted(r.name for r in study.baselines()) == ["cnn-s0", "cnn-s1", "cnn-s2", "mlp-w32", "mlp-w64"]
    assert sorted(study.runs()) == ["cnn-s0", "cnn-s1", "cnn-s2"]
    assert [r.epoch for r in study.runs()["cnn-s1"]] == [3, 6, 9, 10]
    assert {(b.name, m.name) for b, m in study.twins(lambda r: r.mixup > 0)} == {
        (f"cnn-s{s}", f"cnn-mix-s{s}") for s in (0, 1, 2)
    }
    assert sorted(r.name for r in study.series("label_noise")) == ["cnn-ln0.2", "cnn-ln0.5", "cnn-s0",
                                                                    "cnn-s1", "cnn-s2"]  # fmt: skip
    assert sorted(r.name for r in study.series("train_size")) == ["cnn-n100", "cnn-n300", "cnn-s0",
                                                                   "cnn-s1", "cnn-s2"]  # fmt: skip


def _final_rise(record):
    profile = np.array([layer.metrics["mapc_scaled"] for layer in record.results["curvature"].layers])
    return math.log10(profile[-1] / np.median(profile[:-1]))


def _plateau(record):
    profile = np.array([layer.metrics["mapc_scaled"] for layer in record.results["curvature"].layers])
    return math.log10(np.median(profile[1:-1]))


def _cls(record, probe, metric):
    return record.results[probe].layer("pool").metrics[metric]


def _rho(x, y):
    return spearmanr(x, y).statistic


def test_each_statistic_equals_a_hand_computation(study):
    ensembles = ((1, 20.0), (1, 22.0), (1, 21.0), (2, 25.0), (2, 24.0), (2, 27.0), (3, 30.0))
    findings = {f.claim: f for f in evaluate_claims(study, StudyContext(10, ensembles), seed=0)}
    assert list(findings) == [claim.claim for claim in CLAIMS]
    trained = [r for r in study.records if r.final and r.epoch > 0]
    by = lambda name: _by_name(study, name)  # noqa: E731
    pairs_untrained = [(by(f"cnn-s{s}"), by(f"cnn-e0-s{s}")) for s in (0, 1, 2)]
    pairs_mixup = [(by(f"cnn-s{s}"), by(f"cnn-mix-s{s}")) for s in (0, 1, 2)]
    deep = [by(f"cnn-s{s}") for s in (0, 1, 2)]
    shallow = [by("mlp-w32"), by("mlp-w64")]
    hand = {
        "ka-final-rise": np.mean([_final_rise(r) for r in trained]),
        "ka-untrained-flat": np.mean([_final_rise(a) - _final_rise(b) for a, b in pairs_untrained]),
        "ka-gap-accuracy": _rho(
            [r.results["curvature"].summary["curvature_gap"] for r in trained],
            [r.test_accuracy for r in trained],
        ),  # fmt: skip
        "ka-mixup-flattens": np.mean([_plateau(m) - _plateau(b) for b, m in pairs_mixup]),
        "ka-id-not-curvature": _rho(
            [layer.metrics["id_twonn"] for r in trained for layer in r.results["id"].layers[:-1]],
            [layer.metrics["mapc_scaled"] for r in trained for layer in r.results["curvature"].layers[:-1]],
        ),
        "ew-deep-collapse": np.mean([math.log10(_cls(r, "collapse", "nc1")) for r in shallow])
        - np.mean([math.log10(_cls(r, "collapse", "nc1")) for r in deep]),
        "ew-simplex": np.mean([math.log10(_cls(r, "collapse", "etf_distance")) for r in shallow])
        - np.mean([math.log10(_cls(r, "collapse", "etf_distance")) for r in deep]),
        "phd-ncc": np.mean([_cls(r, "collapse", "nc4_ncc_mismatch") for r in deep]),
        "papyan-outliers": np.mean([_cls(r, "spectra", "n_outliers") for r in deep]),
        "papyan-fisher": np.mean([math.log10(_cls(r, "spectra", "fisher_outlier_bulk_ratio")) for r in deep]),
        "papyan-depth": np.mean(
            [
                _rho(
                    range(4), [x.metrics["outlier_variance_share"] for x in r.results["spectra"].layers[:-1]]
                )
                for r in deep
            ]
        ),  # fmt: skip
        "fort-ensembles": _rho([s for s, _ in ensembles], [d for _, d in ensembles]),
    }
    noise = study.series("label_noise")
    dims = [r.results["cutting-planes"].summary["mean_manifold_dim"] for r in noise]
    hand["fort-label-noise"] = _rho([r.label_noise for r in noise], dims)
    # terminal phase: training error <= TPT_ERROR from epoch 6 (0.997) on; log10 NC1 centred per run
    epochs, values = [], []
    for seed in (0, 1, 2):
        run = [by(f"cnn-s{seed}-epoch006"), by(f"cnn-s{seed}-epoch009"), by(f"cnn-s{seed}")]
        assert all(r.train_accuracy >= 1 - TPT_ERROR for r in run)
        logs = np.log10([_cls(r, "collapse", "nc1") for r in run])
        epochs += [r.epoch for r in run]
        values += list(logs - logs.mean())
    hand["phd-nc1"] = _rho(epochs, values)
    for claim, expected in hand.items():
        assert findings[claim].value == pytest.approx(expected, rel=1e-9, abs=1e-12), claim
        assert findings[claim].interval is not None, claim
    assert findings["phd-nc1"].n == 9 and findings["ka-untrained-flat"].n == 3
    assert findings["papyan-outliers"].prediction == "within [8.5, 10.5]"
    for claim in CLAIMS:
        bounds = (8.5, 10.5) if claim.claim == "papyan-outliers" else (0.0, 0.05)
        found = findings[claim.claim]
        assert found.verdict == decide(found.interval, claim.kind, margin=claim.margin, bounds=bounds)


def test_missing_models_give_inconclusive_with_a_reason(study):
    only_baselines = Study(tuple(r for r in study.records if r.name in ("cnn-s0", "cnn-s1")))
    findings = {f.claim: f for f in evaluate_claims(only_baselines, StudyContext(10), seed=0)}
    for claim in ("ka-untrained-flat", "ka-mixup-flattens", "ew-deep-collapse", "fort-ensembles", "phd-nc1"):
        assert findings[claim].verdict == "inconclusive" and findings[claim].reason, claim
        assert findings[claim].interval is None


def test_unknown_preset_is_an_input_error():
    with pytest.raises(InputError, match="did you mean tiny"):
        design("tinny")
    names = [m.name(0) for m in design("small").models]
    assert len(names) == len(set(names))


def test_claims_tiny_on_digits_end_to_end(tmp_path):
    from manifold_probe_cli.main import main

    out = tmp_path / "claims"
    assert main(["claims", "--data", "digits", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    written = json.loads((out / "claims.json").read_text())
    findings = written["summary"]["findings"]
    assert [f["claim"] for f in findings] == [claim.claim for claim in CLAIMS]
    for f in findings:
        assert f["verdict"] in ("supported", "not supported", "inconclusive")
        assert f["interval"] is not None or f["reason"], f["claim"]
    page = (out / "index.html").read_text()
    assert "ka-gap-accuracy" in page and "Findings" in page
    # every checkpoint, probe result and cutting-planes result is reused (the indexes are rewritten)
    indexes = ("claims.json", "zoo.json")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name not in indexes}
    assert main(["claims", "--data", "digits", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # a second run reuses everything
    assert json.loads((out / "claims.json").read_text())["summary"]["findings"] == findings


def test_an_effect_within_the_margin_is_not_supported_and_says_why():
    from manifold_probe.study.claims.verdicts import Claim, Estimate

    def tiny(study, seed, context):
        return Estimate(0.01, (-0.05, 0.08), 5)

    claim = Claim("x", "paper", "statement", "statistic", "increase", tiny, margin=0.1)
    finding = claim.evaluate(Study(()), StudyContext(10), seed=0)
    assert finding.verdict == "not supported" and "too small to matter" in finding.reason


def test_the_small_preset_measures_only_the_planes_its_claims_read(study):
    from dataclasses import replace

    from manifold_probe.study.claims.study import plane_jobs

    every = plane_jobs(study, replace(design("small"), plane_runs=None, nested_ensembles=False))
    small = plane_jobs(study, design("small"))
    assert [len(m) for m in every].count(1) == 16 and sorted(len(m) for m in every)[-4:] == [2, 2, 2, 3]
    singles = sorted(m[0].name for m in small if len(m) == 1)
    expected = ["cnn-s0", "cnn-s1", "cnn-s2", "cnn-s0-epoch003", "cnn-s0-epoch006", "cnn-s0-epoch009",
                "cnn-ln0.2", "cnn-ln0.5", "cnn-n100", "cnn-n300"]  # fmt: skip
    assert singles == sorted(expected)
    ensembles = [[r.name for r in m] for m in small if len(m) > 1]
    assert ensembles == [["cnn-s0", "cnn-s1"], ["cnn-s0", "cnn-s1", "cnn-s2"]]
    plan = design("small")
    assert plan.planes["steps"] == 300 and plan.plane_classes == (0, 1, 6)
    tiny = design("tiny")  # unchanged: every run, every ensemble, the measure's own step cap
    assert tiny.plane_runs is None and not tiny.nested_ensembles and "steps" not in tiny.planes
