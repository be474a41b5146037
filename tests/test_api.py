"""The Python API (`import manifold_probe as mp`): the same numbers as the command line for the
same seed, whatever form the data comes in; frozen results with one interface; a model the
user wrote measured end to end; nothing it is given is changed."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import manifold_probe as mp
from manifold_probe.measures.layers import nothing_measured
from manifold_probe.results import LayerResult, Result
from manifold_probe_cli.main import main

N_POINTS = 120
LAYERS = "block2,pool,logits"
FRAME_COLUMNS = ["layer", "depth", "metric", "value", "low", "high", "status"]


@pytest.fixture(scope="module")
def model(digits_checkpoint):
    return mp.load_model(digits_checkpoint)


@pytest.fixture(scope="module")
def data():
    return mp.load_data("digits", split="train", n_points=N_POINTS, seed=0)


def cli_json(tmp_path, *args, code: int = 0) -> dict:
    """The command's JSON; it must exit with `code` (3: no layer has a reading, the JSON is written)."""
    out = tmp_path / "cli.json"
    assert main([*map(str, args), "--json", str(out), "-q"]) == code
    return json.loads(out.read_text())


def plain(result: Result) -> dict:
    """The result as its JSON file holds it."""
    return json.loads(json.dumps(result.to_dict()))


# --- the API's numbers are the command line's ------------------------------------------------


def test_every_measure_equals_the_command_line_for_the_same_seed(tmp_path, digits_checkpoint, model, data):
    source = ["--model", digits_checkpoint, "--data", "digits", "--n-points", N_POINTS, "--seed", 0,
              "--no-cache", "--device", "cpu"]  # fmt: skip
    acts = mp.extract(model, data, layers=LAYERS.split(","))
    cases = [
        (["id", *source, "--layers", LAYERS, "--bootstrap", 10],
         mp.intrinsic_dimension(acts, n_bootstrap=10)),
        (["curvature", *source, "--layers", LAYERS, "--bootstrap", 10],
         mp.curvature(acts, n_bootstrap=10)),
        (["collapse", *source, "--layers", LAYERS], mp.collapse(acts)),
        (["spectra", *source, "--layers", LAYERS, "--fisher-points", 60], mp.spectra(acts, fisher_points=60)),
        (["cutting-planes", "--model", digits_checkpoint, "--n-points", N_POINTS, "--class", "1,3",
          "--dims", "2,16,64", "--planes", 2, "--steps", 15, "--bootstrap", 10, "--device", "cpu"],
         mp.cutting_planes(model, data, classes=[1, 3], dims=(2, 16, 64), planes=2, steps=15,
                           n_bootstrap=10)),
    ]  # fmt: skip
    for args, result in cases:
        expected = cli_json(tmp_path, *args, code=3 if nothing_measured(result) else 0)
        got = plain(result)
        if result.command == "collapse":  # the command line always reports its checkpoints
            expected["source"].pop("models")
            expected["summary"].pop("checkpoints")
        if result.command == "cutting-planes":  # the classes as given: "1,3" on the line, [1, 3] here
            assert (expected["params"].pop("classes"), got["params"].pop("classes")) == ("1,3", [1, 3])
        assert got == expected, result.command


