"""Claims: each claim's per-run evidence against a hand computation on a synthetic study, the
verdicts with Holm's correction and the robustness row, the presets, and `mprobe claims --preset
tiny` on digits end to end. (The statistics themselves: tests/test_claims_inference.py.)"""

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from manifold_probe.errors import InputError
from manifold_probe.results import LayerResult, Result
from manifold_probe.study.claims.design import design
from manifold_probe.study.claims.evidence import Study, record_from_checkpoint
from manifold_probe.study.claims.inference import holm, location, rank_correlation, verdict
from manifold_probe.study.claims.verdicts import (
    CLAIMS,
    PRIMARY_CLAIMS,
    TPT_ERROR,
    StudyContext,
    ensemble_pairs,
    evaluate_claims,
)

CNN_LAYERS = ("block1", "block2", "block3", "pool", "logits")
MLP_LAYERS = ("hidden1", "hidden2", "hidden3", "logits")
SEEDS = range(6)


def _layers(metrics_by_layer: dict[str, dict]) -> list[LayerResult]:
    return [
        LayerResult(name=name, index=i, depth=i / 4, ambient_dim=8, n_points=100, metrics=metrics)
        for i, (name, metrics) in enumerate(metrics_by_layer.items())
    ]


def _results(rng, layers, classifier):
    """Random probe results under every key a record can have."""

    def curvature():
        return Result(
            "curvature",
            {},
            {},
            _layers({n: {"mapc": float(rng.uniform(0.05, 3))} for n in layers}),
            summary={"curvature_gap": float(rng.normal())},
        )

    def collapse():
        metrics = {
            n: {
                m: float(rng.uniform(0.01, 1))
                for m in ("nc1", "etf_distance", "nc3_self_duality", "nc2_max_angle_weights")
            }
            for n in layers
        }
        for n in layers:
            metrics[n]["nc4_ncc_mismatch"] = float(rng.uniform(0, 0.02))
        return Result("collapse", {}, {}, _layers(metrics), summary={"classifier": {"layer": classifier}})

    def spectra():
        metrics = {
            n: {
                "n_outliers": float(rng.integers(8, 11)),
                "outlier_variance_share": float(rng.uniform()),
                "class_means_abs_cos": float(rng.uniform()),
                "fisher_outlier_bulk_ratio": float(rng.uniform(0.5, 20)),
                "fisher_n_outliers": float(rng.integers(9, 14)),
            }
            for n in layers
        }
        return Result("spectra", {}, {}, _layers(metrics), summary={"classifier": {"layer": classifier}})

    ids = Result("id", {}, {}, _layers({n: {"id_twonn": float(rng.uniform(2, 20))} for n in layers}))
    planes = Result("cutting-planes", {}, {}, summary={"mean_manifold_dim": float(rng.uniform(10, 60))})
    return {
        "curvature": curvature(),
        "curvature-knn": curvature(),
        "collapse": collapse(),
        "collapse-test": collapse(),
        "spectra": spectra(),
        "spectra-test": spectra(),
        "id": ids,
        "cutting-planes": planes,
    }


