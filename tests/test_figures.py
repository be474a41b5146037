"""Figures for a paper (issue 24, item 6): several results overlaid on shared axes (`mp.plot`,
`Result.plot`, `mprobe plot`), values without a reading marked as such, layer names on every
panel, log axes with enough ticks, size and font options, SVG/PDF/PNG through headless Chromium
(`--format` on the measuring commands too), a screenshot check, and tables written to a file
that are not cut to 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.report.browser import check_page, find_chromium, render_page
from manifold_probe.report.figures import figure_paths, plot
from manifold_probe.report.profile_page import log_ticks
from manifold_probe.results import LayerResult, Result
from manifold_probe_cli.main import main

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium to export or render with")


def _layer(name, index, n, value, status="measured", reason=""):
    metrics = {} if value is None else {"mapc": value, "id_twonn": 3.0 + index}
    return LayerResult(name, index, index / (n - 1), 8, 100, metrics=metrics, status=status, reason=reason)


@pytest.fixture
def two_results():
    """A deep model with a layer that could not be told and one with no manifold scale, and a
    shallow one with other layer names."""
    deep = Result(
        "curvature",
        {"model": "runs/deep.pt"},
        {},
        layers=[
            _layer("block1", 0, 4, 0.5),
            _layer("block2", 1, 4, 0.02, "cannot_tell", "interval reaches 0"),
            _layer("pool", 2, 4, None, "no_manifold_scale", "no window"),
            _layer("logits", 3, 4, 5.0),
        ],
    )
    shallow = Result(
        "curvature",
        {"model": "runs/shallow.pt"},
        {},
        layers=[_layer("stem", 0, 3, 0.3), _layer("pool", 1, 3, 0.7), _layer("logits", 2, 3, 9.0)],
    )
    return deep, shallow


def test_results_overlay_on_shared_axes_by_depth_or_by_name(two_results):
    deep, shallow = two_results
    by_depth = deep.plot(shallow, metrics=["mapc"], x="depth", names=["deep", "shallow"])
    lines = {t.name: t for t in by_depth.data if t.mode == "lines+markers"}
    assert list(lines["deep"].x) == [0, 1] and list(lines["shallow"].x) == [0, 0.5, 1]
    by_name = plot([deep, shallow], metrics=["mapc"], x="name")
    assert list(by_name.layout.xaxis.categoryarray) == ["block1", "block2", "stem", "pool", "logits"]
    with pytest.raises(InputError, match="no result has the metric 'nc1'"):
        plot([deep], metrics=["nc1"])
    with pytest.raises(InputError, match="one name per result"):
        plot([deep, shallow], names=["a"])
    with pytest.raises(InputError, match="must be one of auto, depth, name"):
        plot([deep], x="index")


def test_values_without_a_reading_are_not_drawn_like_measured_ones(two_results):
    deep, _ = two_results
    fig = plot(deep, metrics=["mapc"], x="name")
    line = next(t for t in fig.data if t.mode == "lines+markers")
    assert list(line.x) == ["block1", "logits"]  # the line joins readings only
    hollow = next(t for t in fig.data if "not vouched" in t.name)
    assert list(hollow.x) == ["block2"] and hollow.marker.symbol == "circle-open"
    assert "cannot_tell: interval reaches 0" in hollow.hovertext[0]
    missing = next(t for t in fig.data if t.name == "not measured (no value)")
    assert list(missing.x) == ["pool"] and missing.marker.symbol == "x-thin-open"
    assert list(missing.y) == [0.02] and "no_manifold_scale: no window" in missing.hovertext[0]


def test_each_legend_entry_shows_once_on_the_first_panel_where_it_has_points(two_results):
    deep, shallow = two_results
    fig = plot([deep, shallow], metrics=["mapc", "id_twonn"], x="name", names=["deep", "shallow"])
    shown = [t.name for t in fig.data if t.showlegend]
    assert sorted(shown) == ["deep", "deep: value not vouched for", "not measured (no value)", "shallow"]


def test_every_panel_names_its_layers_and_size_and_font_are_set(two_results):
    deep, shallow = two_results
    fig = plot([deep, shallow], metrics=["mapc", "id_twonn"], x="name", width=640, height=700, font_size=11)
    axes = [fig.layout[key] for key in fig.layout if key.startswith("xaxis")]
    assert len(axes) == 2 and all(axis.showticklabels for axis in axes)
    assert (fig.layout.width, fig.layout.height, fig.layout.font.size) == (640, 700, 11)
    with pytest.raises(InputError, match="positive number"):
        plot([deep], width=-3)


def test_log_axes_get_at_least_three_ticks():
    for low, high in [(0.3, 4.0), (2.0, 300.0), (1.0, 1e4), (1.1, 1.5), (0.011, 0.019), (5.0, 60.0)]:
        ticks = log_ticks([low, high])
        assert len(ticks) >= 3 and all(low <= t <= high for t in ticks), (low, high, ticks)


def test_figure_paths_name_each_figure_of_a_page():
    assert figure_paths("a/id.html", 1, ["html", "svg", "pdf"]) == [[Path("a/id.svg"), Path("a/id.pdf")]]
    assert figure_paths("id", 2, ["png"]) == [[Path("id.1.png")], [Path("id.2.png")]]


def _is_blank(png: Path) -> bool:
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return pixels.std() < 1.0


@needs_chromium
def test_mprobe_plot_writes_svg_and_pdf(two_results, tmp_path, capsys):
    deep, shallow = two_results
    files = [str(deep.write(tmp_path / "deep.json")), str(shallow.write(tmp_path / "shallow.json"))]
    out = tmp_path / "fig.svg"
    code = main(
        [
            "plot",
            *files,
            "--out",
            str(out),
            "--format",
            "svg,pdf,png",
            "--metrics",
            "mapc,id_twonn",
            "--x",
            "depth",
            "--names",
            "deep,shallow",
            "--width",
            "700",
            "--font-size",
            "12",
        ]
    )
    assert code == 0, capsys.readouterr().err
    svg = out.read_text()
    assert svg.startswith("<svg") and "deep" in svg and "shallow" in svg and "mapc" in svg
    pdf = (tmp_path / "fig.pdf").read_bytes()
    assert (
        pdf.startswith(b"%PDF")
        and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page/") + pdf.count(b"/Type /Page ") >= 1
    )
    assert not _is_blank(tmp_path / "fig.png")
    code = main(["plot", files[0], "--out", str(tmp_path / "bad.svg"), "--metrics", "nc1"])
    assert code == 2 and "no result has the metric 'nc1'" in capsys.readouterr().err


@needs_chromium
def test_a_plot_page_draws_in_headless_chromium_and_its_screenshot_is_not_blank(two_results, tmp_path):
    deep, shallow = two_results
    page = mp.write_figure(deep.plot(shallow, x="name"), tmp_path / "fig.html")
    check = check_page(page)
    assert check.ok, check
    shot = tmp_path / "shot.png"
    render_page(page, screenshot=shot, size=(900, 700))
    assert shot.is_file() and not _is_blank(shot)


@needs_chromium
def test_measuring_commands_write_their_figures_in_each_format(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(200, 4)))
    page = tmp_path / "id.html"
    code = main(
        ["id", "--points", str(tmp_path / "x.npy"), "--html", str(page), "--format", "html,svg", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    assert page.is_file() and (tmp_path / "id.svg").read_text().startswith("<svg")


def test_format_without_a_page_name_or_unknown_is_one_line_with_exit_2(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)))
    code = main(["id", "--points", str(tmp_path / "x.npy"), "--format", "svg", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--format" in err and "--html" in err and len(err.strip().splitlines()) == 1
    code = main(
        [
            "id",
            "--points",
            str(tmp_path / "x.npy"),
            "--html",
            str(tmp_path / "a.html"),
            "--format",
            "tiff",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown format tiff" in err


def test_tables_written_to_a_file_are_not_cut_to_80_columns(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(200, 6)))
    out = tmp_path / "table.txt"
    with open(out, "w") as handle:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from manifold_probe_cli.entry import run; run()",
                "id",
                "--points",
                str(tmp_path / "x.npy"),
                "--method",
                "twonn,mle,pca",
                "--bootstrap",
                "20",
                "-q",
            ],
            stdout=handle,
            check=True,
            env={**os.environ, "COLUMNS": "80"},
        )
    text = out.read_text()
    assert "participation_ratio" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) > 80
