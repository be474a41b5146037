"""`mprobe report` on a synthetic sweep folder: correlations, the JSON keys, the page in a real browser."""

from __future__ import annotations

import csv
import json

import pytest

from manifold_probe.errors import InputError
from manifold_probe.report.browser import check_page, find_chromium
from manifold_probe.results import LayerResult, Result
from manifold_probe.study.report import MEASURES, build_report, write_report_page
from manifold_probe_cli import main as cli

COLUMNS = [
    "run_id", "checkpoint", "family", "arch", "untrained", "epochs", "width", "arch_depth", "weight_decay",
    "mixup", "label_smoothing", "label_noise", "train_size", "seed", "train_accuracy", "test_accuracy",
    "generalization_gap", "curvature_gap", "curvature_gap_scaled", "curvature_sff_gap",
    "curvature_sff_gap_scaled", "last_layer_id_twonn", "nc1_penultimate", "mean_manifold_dim",
]  # fmt: skip
IN_TABLE = [m for m in MEASURES if m in COLUMNS]  # this sweep ran no spectra: no n_outliers column
PRESENT = [m for m in IN_TABLE if m != "mean_manifold_dim"]  # that column exists but is empty
TARGETS = ("test_accuracy", "generalization_gap")
LAYERS = ("block1", "block2", "pool", "logits")


def _result(command: str, run_id: str, values: dict[str, list[float]]) -> Result:
    layers = [
        LayerResult(name, i, i / (len(LAYERS) - 1), 32, 200, metrics={m: v[i] for m, v in values.items()})
        for i, name in enumerate(LAYERS)
    ]
    return Result(
        command=command, source={"model": f"{run_id}.pt", "data": "digits"}, params={}, layers=layers
    )