def _record(
    name,
    rng,
    *,
    arch="digits-cnn",
    width=32,
    depth=3,
    seed=0,
    epoch=10,
    epochs=10,
    mixup=0.0,
    label_noise=0.0,
    train_size=1000,
    train_accuracy=1.0,
    test_accuracy=None,
):
    metadata = {
        "arch": arch,
        "epoch": epoch,
        "seed": seed,
        "arch_args": {"width": width, "depth": depth, "num_classes": 10},
        "training": {
            "epochs": epochs,
            "seed": seed,
            "batch_size": 64,
            "train_size": train_size,
            "mixup": mixup,
            "label_smoothing": 0.0,
            "label_noise": label_noise,
        },
        "metrics": {
            "train_accuracy": train_accuracy,
            "test_accuracy": float(rng.uniform(0.6, 0.95)) if test_accuracy is None else test_accuracy,
        },
    }
    layers, classifier = (MLP_LAYERS, "hidden3") if arch == "digits-mlp" else (CNN_LAYERS, "pool")
    if arch == "digits-mlp" and depth == 1:
        layers, classifier = ("hidden1", "logits"), "hidden1"
    return record_from_checkpoint(name, metadata, _results(rng, layers, classifier))


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(0)
    records = []
    for seed in SEEDS:
        base = f"cnn-s{seed}"
        for epoch, accuracy in ((3, 0.9), (6, 0.997), (9, 1.0)):
            records.append(
                _record(f"{base}-epoch{epoch:03d}", rng, seed=seed, epoch=epoch, train_accuracy=accuracy)
            )
        records.append(_record(base, rng, seed=seed))
        records.append(_record(f"cnn-e0-s{seed}", rng, seed=seed, epoch=0, epochs=0, train_accuracy=0.1))
        records.append(_record(f"cnn-mix-s{seed}", rng, seed=seed, mixup=0.4))
        records.append(_record(f"resnet-s{seed}", rng, arch="small-resnet", width=8, depth=2, seed=seed))
        records.append(_record(f"mlp1-s{seed}", rng, arch="digits-mlp", depth=1, seed=seed))
        records.append(_record(f"mlp-w64-s{seed}", rng, arch="digits-mlp", width=64, seed=seed))
        records.append(_record(f"mlp-ln-s{seed}", rng, arch="digits-mlp", seed=seed, label_noise=0.2))
        records.append(_record(f"mlp-n300-s{seed}", rng, arch="digits-mlp", seed=seed, train_size=300))
    for seed in range(12):
        if seed < 6:
            for epoch in (3, 6):
                records.append(
                    _record(f"mlp-s{seed}-epoch{epoch:03d}", rng, arch="digits-mlp", seed=seed, epoch=epoch)
                )
        records.append(_record(f"mlp-s{seed}", rng, arch="digits-mlp", seed=seed))
    for seed in (0, 1):
        records.append(_record(f"cnn-ln-s{seed}", rng, seed=seed, label_noise=0.3))
    return Study(tuple(records))


def _by(study, name):
    return next(r for r in study.records if r.name == name)


def _mapc(record, key="curvature"):
    return np.array([layer.metrics["mapc"] for layer in record.results[key].layers])


def _cls(record, probe, metric):
    name = record.results[probe].summary["classifier"]["layer"]
    return record.results[probe].layer(name).metrics[metric]


INPUT = {"curvature": 0.02, "curvature-knn": 0.5}
GAINS = (
    ("mlp-s0+mlp-s1", 3.0),
    ("mlp-s2+mlp-s3", 1.5),
    ("mlp-s4+mlp-s5", 4.0),
    ("mlp-s6+mlp-s7", -0.5),
    ("mlp-s8+mlp-s9", 2.5),
    ("mlp-s10+mlp-s11", 1.0),
)


@pytest.fixture(scope="module")
def findings(study):
    context = StudyContext(10, tuple(INPUT.items()), GAINS)
    return {f.claim: f for f in evaluate_claims(study, context, seed=0)}


