"""`mprobe demo` end to end on a micro zoo: zoo, sweep, report, page; a second run reuses everything."""

from __future__ import annotations

import json

from manifold_probe.study import zoo_presets
from manifold_probe.study.zoo_presets import ZooModel
from manifold_probe_cli.main import main

MICRO_DEMO = (
    ZooModel("digits-mlp", 8, 1, 0),
    ZooModel("digits-mlp", 8, 1, 1),
    ZooModel("digits-mlp", 16, 2, 2, label_noise=0.3),
    ZooModel("digits-mlp", 16, 2, 4),
    ZooModel("digits-mlp", 16, 2, 4, mixup=0.4),
)


def test_demo_reports_correlations_and_reuses_its_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(zoo_presets.PRESETS, "demo", MICRO_DEMO)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-points", "200", "--workers", "1", "-q"]) == 0
    first, _ = capsys.readouterr()
    assert "5 models" in first and "0 reused" in first and "curvature_gap" in first
    report = json.loads((out / "report" / "report.json").read_text())
    curvature = report["summary"]["correlation"]["curvature_gap_vs_test_accuracy"]["spearman"]
    # the demo measures curvature with the paper's protocol (d = each layer's rounded TwoNN),
    # so the 4 trained models each have a gap, and every layer says where its d came from
    assert curvature["n"] == 4 and curvature["value"] is not None
    result = json.loads(next((out / "sweep" / "results").glob("*/curvature.json")).read_text())
    assert result["params"]["dim"] == "twonn"
    assert all(layer["details"]["dim_method"].startswith("twonn") for layer in result["layers"])
    entry = report["summary"]["correlation"]["last_layer_id_twonn_vs_test_accuracy"]["spearman"]
    assert entry["n"] == 4  # the trained models; the untrained one is left out
    assert entry["value"] is not None and len(entry["interval"]) == 2 and 0 < entry["p_value"] <= 1
    page = (out / "report" / "index.html").read_text()
    assert "<script src='plotly.min.js'" in page and "curvature_gap" in page  # plotly.js shared beside it
    assert "rounded TwoNN (Kaufman &amp; Azencot" in page or "rounded TwoNN (Kaufman & Azencot" in page
    assert (out / "report" / "plotly.min.js").is_file()
    assert main(["demo", "--out", str(out), "--n-points", "200", "--workers", "1", "-q"]) == 0
    second, _ = capsys.readouterr()
    assert "0 tasks run, 15 reused" in second