def make_sweep(root, *, trained_per_family: int = 6, untrained: int = 2):
    """A sweep whose curvature gap rises strictly with test accuracy among trained models; the
    untrained ones have a large gap at chance accuracy (they would break the relation)."""
    rows = []
    for f, family in enumerate(("digits-cnn", "digits-mlp")):
        for i in range(trained_per_family + untrained):
            is_untrained = i >= trained_per_family
            test = 0.1 if is_untrained else 0.80 + 0.02 * i + 0.005 * f
            train = 0.1 if is_untrained else min(1.0, test + 0.1 - 0.01 * i)
            gap = 50.0 + i if is_untrained else 10 * test**2
            run_id = f"{family}-{i}-{f:02d}abcdef"
            rows.append({
                "run_id": run_id, "checkpoint": f"zoo/{run_id}.pt", "family": family, "arch": family,
                "untrained": str(is_untrained), "epochs": "0" if is_untrained else str(5 + i), "width": "16",
                "arch_depth": "3", "weight_decay": "0.0005", "mixup": "0.2" if i % 2 else "0",
                "label_smoothing": "0",
                "label_noise": "0", "train_size": "1000", "seed": str(i), "train_accuracy": f"{train:.4f}",
                "test_accuracy": f"{test:.4f}", "generalization_gap": f"{train - test:.4f}",
                "curvature_gap": repr(gap), "curvature_gap_scaled": repr(gap / 10 + 0.01 * (i % 3)),
                "curvature_sff_gap": repr(-gap), "curvature_sff_gap_scaled": repr(gap * 0.5),
                "last_layer_id_twonn": repr(6.0 + (i * 7) % 5), "nc1_penultimate": repr(1.0 / (1 + i)),
                "mean_manifold_dim": "",
            })  # fmt: skip
            base = root / "results" / run_id
            base.mkdir(parents=True)
            _result("id", run_id, {"id_twonn": [9.0, 10.0 - f, 7.0, 6.0 - 0.1 * i]}).write(base / "id.json")
            curvature = {"mapc": [0.02, 0.06, 0.16, 0.16 + gap / 100], "mapc_scaled": [0.3, 0.4, 0.3, 0.5]}
            _result("curvature", run_id, curvature).write(base / "curvature.json")
            _result("collapse", run_id, {"nc1": [5.0, 3.0, 1.0 / (1 + i), 0.5]}).write(base / "collapse.json")
    with (root / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def report(sweep):
    return build_report(sweep, seed=0, n_bootstrap=200, n_perm=200)


def test_gap_that_rises_with_accuracy_gives_spearman_one(report):
    entry = report.summary["correlation"]["curvature_gap_vs_test_accuracy"]
    assert entry["spearman"]["value"] == pytest.approx(1.0)
    assert entry["kendall"]["value"] == pytest.approx(1.0)
    assert entry["spearman"]["interval"] == pytest.approx([1.0, 1.0])
    assert entry["spearman"]["p_value"] < 0.01 and entry["spearman"]["n"] == 12
    sff = report.summary["correlation"]["curvature_sff_gap_vs_test_accuracy"]
    assert sff["spearman"]["value"] == pytest.approx(-1.0)


def test_json_keys_are_exactly_as_specified(report, tmp_path):
    path = report.write(tmp_path / "report.json")
    raw = json.loads(path.read_text())
    assert raw["command"] == "report"
    expected = {f"{m}_vs_{t}" for m in IN_TABLE for t in TARGETS}
    families = raw["summary"]["correlation_by_family"]
    assert set(families) == {"digits-cnn", "digits-mlp"}
    for table in [raw["summary"]["correlation"], *families.values()]:
        assert set(table) == expected
        for entry in table.values():
            assert set(entry) == {"pearson", "spearman", "kendall"}
            for stats in entry.values():
                assert set(stats) == {"value", "interval", "p_value", "n", "warning"}
    # the empty measure column is reported as insufficient, not as a number
    empty = raw["summary"]["correlation"]["mean_manifold_dim_vs_test_accuracy"]["pearson"]
    assert empty == {"value": None, "interval": None, "p_value": None, "n": 0, "warning": None}
    within = families["digits-cnn"]["curvature_gap_vs_test_accuracy"]["spearman"]
    assert within["value"] == pytest.approx(1.0) and within["n"] == 6
    assert raw["params"]["include_untrained"] is False and "trained only" in raw["params"]["models"]


def test_untrained_models_are_left_out_unless_asked(sweep, report):
    assert report.summary["n_models_used"] == 12 and report.summary["n_untrained_left_out"] == 4
    both = build_report(sweep, n_bootstrap=0, n_perm=0, include_untrained=True)
    entry = both.summary["correlation"]["curvature_gap_vs_test_accuracy"]["spearman"]
    assert entry["n"] == 16 and entry["value"] < 0.5  # the untrained ones break the relation
    assert entry["interval"] is None and entry["p_value"] is None
    assert "untrained" in both.params["models"]


def test_measures_are_only_the_columns_present(tmp_path):
    sweep = make_sweep(tmp_path, trained_per_family=3, untrained=0)
    text = (sweep / "table.csv").read_text().splitlines()
    drop = COLUMNS.index("nc1_penultimate")
    rows = [",".join(c for j, c in enumerate(line.split(",")) if j != drop) for line in text]
    (sweep / "table.csv").write_text("\n".join(rows) + "\n")
    result = build_report(sweep, n_bootstrap=10, n_perm=10)
    assert not any(key.startswith("nc1_penultimate") for key in result.summary["correlation"])
    assert "nc1_penultimate" not in result.params["measures"]


def test_missing_table_and_bad_tables_raise_one_line_input_errors(tmp_path):
    with pytest.raises(InputError, match="no sweep table"):
        build_report(tmp_path)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks the column"):
        build_report(tmp_path)
    header = "run_id,family,untrained,train_accuracy,test_accuracy\n"
    (tmp_path / "table.csv").write_text(header + "r1,cnn,maybe,0.9,0.8\n")
    with pytest.raises(InputError, match="row 2: untrained: must be True or False"):
        build_report(tmp_path)
    (tmp_path / "table.csv").write_text(header + "r1,cnn,True,0.1,0.1\n")
    with pytest.raises(InputError, match="only untrained models"):
        build_report(tmp_path)


def test_cli_writes_report_and_page_and_prints_the_table(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        ["report", str(sweep), "--out", str(out), "--bootstrap", "100", "--permutations", "100", "-q"]
    )
    stdout, _ = capsys.readouterr()
    assert code == 0
    assert (out / "report.json").is_file() and (out / "index.html").is_file()
    assert "curvature_gap_scaled" in stdout and "test_accuracy" in stdout and "spearman" in stdout
    assert f"page: {out / 'index.html'}" in stdout


def test_cli_missing_table_is_one_line_with_exit_2(tmp_path, capsys):
    code = cli.main(["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    _, stderr = capsys.readouterr()
    assert code == 2
    assert "no sweep table" in stderr and len(stderr.strip().splitlines()) == 1


def test_page_is_self_contained_with_every_part(sweep, report, tmp_path):
    page = write_report_page(report, sweep, tmp_path / "index.html", plotlyjs="inline")
    text = page.read_text()
    assert "<script src=" not in text and len(text) > 1_000_000  # plotly.js inlined, works offline
    assert not (tmp_path / "plotly.min.js").exists()
    assert "updatemenus" in text and "95 % bootstrap band" in text
    assert text.count("<table>") == 3  # all models, then each family
    for measure in PRESENT:
        assert measure in text
    for metric in ("id_twonn", "mapc", "mapc_scaled", "nc1"):  # the layer profiles' dropdown
        assert f'"label":"{metric}"' in text.replace(" ", "")
    assert '"dash":"dot"' in text.replace(" ", "") and '"dash":"dash"' in text.replace(" ", "")


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed")
def test_page_renders_in_headless_chromium_without_script_errors(sweep, report, tmp_path):
    page = write_report_page(report, sweep, tmp_path / "index.html")  # the default: a shared plotly.min.js
    assert (tmp_path / "plotly.min.js").is_file() and len(page.read_text()) < 1_000_000
    seen = check_page(page)
    assert seen.ok and seen.plots == 3, seen  # two scatters and the layer profiles, each with data drawn