def test_a_tensor_a_dataset_a_dataloader_and_dict_batches_give_the_same_numbers(model, data):
    x = data.inputs().clone()
    y = torch.as_tensor(data.labels)

    class Dicts(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return {"input": x[i], "labels": y[i]}  # nn.Sequential.forward(input)

    forms = {
        "load_data": data,
        "tensor": x,
        "array": x.numpy(),
        "dataset": TensorDataset(x, y),
        "dataloader": DataLoader(TensorDataset(x, y), batch_size=7),
        "dicts": DataLoader(Dicts(), batch_size=7),
    }
    reference = None
    for name, form in forms.items():
        labels = data.labels if name in ("tensor", "array") else None
        acts = mp.extract(model, form, layers=["block2", "pool"])
        ids = mp.intrinsic_dimension(acts, methods=("twonn", "mle")).metrics
        nc = mp.collapse(model, form, layers=["block2", "pool"], labels=labels).metrics
        numbers = {"id": ids, "collapse": nc}
        if reference is None:
            reference = numbers
            continue
        for measure, layers in reference.items():
            for layer, metrics in layers.items():
                for metric, value in metrics.items():
                    got = numbers[measure][layer][metric]
                    assert got == pytest.approx(value, rel=1e-4, abs=1e-6), (name, measure, layer, metric)


def test_results_are_frozen_and_share_one_interface(model, data, tmp_path):
    acts = mp.extract(model, data, layers=["pool", "logits"])
    results = [
        mp.intrinsic_dimension(acts, n_bootstrap=5),
        mp.collapse(acts),
        mp.cutting_planes(model, data, classes=[2], dims=(4, 64), planes=2, steps=10, n_bootstrap=5),
    ]
    for result in results:
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.command = "other"
        for layer in result.layers:
            with pytest.raises(dataclasses.FrozenInstanceError):
                layer.name = "other"
        frame = result.to_frame()
        assert list(frame.columns) == FRAME_COLUMNS
        assert len(frame) == sum(len(m) for m in result.metrics.values()) > 0
        for part, metrics in result.metrics.items():
            for metric, value in metrics.items():
                row = frame[(frame.layer == part) & (frame.metric == metric)]
                assert row.value.iloc[0] == pytest.approx(np.nan if value is None else value, nan_ok=True)
                if metric in result.intervals.get(part, {}):
                    low, high = result.intervals[part][metric]
                    assert [row.low.iloc[0], row.high.iloc[0]] == pytest.approx([low, high])
        assert set(result.details) == set(result.metrics)
        path = result.write(tmp_path / f"{result.command}.json")
        assert json.loads(path.read_text()) == plain(result)
        page = result.to_html(tmp_path / f"{result.command}.html")
        assert page.read_text().startswith("<!DOCTYPE html>")
    interval = results[0].intervals["pool"]["id_twonn"]
    assert interval[0] <= results[0].metrics["pool"]["id_twonn"] <= interval[1]
    assert set(results[2].metrics) == {"class 2"}


def test_bare_arrays_are_one_layer_and_estimators_stay_public():
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, 2 * np.pi, size=(800, 2))
    ring = 2 + np.cos(angles[:, 0])
    torus = np.stack([ring * np.cos(angles[:, 1]), ring * np.sin(angles[:, 1]), np.sin(angles[:, 0])], axis=1)
    result = mp.intrinsic_dimension(torus, methods=("twonn",))
    assert list(result.metrics) == ["points"]
    assert result.metrics["points"]["id_twonn"] == pytest.approx(2.0, abs=0.3)  # a 2-torus in R^3
    assert mp.geometry.twonn(torus).dimension == pytest.approx(result.metrics["points"]["id_twonn"])
    radius = 2.0
    sphere = rng.standard_normal((1500, 3))
    sphere = radius * sphere / np.linalg.norm(sphere, axis=1, keepdims=True)
    assert mp.geometry.curvature(sphere, 2, n_bootstrap=10).metrics()["curvature_sff"] == pytest.approx(
        1 / radius, rel=0.05
    )


# --- a model the user wrote ------------------------------------------------------------------


class Tagger(nn.Module):
    """A model written here, not in the zoo: dict inputs (keyword arguments), a flatten
    between the last block and the head, dropout and batch norm (eval mode matters)."""

    def __init__(self, classes: int = 3, width: int = 12):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.5))
        self.mixer = nn.Sequential(nn.Linear(width, width), nn.Tanh())
        self.classify = nn.Linear(width, classes)

    def forward(self, features, weights):
        hidden = self.mixer(self.encoder(features * weights))
        return self.classify(torch.flatten(hidden, 1) * 2.0)