def _hand(study):
    """Every claim's per-run evidence computed by hand from the records' numbers."""
    by = lambda name: _by(study, name)  # noqa: E731
    cnn = [by(f"cnn-s{s}") for s in SEEDS]
    log = np.log10

    def final_rise(r):
        m = _mapc(r)
        return log(m[-1]) - log(np.median(m[:-1]))

    def tpt(seed, metric, logarithmic=True):
        start, end = by(f"cnn-s{seed}-epoch006"), by(f"cnn-s{seed}")  # 0.997 >= 1 - TPT_ERROR from epoch 6
        a, b = metric(start), metric(end)
        return log(b) - log(a) if logarithmic else b - a

    def ew(seed, read):
        return read(by(f"mlp1-s{seed}")) - read(by(f"mlp-s{seed}"))

    dim = lambda r: r.results["cutting-planes"].summary["mean_manifold_dim"]  # noqa: E731
    trained_cnn = [r for r in study.records if r.final and r.arch == "digits-cnn" and r.trained]
    mlps = [r for r in study.records if r.final and r.arch == "digits-mlp" and r.trained]
    hand = {
        "ka-initial-rise": [log(_mapc(r)[0]) - log(INPUT["curvature"]) for r in cnn],
        "ka-plateau": [final_rise(r) - (log(_mapc(r)[:-1].max()) - log(_mapc(r)[:-1].min())) for r in cnn],
        "ka-final-rise": [final_rise(r) for r in cnn],
        "ka-final-rise-resnet": [final_rise(by(f"resnet-s{s}")) for s in SEEDS],
        "ka-untrained-flat": [final_rise(by(f"cnn-s{s}")) - final_rise(by(f"cnn-e0-s{s}")) for s in SEEDS],
        "ka-gap-accuracy": (
            [r.results["curvature"].summary["curvature_gap"] for r in trained_cnn],
            [r.test_accuracy for r in trained_cnn],
        ),
        "ka-mixup-flattens": [
            log(np.median(_mapc(by(f"cnn-mix-s{s}"))[:-1])) - log(np.median(_mapc(by(f"cnn-s{s}"))[:-1]))
            for s in SEEDS
        ],
        "ka-id-not-curvature": [
            spearmanr([x.metrics["id_twonn"] for x in r.results["id"].layers], _mapc(r)).statistic
            for r in cnn
        ],
        "phd-nc1": [tpt(s, lambda r: _cls(r, "collapse", "nc1")) for s in SEEDS],
        "phd-etf": [tpt(s, lambda r: _cls(r, "collapse", "etf_distance")) for s in SEEDS],
        "phd-classifier-etf": [tpt(s, lambda r: _cls(r, "collapse", "nc2_max_angle_weights")) for s in SEEDS],
        "phd-self-duality": [tpt(s, lambda r: _cls(r, "collapse", "nc3_self_duality")) for s in SEEDS],
        "phd-ncc": [tpt(s, lambda r: _cls(r, "collapse", "nc4_ncc_mismatch"), False) for s in SEEDS],
        "phd-tpt-accuracy": [tpt(s, lambda r: r.test_accuracy, False) for s in SEEDS],
        "ew-deep-collapse": [ew(s, lambda r: log(_cls(r, "collapse", "nc1"))) for s in SEEDS],
        "ew-simplex": [ew(s, lambda r: log(_cls(r, "collapse", "etf_distance"))) for s in SEEDS],
        "ew-shallow-output": [
            ew(s, lambda r: log(r.results["collapse"].layers[-1].metrics["nc1"])) for s in SEEDS
        ],
        "papyan-outliers": [_cls(r, "spectra", "n_outliers") - 9.5 for r in cnn],
        "papyan-depth": [
            spearmanr(
                range(4), [x.metrics["outlier_variance_share"] for x in r.results["spectra"].layers[:-1]]
            ).statistic
            for r in cnn
        ],
        "papyan-orthogonal": [
            spearmanr(
                range(4), [x.metrics["class_means_abs_cos"] for x in r.results["spectra"].layers[:-1]]
            ).statistic
            for r in cnn
        ],
        "papyan-fisher": (
            [log(_cls(r, "spectra", "fisher_outlier_bulk_ratio")) for r in trained_cnn],
            [1 - r.test_accuracy for r in trained_cnn],
        ),
        "papyan-cross-class": [_cls(r, "spectra", "fisher_n_outliers") - 10 for r in cnn],
        "fort-training": [
            spearmanr(range(3), [dim(by(f"mlp-s{s}{e}")) for e in ("-epoch003", "-epoch006", "")]).statistic
            for s in SEEDS
        ],
        "fort-ensembles": [gain for _, gain in GAINS],
    }
    deep = [r for r in mlps if r.depth == 3]
    hand["fort-accuracy"] = ([r.test_accuracy for r in mlps], [dim(r) for r in mlps])
    widths = [r for r in deep if not r.label_noise and r.train_size == 1000]
    hand["fort-width"] = ([r.width for r in widths], [dim(r) for r in widths])
    noise = [r for r in deep if r.width == 32 and r.train_size == 1000]
    hand["fort-label-noise"] = ([r.label_noise for r in noise], [dim(r) for r in noise])
    sizes = [r for r in deep if r.width == 32 and not r.label_noise]
    hand["fort-train-size"] = ([r.train_size for r in sizes], [dim(r) for r in sizes])
    return hand


def test_comparisons_are_found_from_the_settings(study):
    assert sorted(study.runs()) == sorted([f"cnn-s{s}" for s in SEEDS] + [f"mlp-s{s}" for s in SEEDS])
    assert [r.epoch for r in study.runs()["cnn-s1"]] == [3, 6, 9, 10]
    assert {(b.name, m.name) for b, m in study.twins(lambda r: r.mixup > 0)} == {
        (f"cnn-s{s}", f"cnn-mix-s{s}") for s in SEEDS
    }
    assert [[m.name for m in pair] for pair in ensemble_pairs(study)] == [
        [f"mlp-s{s}", f"mlp-s{s + 1}"] for s in range(0, 12, 2)
    ]


