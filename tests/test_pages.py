"""The pages fit for a paper: axis titles with units, models named by file, class names,
log axes that do not crowd, no eigenvalues below numerical zero, bands clipped to the target's
range, no empty accuracy panel, whole epochs, the shared plotly.js, and every command's page
in headless Chromium (figures drawn, no script error)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from manifold_probe.report.browser import check_page, find_chromium
from manifold_probe.report.pages import epoch_figure, numerical_zero, result_figures, spectra_figure
from manifold_probe.report.profile_page import (
    PLOTLYJS_FILE,
    axis_title,
    layer_profile_figure,
    log_ticks,
    model_label,
    spans_decades,
    write_page,
)
from manifold_probe.report.tables import class_table, target_name
from manifold_probe.results import ClassResult, LayerResult, Result, read_result
from manifold_probe.study.report import SweepRow, scatter_figure
from manifold_probe_cli.main import main

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]  # fmt: skip


def _profile(model: str, values: list[float], metric: str = "mapc", epoch: int | None = 3) -> Result:
    layers = [
        LayerResult(f"block{i}", i, i / (len(values) - 1), 16, 100, metrics={metric: v})
        for i, v in enumerate(values)
    ]
    checkpoint = {"arch": "digits-cnn", "epoch": epoch}
    return Result("curvature", {"model": model, "checkpoint": checkpoint}, {"neighbourhood": "knn"}, layers)


def test_model_label_is_the_file_stem_with_architecture_and_epoch():
    source = {"model": "/runs/zoo/cnn-w32.pt", "checkpoint": {"arch": "digits-cnn", "epoch": 3}}
    assert model_label(source) == "cnn-w32 (digits-cnn, epoch 3)"
    assert model_label({"model": "a/b/plain.pt"}) == "plain"
    assert model_label({"points": "/data/h.npy"}) == "h"


def test_log_ticks_never_crowd_and_stay_in_range():
    assert log_ticks([0.1, 297]) == [0.1, 1.0, 10.0, 100.0]  # powers of ten across decades
    assert log_ticks([0.3, 4.0]) == [0.5, 1.0, 2.0]  # 1-2-5 within a decade or so
    assert log_ticks([0.7, 0.9]) == [0.7, 0.8, 0.9]  # a narrow range: every step
    for low, high in ((1e-3, 1e4), (0.15, 0.8), (2.0, 2.3), (5e-7, 3e-6)):
        ticks = log_ticks([low, high])
        assert ticks and all(low <= t <= high for t in ticks) and len(ticks) <= 9
    assert spans_decades([0.18, 297]) and not spans_decades([0.18, 9.0]) and not spans_decades([-1, 300])


def test_profiles_carry_units_names_and_an_automatic_log_axis():
    trained = _profile("/x/t.pt", [0.1, 0.2, 0.15])
    untrained = _profile("/x/u.pt", [0.2, 30.0, 297.0], epoch=0)
    fig = layer_profile_figure([trained, untrained], ["mapc"])
    assert [trace.name for trace in fig.data] == ["t (digits-cnn, epoch 3)", "u (digits-cnn, epoch 0)"]
    assert fig.layout.yaxis.type == "log"  # 0.1 .. 297: more than two decades
    assert fig.layout.yaxis.title.text == axis_title("mapc") + ", log scale"
    assert "1 / activation unit" in axis_title("mapc")
    assert list(fig.layout.yaxis.tickvals) == [0.1, 1.0, 10.0, 100.0]
    assert fig.layout.xaxis.title.text == "layer"
    alone = layer_profile_figure([trained], ["mapc"])
    assert alone.layout.yaxis.type != "log"  # one decade: linear


def test_curvature_subtitle_names_the_neighbourhood_and_its_parameters():
    result = _profile("/x/t.pt", [0.1, 0.2, 0.3])
    layers = [replace(layer, details={**layer.details, "k": 30 + 15 * (i > 0), "dim": 1 + 3 * (i > 0)})
              for i, layer in enumerate(result.layers)]  # fmt: skip
    result = replace(result, layers=layers)
    _, _, notes = result_figures([result])
    assert notes.startswith("knn neighbourhoods (K = 30, 45 by layer), tangent dimension d = 1, 4")
    perturb = Result("curvature", {"model": "m.pt"}, {"neighbourhood": "perturb", "n_top": 8, "n_toggle": 7,
                                                      "n_copies": 127, "dim": 3}, result.layers)  # fmt: skip
    _, _, notes = result_figures([perturb])
    for part in ("top 8 singular values", "smallest 7", "127 copies", "d = 3"):
        assert part in notes


def test_id_subtitle_is_words_not_a_dict():
    source = {"model": "/r/m.pt", "data": "fashion-mnist", "split": "test", "n_points": 500,
              "checkpoint": {"arch": "small-resnet"}}  # fmt: skip
    result = Result("id", source, {}, _profile("m", [1, 2]).layers)
    _, _, notes = result_figures([result])
    assert notes == "model m (small-resnet); data fashion-mnist, test split, 500 samples."
    assert "{" not in notes


def test_epochs_are_whole_and_no_accuracy_panel_without_accuracies():
    layers = {"pool": {"nc1": 2.0, "etf_distance": 0.5}}
    series = [
        {"epoch": e, "train_accuracy": None, "test_accuracy": None, "metrics": {"nc1": 2.0 / (e + 1)},
         "layers": layers, "model": f"m-{e}.pt"}
        for e in range(3)
    ]  # fmt: skip
    fig = epoch_figure(series)
    titles = [a.text for a in fig.layout.annotations]
    assert "accuracy" not in titles and titles[0].startswith("nc1")
    bottom = fig.layout[f"xaxis{len(titles)}"]
    assert bottom.tickformat == "d" and bottom.dtick == 1 and bottom.title.text == "epoch"
    series[1]["train_accuracy"] = 0.5
    assert [a.text for a in epoch_figure(series).layout.annotations][0] == "accuracy"


def test_eigenvalues_below_numerical_zero_are_not_drawn_and_are_counted():
    total = [4.0, 2.0, 1.0, 1e-30, -1e-17]
    spectra = {"total": total, "within": [1.0, 0.5, 1e-31], "between": [3.0, 1e-29], "bulk_edge": 1.0}
    layer = LayerResult("pool", 0, 1.0, 5, 100, metrics={"n_outliers": 1.0}, details={"spectra": spectra})
    fig = spectra_figure(Result("spectra", {}, {}, [layer]))
    floor = numerical_zero(total, 5)
    assert 0 < floor < 1e-13
    drawn = [y for trace in fig.data for y in trace.y]
    assert drawn and min(drawn) > floor
    assert "4 eigenvalues below numerical zero" in fig.layout.annotations[0].text


def test_class_names_in_cutting_plane_tables_and_pages():
    entry = {"class": 1, "input_dim": 784, "critical_dim": 700.0, "critical_dim_interval": [690.0, 710.0],
             "manifold_dim": 84.0, "manifold_dim_interval": [74.0, 94.0], "critical_dim_status": "crossed",
             "success": [{"dim": d, "hits": h, "planes": 2, "hit_fraction": h / 2, "mean_max_prob": 0.1 * h}
                         for d, h in ((600, 0), (784, 2))]}  # fmt: skip
    one = ClassResult.from_dict(entry)
    assert target_name(one, FASHION) == "Trouser" and target_name(one) == "1"
    assert target_name(ClassResult.from_dict({**entry, "class": [6, 0]}), FASHION) == "{Shirt, T-shirt/top}"
    source = {"model": "m.pt", "data": "fashion-mnist", "split": "train", "class_names": FASHION}
    params = {"dims": [600, 784], "planes": 2}
    result = Result("cutting-planes", source, params, classes=[entry], summary={"input_dim": 784})
    table = class_table(result)
    assert list(table.columns[0].cells) == ["Trouser"]
    figures, _, _ = result_figures([result])
    assert figures[0].layout.annotations[0].text.startswith("Trouser")
    assert list(figures[1].data[0].x) == ["Trouser"]


def test_accuracy_band_stays_within_zero_and_one():
    rng = np.random.default_rng(0)
    rows = [
        SweepRow({"run_id": f"r{i}", "family": "cnn", "train_accuracy": "1", "test_accuracy": str(a),
                  "x": str(x)}, untrained=False)
        for i, (x, a) in enumerate(zip(rng.normal(size=6), [0.1, 0.95, 0.2, 0.9, 0.99, 0.05], strict=True))
    ]  # fmt: skip
    correlation = {"x_vs_test_accuracy": {"spearman": {"value": 0.1, "p_value": 0.5, "n": 6}}}
    result = Result("report", {}, {"measures": ["x"], "include_untrained": False, "seed": 0, "n_boot": 200},
                    summary={"correlation": correlation})  # fmt: skip
    fig = scatter_figure(result, rows)
    band = next(trace for trace in fig.data if trace.fill == "toself")
    assert min(band.y) >= 0.0 and max(band.y) <= 1.0
    assert fig.layout.yaxis.title.text == "test accuracy (fraction)"


def test_sweep_rows_say_how_each_model_was_made():
    def kind(**cells):
        return SweepRow({"run_id": "r", **cells}, untrained=cells.pop("untrained", False)).kind

    assert kind(label_noise="0.2") == "label noise 0.2"
    assert kind(train_size="1000", mixup="") == "1000 training points"
    assert kind(mixup="0.4") == "mixup 0.4" and kind() == "trained"
    assert SweepRow({"run_id": "r", "mixup": "0.4"}, untrained=True).kind == "untrained"


def test_directory_mode_shares_one_plotly_js(tmp_path):
    fig = layer_profile_figure([_profile("m.pt", [1.0, 2.0])], ["mapc"])
    first = write_page(tmp_path / "a.html", [fig], title="a", plotlyjs="directory")
    shared = tmp_path / PLOTLYJS_FILE
    stamp = shared.stat().st_mtime_ns
    write_page(tmp_path / "b.html", [fig, "<p>more</p>"], title="b", plotlyjs="directory")
    assert shared.stat().st_mtime_ns == stamp  # an identical copy is not rewritten
    text = first.read_text()
    assert f"<script src='{PLOTLYJS_FILE}'" in text and len(text) < 100_000
    inline = write_page(tmp_path / "c" / "c.html", [fig], title="c")
    assert "<script src=" not in inline.read_text() and not (tmp_path / "c" / PLOTLYJS_FILE).exists()
    with pytest.raises(ValueError, match="inline or directory"):
        write_page(tmp_path / "d.html", [fig], title="d", plotlyjs="cdn")


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed")
def test_a_missing_plotly_js_is_a_script_error_the_check_sees(tmp_path):
    fig = layer_profile_figure([_profile("m.pt", [1.0, 2.0])], ["mapc"])
    page = write_page(tmp_path / "p.html", [fig], title="p", plotlyjs="directory")
    (tmp_path / PLOTLYJS_FILE).unlink()
    seen = check_page(page)
    assert not seen.ok and "Plotly" in (seen.script_error or "")


@pytest.mark.slow  # about 45 s: five commands, then Chromium on each page
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed")
def test_every_command_page_draws_its_figures_in_chromium(digits_checkpoint, tmp_path, capsys):
    from manifold_probe.study.training import train_and_save

    untrained = tmp_path / "u.pt"
    train_and_save("digits-cnn", {"width": 8, "depth": 3}, out=untrained, epochs=0, seed=0)
    common = ["--n-points", "300", "-q", "--plotlyjs", "directory"]
    commands = {
        "id": ["id", "--model", digits_checkpoint, "--bootstrap", "5", "--no-cache"],
        "curvature": ["curvature", "--model", digits_checkpoint, "--compare", untrained, "--bootstrap", "5",
                      "--no-cache"],
        "collapse": ["collapse", "--model", digits_checkpoint, "--model", untrained, "--no-cache"],
        "spectra": ["spectra", "--model", digits_checkpoint, "--no-cache"],
        "cutting-planes": ["cutting-planes", "--model", digits_checkpoint, "--class", "0", "--dims", "8,64",
                           "--planes", "2", "--steps", "10", "--bootstrap", "5"],
    }  # fmt: skip
    expected = {"id": 1, "curvature": 1, "collapse": 3, "spectra": 3}
    for name, args in commands.items():
        page = tmp_path / f"{name}.html"
        js = tmp_path / f"{name}.json"
        assert main([str(a) for a in [*args, *common, "--html", page, "--json", js]]) == 0, name
        if name == "cutting-planes":  # success curves, then D - d* when a target crossed
            expected[name] = 1 + any(e["manifold_dim"] is not None for e in read_result(js).classes)
        seen = check_page(page)
        assert seen.ok and seen.plots == expected[name], (name, seen)


def test_class_names_label_the_rows_of_the_frame():
    entries = [{"class": 1, "critical_dim": 700.0, "manifold_dim": 84.0},
               {"class": [0, 6], "critical_dim": 650.0, "manifold_dim": 134.0}]  # fmt: skip
    named = Result("cutting-planes", {"class_names": FASHION}, {}, classes=entries)
    assert sorted(named.to_frame().layer.unique()) == ["class 1 (Trouser)", "set {0 T-shirt/top, 6 Shirt}"]
    assert set(Result("cutting-planes", {}, {}, classes=entries).metrics) == {"class 1", "set {0, 6}"}