def _clusters(n=240, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    features = rng.standard_normal((n, 6)).astype(np.float32) + 3.0 * np.eye(6, dtype=np.float32)[labels]
    return torch.from_numpy(features), torch.from_numpy(labels)


class Records(Dataset):
    def __init__(self, features, labels):
        self.features, self.labels = features, labels

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return {"features": self.features[i], "weights": torch.ones(6), "labels": self.labels[i]}


def test_a_user_defined_module_is_measured_end_to_end():
    torch.manual_seed(0)
    model = Tagger()
    features, labels = _clusters()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(features, torch.ones_like(features)), labels).backward()
        optimiser.step()
    model.eval()
    data = Records(features, labels)
    layers = mp.list_layers(model, data)
    names = [layer.name for layer in layers]
    assert names[-1] == "logits" and "mixer" in names and "classify" in names
    assert {layer.name for layer in layers if layer.default} >= {"logits"}

    acts = mp.extract(model, data, layers=["encoder", "mixer", "logits"])
    assert acts["mixer"].shape == (240, 12) and acts.classifier.name == "classify"
    assert acts.labels.tolist() == labels.tolist()
    collapse = mp.collapse(acts)
    # the head's input is mixer's output times 2: no layer holds it, so it is added
    assert [layer.name for layer in collapse.layers] == ["encoder", "mixer", "penultimate", "logits"]
    penultimate = collapse.metrics["penultimate"]
    assert penultimate["nc4_ncc_mismatch"] < 0.05  # well-separated clusters: NCC agrees with the net
    assert penultimate["nc1"] == pytest.approx(collapse.metrics["mixer"]["nc1"], rel=1e-4)  # scale-free
    ids = mp.intrinsic_dimension(acts, methods=("twonn", "pca"))
    assert 1 <= ids.metrics["mixer"]["id_twonn"] <= 12
    curv = mp.curvature(acts, dim=2, n_bootstrap=10)
    assert np.isfinite(curv.metrics["logits"]["mapc"])
    spectra = mp.spectra(model, data, layers=["mixer"])
    assert spectra.metrics["penultimate"]["n_outliers"] >= 1
    assert "fisher_n_outliers" in spectra.metrics["penultimate"]


# --- nothing is changed ----------------------------------------------------------------------


def test_no_function_changes_its_inputs(model, data):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # a user's model may be in training mode: it stays so
    flags = [m.training for m in model.modules()]
    x = data.inputs().clone()
    x_before = x.clone()
    points = np.random.default_rng(0).standard_normal((200, 5))
    points_before = points.copy()
    labels = np.repeat(np.arange(4), 50)
    labels_before = labels.copy()

    acts = mp.extract(model, x, layers=["pool"])
    mp.collapse(model, x, labels=data.labels, layers=["block3"])  # adds `penultimate`, to a copy
    assert list(acts) == ["pool"]
    mp.intrinsic_dimension(points, n_bootstrap=3)
    mp.curvature(points, dim=2, n_bootstrap=3)
    mp.collapse(points, labels=labels, classifier=np.ones((4, 5)))
    mp.cutting_planes(model, data, classes=[0], dims=(64,), planes=1, steps=3, n_bootstrap=0)
    mp.list_layers(model, x)

    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(x, x_before)
    np.testing.assert_array_equal(points, points_before)
    np.testing.assert_array_equal(labels, labels_before)
    model.eval()


def test_library_errors_name_parameters_not_flags(model, data):
    with pytest.raises(mp.InputError, match="neighbourhood: must be knn or perturb") as error:
        mp.curvature(np.zeros((10, 3)), neighbourhood="ball")
    assert error.value.parameter == "neighbourhood" and "--" not in error.value.message
    with pytest.raises(mp.InputError, match="data_key: caching data of type DataLoader needs a data key"):
        mp.extract(model, DataLoader(TensorDataset(data.inputs()), batch_size=7), cache=True)
    with pytest.raises(mp.InputError, match="a model needs data"):
        mp.intrinsic_dimension(model)


def test_importing_the_package_is_light():
    code = (
        "import sys, manifold_probe as mp; heavy = [m for m in ('torch', 'scipy', 'plotly', 'pandas') "
        "if m in sys.modules]; print(heavy, mp.__version__, len(mp.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[] ")


