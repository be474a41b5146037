"""A new measure is its estimator, its measure function and one registry entry: nothing else.

The measure here is defined in this file alone (its estimator, its measure function, one
`registry.register`) and is then reached everywhere a user would reach a measure: `mp.<name>`,
`to_frame`, the terminal table, the page, the command line (a command built for it), the sweep.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import manifold_probe as mp
from manifold_probe import registry
from manifold_probe.measures.layers import layer_result, measure_layers
from manifold_probe.measures.sources import as_activations
from manifold_probe.results import Result


# 1. the estimator: arrays in, numbers out
def rms_radius(points: np.ndarray) -> float:
    """Root-mean-square distance of the points to their mean."""
    x = np.asarray(points, dtype=np.float64)
    return float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))


# 2. the measure function, with the common signature
def radius(source, data=None, *, scale: float = 1.0, seed=0, device=None, max_memory=None, progress=False,
           **extract_options) -> Result:  # fmt: skip
    """RMS radius of every layer, times `scale`."""
    acts = as_activations(source, data, max_memory=max_memory, extract_options=extract_options)

    def measure(layer, index, n):
        return layer_result(layer, index, n, metrics={"rms_radius": scale * rms_radius(layer.points)})

    layers = measure_layers(acts, measure, description="radius", progress=progress)
    return Result(command="radius", source=acts.source, params={"scale": scale}, layers=layers)


# 3. one registry entry
MEASURE = registry.Measure(
    name="radius",
    function=f"{__name__}:radius",
    description="RMS radius of every layer",
    metrics=("rms_radius",),
    sweep=registry.SweepSpec(options={"scale": 2.0},
                             columns=(registry.SweepColumn("last_rms_radius", "last_layer", "rms_radius"),)),
    options=(registry.Option("scale", "Multiply the radius by this.", type=float, default=1.0),),
)  # fmt: skip


@pytest.fixture
def registered():
    registry.register(MEASURE)
    yield MEASURE
    registry.unregister(MEASURE.name)


def test_the_new_measure_is_part_of_the_api(registered, tmp_path):
    points = np.random.default_rng(0).normal(size=(200, 4))
    result = mp.radius(points, scale=3.0)
    assert result.metrics["points"]["rms_radius"] == pytest.approx(3.0 * rms_radius(points))
    assert "radius" in dir(mp)
    frame = result.to_frame()
    assert frame["metric"].tolist() == ["rms_radius"]
    page = result.to_html(tmp_path / "radius.html")
    assert "rms_radius" in page.read_text()
    from manifold_probe.report.tables import result_tables

    assert [t.title for t in result_tables(result)] == ["RMS radius of every layer"]


def test_the_new_measure_has_a_command(registered, tmp_path, capsys):
    from manifold_probe_cli.main import main

    points = tmp_path / "x.npy"
    np.save(points, np.random.default_rng(0).normal(size=(100, 3)))
    out = tmp_path / "r.json"
    assert main(["radius", "--points", str(points), "--scale", "2", "--json", str(out), "-q"]) == 0
    written = json.loads(out.read_text())
    assert written["command"] == "radius" and written["params"] == {"scale": 2.0}
    assert written["layers"][0]["metrics"]["rms_radius"] == pytest.approx(2 * rms_radius(np.load(points)))
    assert main(["radius", "--points", str(points), "--scale", "x"]) == 2  # typer refuses a non-number


def test_the_new_measure_runs_in_a_sweep(registered, tmp_path):
    from manifold_probe.study.sweep import run_sweep
    from manifold_probe.study.training import train_and_save

    ckpt = tmp_path / "m.pt"
    train_and_save("digits-mlp", {"width": 8, "depth": 1}, out=ckpt, epochs=0)
    summary = run_sweep([ckpt], ["radius"], tmp_path / "sweep", n_points=60, workers=1)
    assert len(summary.done) == 1 and not summary.failed
    header, row = summary.table_csv.read_text().splitlines()[:2]
    assert header.split(",")[-1] == "last_rms_radius" and float(row.split(",")[-1]) > 0


def test_an_unknown_measure_is_named_with_the_known_ones():
    with pytest.raises(mp.InputError, match="unknown measure 'nope'; the measures are id, curvature"):
        registry.get("nope")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.get("id"))