def test_each_claims_evidence_equals_a_hand_computation(study, findings):
    assert list(findings) == [claim.claim for claim in CLAIMS]
    hand = _hand(study)
    assert set(hand) == set(findings)
    for claim, expected in hand.items():
        found = findings[claim]
        if isinstance(expected, tuple):  # a correlation over runs
            x, y = expected
            pairs = np.array(sorted(zip(*found.details["per_run"], strict=True)))
            assert pairs == pytest.approx(np.array(sorted(zip(x, y, strict=True)))), (
                claim
            )  # the runs, any order
            assert found.value == pytest.approx(spearmanr(x, y).statistic), claim
        else:
            assert found.details["per_run"] == pytest.approx(expected), claim
            assert found.value == pytest.approx(np.mean(expected)), claim
        assert found.n == (len(expected[0]) if isinstance(expected, tuple) else len(expected)), claim


def test_verdicts_use_holm_within_each_family_and_the_claims_margins(study, findings):
    hand = _hand(study)
    inferred = {
        claim: rank_correlation(*expected) if isinstance(expected, tuple) else location(expected)
        for claim, expected in hand.items()
    }
    adjusted = {}
    for members in ([c for c in hand if c in PRIMARY_CLAIMS], [c for c in hand if c not in PRIMARY_CLAIMS]):
        adjusted |= dict(zip(members, holm([inferred[c].p_value for c in members]), strict=True))
    assert 1 <= len(PRIMARY_CLAIMS) <= 6 and set(PRIMARY_CLAIMS) <= set(hand)
    for claim in CLAIMS:
        found, inf = findings[claim.claim], inferred[claim.claim]
        assert found.p_value == pytest.approx(inf.p_value), claim.claim
        assert found.p_adjusted == pytest.approx(adjusted[claim.claim]), claim.claim
        assert found.interval == pytest.approx(inf.interval), claim.claim
        expected = verdict(
            claim.kind, inf.value, inf.equivalence_interval, adjusted[claim.claim], claim.margin
        )
        assert found.verdict == expected, claim.claim
        assert found.margin_source
        assert found.family == ("primary" if claim.claim in PRIMARY_CLAIMS else "secondary")


def test_robustness_lists_the_designs_that_change_what_a_claim_reads(findings):
    assert set(findings["ka-final-rise"].designs) == {"primary", "curvature: kNN neighbourhoods"}
    assert set(findings["phd-nc1"].designs) == {
        "primary",
        "collapse and spectra: test points",
        "training one saved epoch shorter",
    }
    assert (
        set(findings["fort-width"].designs) == {"primary"} and findings["fort-width"].robustness == "untested"
    )
    for f in findings.values():
        read = {
            k: d for k, d in f.designs.items() if d["n"] or k == "primary"
        }  # a design without data: no say
        decided = {d["verdict"] for d in read.values()}
        assert f.designs["primary"] == {
            "verdict": f.verdict,
            "value": f.value,
            "n": f.n,
            "interval": None if f.interval is None else list(f.interval),
        }
        assert f.robustness == (
            "untested" if len(read) < 2 else "robust" if len(decided) == 1 else "not robust"
        )


def test_a_claim_of_no_effect_is_supported_by_equivalence_and_directional_claims_are_not():
    equivalent = location([0.01, -0.02, 0.015, 0.0, -0.01, 0.005, 0.02, -0.005])
    assert verdict("none", equivalent.value, equivalent.equivalence_interval, 1.0, 0.1) == "supported"
    assert verdict("increase", equivalent.value, equivalent.equivalence_interval, 1.0, 0.1) == (
        "equivalent to no effect"
    )


def test_the_terminal_phase_starts_at_the_first_checkpoint_within_the_error(study, findings):
    starts = findings["phd-nc1"].details["terminal_phase_starts"]
    assert starts == {f"cnn-s{s}": 6 for s in SEEDS}
    assert 0.997 >= 1 - TPT_ERROR > 0.9


def test_missing_models_give_inconclusive_with_a_reason(study):
    only_baselines = Study(tuple(r for r in study.records if r.name in ("cnn-s0", "cnn-s1")))
    found = {f.claim: f for f in evaluate_claims(only_baselines, StudyContext(10), seed=0)}
    for claim in ("ka-untrained-flat", "ka-mixup-flattens", "ew-deep-collapse", "fort-ensembles", "phd-nc1"):
        assert found[claim].verdict == "inconclusive" and found[claim].reason, claim
        assert found[claim].interval is None
    assert "six or more" in found["ka-final-rise"].reason  # two runs give no interval