def test_public_names_have_documented_parameters_and_an_example():
    for name in ("load_model", "load_data", "list_layers", "extract", "intrinsic_dimension", "curvature",
                 "collapse", "spectra", "cutting_planes"):  # fmt: skip
        doc = getattr(mp, name).__doc__
        assert "Parameters" in doc and "Returns" in doc and "Example" in doc, name
    assert set(mp.__all__) <= set(dir(mp))
    for name in mp.__all__:
        assert getattr(mp, name) is not None
    assert isinstance(LayerResult, type)


def test_a_cache_is_used_only_when_asked_and_gives_the_same_arrays(model, data, tmp_path):
    first = mp.extract(model, data, layers=["block2", "pool"], cache=tmp_path / "cache")
    assert not any(record.from_cache for record in first.info.values())
    again = mp.extract(model, data, layers=["block2", "pool"], cache=tmp_path / "cache")
    assert all(record.from_cache for record in again.info.values())
    for name in ("block2", "pool"):
        np.testing.assert_array_equal(first[name], again[name])
    np.testing.assert_array_equal(first.module_inputs["head"], again.module_inputs["head"])
    in_memory = mp.extract(model, data, layers=["pool"])
    assert not in_memory.info["pool"].on_disk and not in_memory.info["pool"].from_cache
    assert not (tmp_path / "elsewhere").exists()


def test_perturbed_neighbourhoods_through_the_api_equal_the_command_line(tmp_path, digits_checkpoint, model):
    data = mp.load_data("digits", n_points=30, seed=0)
    result = mp.curvature(model, data, neighbourhood="perturb", n_top=8, n_toggle=4, dim=2, n_bootstrap=10,
                          layers=["pool", "logits"])  # fmt: skip
    expected = cli_json(tmp_path, "curvature", "--model", digits_checkpoint, "--n-points", 30, "--no-cache",
                        "--device", "cpu", "--neighbourhood", "perturb", "--n-top", 8, "--n-toggle", 4,
                        "--dim", 2, "--bootstrap", 10, "--layers", "pool,logits",
                        code=3 if nothing_measured(result) else 0)  # fmt: skip
    assert plain(result) == expected
    with pytest.raises(mp.InputError, match="neighbourhood: perturb needs a model"):
        mp.curvature(np.random.default_rng(0).normal(size=(50, 4)), neighbourhood="perturb")


def test_one_registry_names_the_measures_of_the_cli_the_sweep_and_the_api():
    from manifold_probe import api, registry
    from manifold_probe_cli.main import HAND_WRITTEN, build_app

    commands = {command.name for command in build_app().registered_commands}
    for measure in registry.measures():
        assert measure.name in commands or measure.name in HAND_WRITTEN, measure.name  # family: curvature
        assert measure.api_name in mp.__all__
        assert (
            getattr(mp, measure.api_name)
            is getattr(api, measure.api_name)
            is registry.resolve(measure.function)
        )
    assert registry.sweep_measures() == (
        "id",
        "curvature",
        "multiscale",
        "collapse",
        "spectra",
        "cutting-planes",
    )


def test_the_command_line_reads_the_librarys_parameters_as_its_flags(tmp_path, capsys):
    points = tmp_path / "x.npy"
    np.save(points, np.random.default_rng(0).normal(size=(60, 3)))
    assert main(["curvature", "--points", str(points), "--neighbourhood", "perturb", "-q"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error: --neighbourhood: perturb needs a model" in err  # the flag, from the parameter's name
    assert main(["id", "--points", str(points), "--bootstrap", "-1", "-q"]) == 2
    assert "--bootstrap" in capsys.readouterr().err  # typer's own check names the flag as well
    with pytest.raises(mp.InputError, match=r"classifier: the model has no nn.Linear classifier") as error:
        mp.collapse(nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()), torch.zeros(4, 1, 8, 8),
                    labels=[0, 1, 0, 1], classifier=True)  # fmt: skip
    assert "--" not in error.value.message
