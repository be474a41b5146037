"""The report on a foreign zoo (issue 24, item 5): untrained models kept when the manifest says
so, a warning on every coefficient from fewer than 8 models or with a degenerate interval (JSON,
terminal table, page), a table with only the columns its models have, one name per meaning of
depth, and points labelled on the scatter plots."""

from __future__ import annotations

import csv
import json

import pytest
from rich.console import Console

from manifold_probe.report.statistics import MIN_RELIABLE_N, correlations
from manifold_probe.report.tables import correlation_tables
from manifold_probe.results import LayerResult, Result
from manifold_probe.study.checkpoints import SweepCheckpoint, read_manifest
from manifold_probe.study.report import build_report, read_sweep_table, scatter_figure, write_report_page
from manifold_probe.study.tables import COLUMN_TYPES, LAYER_COLUMN_TYPES, collect_table, write_table

ACCURACY = [0.1, 0.1, 0.6, 0.7]  # two random-init models at chance, two briefly trained ones


@pytest.fixture
def foreign(tmp_path):
    """A swept foreign zoo of four models, two untrained, whose manifest keeps them in the report."""
    infos = []
    for i, test in enumerate(ACCURACY):
        run_id = f"vit-{i}-0123abcd"
        settings = {"epochs": 0 if i < 2 else 3, "in_report": True, "lr": 0.01 * (i + 1), "depth": 4}
        infos.append(
            SweepCheckpoint(
                path=f"/zoo/vit-{i}.pt",
                run_id=run_id,
                digest="0123abcd" * 8,
                family="vit",
                settings=settings,
                arch="timm:vit_tiny_patch16_224",
                metrics={"test_accuracy": test, "train_accuracy": test + 0.1},
                hyper_parameters=("epochs", "in_report", "lr", "depth"),
            )
        )
        folder = tmp_path / "results" / run_id
        folder.mkdir(parents=True)
        layers = [
            LayerResult(n, j, j / 2, 8, 100, metrics={"id_twonn": 9.0 - j - 2 * test})
            for j, n in enumerate(("blocks.0", "blocks.1", "head"))
        ]
        Result("id", {"model": f"/zoo/vit-{i}.pt"}, {}, layers=layers).write(folder / "id.json")
    write_table(collect_table(tmp_path, infos), tmp_path)
    return tmp_path


def test_a_manifest_row_keeps_its_untrained_model_in_the_report(foreign, tmp_path):
    (tmp_path / "m.csv").write_text("path,epochs,in_report\nm.pt,0,yes\n")
    (tmp_path / "m.pt").write_bytes(b"")
    assert read_manifest(tmp_path / "m.csv")[0].settings["in_report"] is True
    (tmp_path / "m.csv").write_text("path,in_report\nm.pt,maybe\n")
    with pytest.raises(Exception, match="in_report must be true or false"):
        read_manifest(tmp_path / "m.csv")
    report = build_report(foreign, n_bootstrap=200, n_perm=200)
    assert report.summary["n_models_used"] == 4 and report.summary["n_untrained_left_out"] == 0
    assert "2 untrained the manifest keeps" in report.params["models"]


def test_few_models_or_a_degenerate_interval_carry_a_warning_everywhere(foreign, tmp_path):
    found = correlations([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], n_bootstrap=200, n_perm=200)
    spearman = found["spearman"]
    assert spearman.value == -1 and spearman.interval == (-1.0, -1.0)
    assert spearman.warning == (
        f"n = 4 < {MIN_RELIABLE_N} models; degenerate interval [-1, -1]: every resample gave the same value"
    )
    many = correlations(list(range(20)), [v % 7 for v in range(20)], n_bootstrap=200, n_perm=200)
    assert many["pearson"].warning is None and many["pearson"].to_dict()["warning"] is None

    report = build_report(foreign, n_bootstrap=200, n_perm=200)
    path = report.write(tmp_path / "report.json")
    entry = json.loads(path.read_text())["summary"]["correlation"]["last_layer_id_twonn_vs_test_accuracy"]
    assert "n = 4 < 8 models" in entry["spearman"]["warning"]
    console = Console(width=200, record=True)
    for table in correlation_tables(report.summary["correlation"], title="4 models"):
        console.print(table)
    assert "n = 4 < 8 models" in console.export_text()
    page = write_report_page(report, foreign, tmp_path / "index.html", plotlyjs="directory").read_text()
    assert "<span class='warn'>&#9888; n = 4 &lt; 8 models" in page


def test_the_table_has_only_the_columns_its_models_have(foreign):
    with open(foreign / "table.csv", newline="") as handle:
        columns = next(csv.reader(handle))
    for absent in ("mixup", "label_smoothing", "label_noise", "train_size", "weight_decay", "width", "seed"):
        assert absent not in columns, absent  # digits-zoo settings these models do not have
    assert {"lr", "epochs", "in_report", "arch_depth", "last_layer_id_twonn"} <= set(columns)
    rows, _ = read_sweep_table(foreign)
    assert [row.cells["arch_depth"] for row in rows] == ["4"] * 4 and "mixup" not in rows[0].cells


def test_depth_has_one_meaning_per_table():
    """`depth` is a layer's relative position (results, layers.csv); the architecture's depth
    setting is `arch_depth` in table.csv."""
    assert "depth" in LAYER_COLUMN_TYPES and "depth" not in COLUMN_TYPES and "arch_depth" in COLUMN_TYPES


def test_report_scatter_points_are_labelled(foreign):
    report = build_report(foreign, n_bootstrap=50, n_perm=50)
    rows, _ = read_sweep_table(foreign)
    fig = scatter_figure(report, rows)
    points = [trace for trace in fig.data if trace.mode == "markers+text"]
    assert points and sorted(label for trace in points for label in trace.text) == [
        f"vit-{i}" for i in range(4)
    ]