def test_presets_train_eight_or_more_seeds_per_condition_and_tiny_says_it_is_a_check():
    with pytest.raises(InputError, match="did you mean tiny"):
        design("tinny")
    # eight runs is the fewest whose smallest sign-flip p passes Holm's first step over the primary claims
    assert 2 / 2**8 < 0.05 / len(PRIMARY_CLAIMS) and not 2 / 2**7 < 0.05 / len(PRIMARY_CLAIMS)
    for preset, seeds in (("small", 8), ("full", 10)):
        plan = design(preset)
        names = [m.name(0) for m in plan.models]
        assert len(names) == len(set(names))
        baselines = [m for m in plan.models if m.arch == "digits-cnn" and m.save_every]
        assert len(baselines) == seeds and all(m.lr_schedule == "step" for m in baselines)
        assert all(m.width >= 3 * 10 for m in baselines)  # a penultimate layer several times C wide
        assert {m.arch for m in plan.models} == {"digits-cnn", "small-resnet", "digits-mlp"}
    assert "pipeline check" in design("tiny").purpose


def test_claims_tiny_on_digits_end_to_end(tmp_path):
    from manifold_probe_cli.main import main

    out = tmp_path / "claims"
    assert main(["claims", "--data", "digits", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    written = json.loads((out / "claims.json").read_text())
    assert "pipeline check" in written["source"]["purpose"]
    assert "own training images" in written["source"]["points"]["collapse, spectra"]
    findings = written["summary"]["findings"]
    assert [f["claim"] for f in findings] == [claim.claim for claim in CLAIMS]
    for f in findings:
        assert f["verdict"] in ("equivalent to no effect", "supported", "contradicted", "inconclusive")
        assert f["interval"] is not None or f["reason"], f["claim"]
    page = (out / "index.html").read_text()
    assert "ka-gap-accuracy" in page and "in units of its margin" in page  # the forest plot
    indexes = ("claims.json", "zoo.json")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if p.name not in indexes}
    assert main(["claims", "--data", "digits", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # a second run reuses everything
    assert json.loads((out / "claims.json").read_text())["summary"]["findings"] == findings
    assert math.isfinite(written["summary"]["input_mapc"]["curvature-knn"])


def test_the_forest_plot_is_written_as_svg_and_pdf_beside_the_page(findings, tmp_path):
    from manifold_probe.report.browser import find_chromium
    from manifold_probe.study.claims.page import forest_figure, write_forest_files

    if find_chromium() is None:
        pytest.skip("SVG and PDF export needs Chromium")
    paths = write_forest_files(forest_figure([f.to_dict() for f in findings.values()]), tmp_path)
    assert [p.name for p in paths] == ["forest.svg", "forest.pdf"]
    assert b"<svg" in paths[0].read_bytes()[:500] and b"ka-final-rise" in paths[0].read_bytes()
    assert paths[1].read_bytes().startswith(b"%PDF")


def test_shorter_training_reads_the_spectra_claims_one_saved_epoch_earlier(study, findings):
    # the fixture's CNN runs save epochs 3, 6, 9 and end at 10: one saved epoch shorter is epoch 9
    earlier = [
        next(r for r in study.records if r.name == f"cnn-s{seed}-epoch009").classifier_metric(
            "spectra", "n_outliers"
        )
        - 9.5
        for seed in SEEDS
    ]
    shorter = findings["papyan-outliers"].designs["training one saved epoch shorter"]
    assert shorter["n"] == len(SEEDS) and shorter["value"] == pytest.approx(np.mean(earlier))
    assert findings["papyan-outliers"].value != pytest.approx(np.mean(earlier))
    assert "training one saved epoch shorter" not in findings["papyan-fisher"].designs  # finals only


def test_an_mlp_series_is_found_when_the_cnns_have_a_longer_one(study):
    # the small preset's CNN and MLP label-noise series are the same size; the CNN's must not take
    # the MLP's place in fort-label-noise
    rng = np.random.default_rng(1)
    extra = [_record(f"cnn-ln-more-s{s}", rng, seed=s, label_noise=0.5) for s in SEEDS]
    longer = Study(study.records + tuple(extra))
    assert len([r for r in longer.series("label_noise") if r.arch == "digits-cnn"]) > 0
    found = {f.claim: f for f in evaluate_claims(longer, StudyContext(10, (), GAINS), seed=0)}
    x, y = _hand(study)["fort-label-noise"]
    assert found["fort-label-noise"].n == len(x) and found["fort-label-noise"].value == pytest.approx(
        spearmanr(x, y).statistic
    )
