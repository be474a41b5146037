"""Layer extraction: hooks against hand-written forwards, layer naming and selection,
reductions, the on-disk cache (reuse, killed writes) and the memory bound."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from manifold_probe.errors import InputError
from manifold_probe.extraction import (
    ActivationCache,
    CacheKey,
    LayerInfo,
    default_layers,
    extract,
    list_layers,
    parse_reduction,
    parse_reduction_options,
    resolve_reductions,
    select_layers,
)
from manifold_probe.extraction.hooks import first_tensor
from manifold_probe.extraction.reductions import Reduction, make_reducer, projection_matrix

REPO = Path(__file__).resolve().parents[1]


def seeded(module: nn.Module, seed: int) -> nn.Module:
    """Give every parameter N(0, 0.5^2) values from a private generator (no global RNG)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


def inputs(n: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


class Pair(nn.Module):
    """Returns a tuple: the extractor must take its first tensor."""

    def forward(self, h):
        return torch.tanh(h), h * 2


class Tricky(nn.Module):
    """In-place ReLU after a conv (overwrites the conv output), a Linear and the ReLU each
    called twice, a tuple-returning module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(64, 16)
        self.shared = nn.Linear(16, 16)
        self.pair = Pair()
        self.head = nn.Linear(16, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.relu(self.conv(x)).flatten(1)
        h = self.shared(self.fc(h))
        h = self.shared(self.relu(h))
        h, _ = self.pair(h)
        return self.head(h)


def tricky_by_hand(model: Tricky, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer of `Tricky`, computed with functional ops from its weights."""
    out = {}
    out["conv"] = F.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
    out["relu"] = out["conv"].clamp(min=0)
    out["fc"] = out["relu"].flatten(1) @ model.fc.weight.T + model.fc.bias
    out["shared"] = out["fc"] @ model.shared.weight.T + model.shared.bias
    out["relu#2"] = out["shared"].clamp(min=0)
    out["shared#2"] = out["relu#2"] @ model.shared.weight.T + model.shared.bias
    out["pair"] = torch.tanh(out["shared#2"])
    out["logits"] = out["pair"] @ model.head.weight.T + model.head.bias
    return {name: value.reshape(len(x), -1).detach().numpy() for name, value in out.items()}


TRICKY_LAYERS = ["conv", "relu", "fc", "shared", "relu#2", "shared#2", "pair", "logits"]


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.bn(self.conv(x)))


class SmallResNet(nn.Module):
    """The shape of torchvision's ResNet: a stem, Sequentials of blocks, pooling, a head."""

    def __init__(self, width=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Block(width), Block(width))
        self.layer2 = nn.Sequential(Block(width), Block(width))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(width, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x)


class Images(Dataset):
    """(image, label) pairs: the way data sets reach the extractor."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


# ---------------------------------------------------------------- capture -----


def test_tricky_model_matches_hand_written_forward(tmp_path):
    model = seeded(Tricky(), 1)
    x = inputs(10, 1, 4, 4)
    expected = tricky_by_hand(model, x)
    assert (expected["conv"] < 0).any()  # the in-place ReLU really overwrites something
    acts = extract(model, x, TRICKY_LAYERS, batch_size=4, use_cache=False)
    assert list(acts) == TRICKY_LAYERS
    for name in TRICKY_LAYERS:
        np.testing.assert_allclose(acts[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
        assert acts[name].dtype == np.float32
    assert model.calls == 3  # one forward per batch of 4, 4, 2
    assert acts.info["conv"].shape == (4, 4, 4)
    assert acts.labels is None


def test_stops_after_the_last_wanted_layer():
    model = seeded(Tricky(), 1)
    x = inputs(6, 1, 4, 4)
    acts = extract(model, x, ["fc"], use_cache=False)
    np.testing.assert_allclose(acts["fc"], tricky_by_hand(model, x)["fc"], rtol=1e-5, atol=1e-5)


def test_eval_mode_is_used_and_training_flags_restored():
    model = seeded(SmallResNet(), 2)
    x = inputs(8, 1, 6, 6)
    model.train()
    model.layer1[0].bn.eval()  # a mixed state that must come back as it was
    acts = extract(model, x, ["logits"], use_cache=False)
    flags = {name: module.training for name, module in model.named_modules()}
    assert flags[""] and flags["layer1.0"] and not flags["layer1.0.bn"]
    model.eval()
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(acts["logits"], expected, rtol=1e-5, atol=1e-6)


def test_dataset_labels_and_variable_shapes_error():
    x, y = inputs(9, 1, 4, 4), np.arange(9) % 3
    acts = extract(seeded(Tricky(), 1), Images(x, y), ["pair"], batch_size=4, use_cache=False)
    np.testing.assert_array_equal(acts.labels, y)

    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(1, 4 + 2 * i, 4 + 2 * i)

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    with pytest.raises(InputError, match="shape"):
        extract(model, Ragged(), ["0"], batch_size=1, use_cache=False)


def test_unknown_or_unproduced_layers_are_input_errors():
    model = seeded(Tricky(), 1)
    x = inputs(4, 1, 4, 4)
    with pytest.raises(InputError, match="no layer 'nope'"):
        extract(model, x, ["nope"], use_cache=False)
    with pytest.raises(InputError, match="ran 2 time"):
        extract(model, x, ["shared#3"], use_cache=False)


# ------------------------------------------------------------ layer names -----


def test_list_layers_names_shapes_and_call_index():
    layers = list_layers(seeded(Tricky(), 1), inputs(2, 1, 4, 4))
    assert layers == [
        LayerInfo("conv", "Conv2d", (4, 4, 4), 1, layout="channels_first"),
        LayerInfo("relu", "ReLU", (4, 4, 4), 1, layout="channels_first"),
        LayerInfo("fc", "Linear", (16,), 1),
        LayerInfo("shared", "Linear", (16,), 1),
        LayerInfo("relu#2", "ReLU", (16,), 2),
        LayerInfo("shared#2", "Linear", (16,), 2),
        LayerInfo("pair", "Pair", (16,), 1),
        LayerInfo("head", "Linear", (3,), 1),
        LayerInfo("logits", "Tricky", (3,), 1),
    ]


def test_default_layers_of_a_resnet_shape():
    model = SmallResNet()
    names = default_layers(model, inputs(2, 1, 6, 6))
    # stem conv+bn+relu is one unit (its relu); blocks; pool (+flatten, dropout); fc = logits
    assert names == ["relu", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "avgpool", "logits"]


def test_default_layers_of_sequential_models():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3))
    assert default_layers(mlp, inputs(2, 1, 4, 4)) == ["2", "logits"]
    cnn = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(8, 3),
    )
    assert default_layers(cnn, inputs(2, 1, 4, 4)) == ["0.2", "0.3", "logits"]


def test_default_layers_of_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10)
    names = default_layers(model, inputs(1, 3, 32, 32))
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert names == ["relu", "maxpool", *blocks, "avgpool", "logits"]


def test_glob_selection_is_in_model_order_and_bad_patterns_fail():
    model, x = seeded(Tricky(), 1), inputs(2, 1, 4, 4)
    assert select_layers(model, x, ["logits", "shared*"]) == ["shared", "shared#2", "logits"]
    assert select_layers(model, x, ["relu#2,conv"]) == ["conv", "relu#2"]
    assert select_layers(model, x, None) == default_layers(model, x)
    with pytest.raises(InputError, match="matches no layer.*mprobe layers") as info:
        select_layers(model, x, ["conv", "layer9.*"])
    assert "conv" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_torchscript_gives_logits_only():
    model = seeded(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), 3)
    scripted = torch.jit.script(model)
    x = inputs(5, 4)
    assert [info.name for info in list_layers(scripted, x)] == ["logits"]
    acts = extract(scripted, x, ["logits"], use_cache=False)
    np.testing.assert_allclose(acts["logits"], model(x).detach().numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="TorchScript"):
        select_layers(scripted, x, ["1"])
    with pytest.raises(InputError, match="TorchScript"):
        extract(scripted, x, ["1"], use_cache=False)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torch_export_gives_logits_only():
    model = seeded(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)), 3)
    x = inputs(5, 4)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (x[:2],), dynamic_shapes=({0: batch},)).module()
    assert [info.name for info in list_layers(exported, x)] == ["logits"]
    acts = extract(exported, x, ["logits"], batch_size=2, use_cache=False)
    np.testing.assert_allclose(acts["logits"], model(x).detach().numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="torch.export"):
        select_layers(exported, x, ["0"])
    with pytest.raises(InputError, match="torch.export"):
        extract(exported, x, ["0"], use_cache=False)


def test_first_tensor_of_structured_outputs():
    a, b = torch.zeros(2, 3), torch.ones(2, 4)
    assert first_tensor(a) is a
    assert first_tensor((None, [b, a])) is b
    assert first_tensor({"loss": None, "logits": a, "hidden": b}) is a
    assert first_tensor(("text", 3)) is None


# ------------------------------------------------------------- reductions -----


def test_parse_reduction_and_plans():
    assert parse_reduction(" Project:16 ") == Reduction("project", 16)
    assert parse_reduction("avgpool").spec == "avgpool"
    assert parse_reduction("token:-1") == Reduction("token", -1)
    for bad in ["project", "project:0", "project:-3", "pool", "project:x", "", "token", "token:x"]:
        with pytest.raises(InputError, match="avgpool, cls, mean, last, token:I or project:N"):
            parse_reduction(bad)
    layers = ["conv", "layer1.0", "layer1.1", "logits"]
    plan = resolve_reductions({"default": "avgpool", "layer1.*": "project:8", "logits": "none"}, layers)
    assert [plan[n].spec for n in layers] == ["avgpool", "project:8", "project:8", "none"]
    with pytest.raises(InputError, match="matches none"):
        resolve_reductions({"layer9": "none"}, layers)
    assert parse_reduction_options(["avgpool"]) == "avgpool"
    assert parse_reduction_options(["avgpool", "logits=none"]) == {
        "default": "avgpool",
        "logits": "none",
    }
    with pytest.raises(InputError):
        parse_reduction_options(["logits=pool"])


def test_avgpool_means_over_spatial_dimensions():
    x = inputs(5, 3, 4, 6)
    pooled = make_reducer(Reduction("avgpool"), (3, 4, 6), layer="l")(x)
    np.testing.assert_allclose(pooled, x.numpy().mean(axis=(2, 3)), rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match=r"^reduction avgpool .* layer 'l' gives a token sequence \(3x7"):
        make_reducer(Reduction("avgpool"), (3, 7), layer="l")
    vectors = inputs(5, 9)
    np.testing.assert_array_equal(make_reducer(Reduction("avgpool"), (9,), layer="l")(vectors), vectors)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    images = inputs(6, 1, 4, 4)
    acts = extract(model, images, ["0", "logits"], reduction="avgpool", use_cache=False)
    np.testing.assert_allclose(acts["0"], model[0](images).mean(dim=(2, 3)).detach(), atol=1e-6)
    assert acts.info["0"].shape == (3, 2, 2) and acts["0"].shape == (6, 3)
    assert acts["logits"].shape == (6, 2)


def test_projection_is_seeded_streamable_and_norm_preserving():
    x = inputs(400, 2, 10, 10)  # D = 200
    flat = x.reshape(400, -1)

    def project(seed, layer="l", max_matrix_bytes=2**30):
        reducer = make_reducer(
            Reduction("project", 64),
            (2, 10, 10),
            layer=layer,
            seed=seed,
            max_matrix_bytes=max_matrix_bytes,
        )
        return reducer(x).numpy()

    first = project(0)
    np.testing.assert_array_equal(first, project(0))
    assert not np.allclose(first, project(1)) and not np.allclose(first, project(0, "m"))
    np.testing.assert_allclose(first, flat @ projection_matrix(0, "l", 200, 64), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(project(0, max_matrix_bytes=0), first, rtol=1e-4, atol=1e-4)
    ratio = (first**2).sum(axis=1) / (flat.numpy() ** 2).sum(axis=1)
    assert abs(ratio.mean() - 1) < 0.05  # each ratio ~ chi2_64 / 64: sd 0.18, mean sd 0.009
    matrix = projection_matrix(0, "l", 200, 64).numpy()
    assert abs(matrix.var() * 64 - 1) < 0.05 and abs(matrix.mean()) < 0.01


def test_projection_in_extract_uses_the_layer_name_and_seed():
    model = seeded(Tricky(), 1)
    x = inputs(12, 1, 4, 4)
    acts = extract(model, x, ["conv", "fc"], reduction="project:8", seed=5, use_cache=False)
    expected = tricky_by_hand(model, x)["conv"] @ projection_matrix(5, "conv", 64, 8).numpy()
    np.testing.assert_allclose(acts["conv"], expected, rtol=1e-4, atol=1e-4)
    assert acts.info["conv"].reduction == "project:8" and acts["fc"].shape == (12, 8)


def test_projection_never_maps_a_layer_up():
    """project:N above a layer's width is refused, naming the parameter and the layer (the 16-wide
    fc and the 3 logits of Tricky); a plan keeps such a layer at its own width; N = width is allowed."""
    model = seeded(Tricky(), 1)
    x = inputs(12, 1, 4, 4)
    refused = r"reduction: project:32 would map layer 'fc' \(16 features\) up"
    with pytest.raises(InputError, match=refused) as caught:
        extract(model, x, ["conv", "fc"], reduction="project:32", use_cache=False)
    assert caught.value.parameter == "reduction" and "--reduction fc=none" in str(caught.value)
    plan = {"default": "project:32", "fc": "none"}
    acts = extract(model, x, ["conv", "fc"], reduction=plan, use_cache=False)
    assert acts["conv"].shape == (12, 32) and acts["fc"].shape == (12, 16)
    assert acts.info["fc"].reduction == "none"
    assert extract(model, x, ["fc"], reduction="project:16", use_cache=False)["fc"].shape == (12, 16)
    with pytest.raises(InputError, match="reduction: project:4 would map layer 'logits'"):
        Reduction("project", 4).for_shape((3,), layer="logits")


# ------------------------------------------------------------------ cache -----


def cached_extract(model, data, layers, cache_dir, **kwargs):
    return extract(
        model,
        data,
        layers,
        cache_dir=cache_dir,
        model_key="weights-1",
        data_key="data-1",
        batch_size=4,
        **kwargs,
    )


def test_cache_is_reused_without_a_forward_pass(tmp_path):
    model = seeded(Tricky(), 1)
    x, y = inputs(10, 1, 4, 4), np.arange(10) % 2
    expected = tricky_by_hand(model, x)
    first = cached_extract(model, Images(x, y), ["conv", "pair"], tmp_path)
    assert model.calls == 3 and not first.info["conv"].from_cache
    again = cached_extract(model, Images(x, y), ["conv", "pair"], tmp_path)
    assert model.calls == 3  # nothing ran
    assert all(again.info[name].from_cache for name in again)
    assert isinstance(again["conv"], np.memmap) and not again["conv"].flags.writeable
    np.testing.assert_allclose(again["conv"], expected["conv"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(again.labels, y)
    assert again.info["conv"].shape == (4, 4, 4)
    more = cached_extract(model, Images(x, y), ["conv", "shared#2"], tmp_path)
    assert model.calls == 6 and more.info["conv"].from_cache and not more.info["shared#2"].from_cache
    np.testing.assert_allclose(more["shared#2"], expected["shared#2"], rtol=1e-5, atol=1e-5)
    other = cached_extract(model, Images(x, y), ["conv"], tmp_path, reduction="avgpool")
    assert model.calls == 9 and other["conv"].shape == (10, 4)  # the reduction is in the key


def test_half_written_entries_are_never_used(tmp_path):
    model = seeded(Tricky(), 1)
    x = inputs(10, 1, 4, 4)
    expected = tricky_by_hand(model, x)["conv"]
    cached_extract(model, x, ["conv"], tmp_path, reduction="none")
    key = CacheKey("weights-1", "data-1", "conv", "none")
    folder = tmp_path / "activations" / key.digest()[:2]
    array_path, sidecar_path = folder / f"{key.digest()}.npy", folder / f"{key.digest()}.json"
    # a killed writer: a garbage array renamed into place, its sidecar never written
    sidecar_path.unlink()
    np.save(array_path, np.zeros((10, 64), np.float32))
    (folder / f"{key.digest()}.otherhost-1-abcd.partial").write_bytes(b"junk")
    acts = cached_extract(model, x, ["conv"], tmp_path, reduction="none")
    assert model.calls == 6 and not acts.info["conv"].from_cache
    np.testing.assert_allclose(acts["conv"], expected, rtol=1e-5, atol=1e-5)
    # a damaged sidecar or a truncated array is ignored too
    sidecar_path.write_text("{not json")
    assert ActivationCache(tmp_path).lookup(key) is None
    cached_extract(model, x, ["conv"], tmp_path, reduction="none")
    with open(array_path, "r+b") as handle:
        handle.truncate(os.path.getsize(array_path) - 8)
    assert ActivationCache(tmp_path).lookup(key) is None
    acts = cached_extract(model, x, ["conv"], tmp_path, reduction="none")
    np.testing.assert_allclose(acts["conv"], expected, rtol=1e-5, atol=1e-5)


def test_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path):
    cache = ActivationCache(tmp_path)
    key = CacheKey("m", "d", "layer", "none")
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    first, second = cache.create(key, (4, 3)), cache.create(key, (4, 3))
    assert first.partial_path != second.partial_path
    first.array[:] = values
    second.array[:2] = values[:2]
    assert cache.lookup(key) is None
    first.commit()
    np.testing.assert_array_equal(cache.lookup(key).array, values)
    second.array[2:] = values[2:]
    second.commit()
    np.testing.assert_array_equal(cache.lookup(key).array, values)
    assert not list((tmp_path / "activations").rglob("*.partial"))


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from torch import nn
    from manifold_probe.extraction import extract

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.batches = 0

        def forward(self, x):
            self.batches += 1
            if self.batches == 2:  # the first batch is in the partial memmap by now
                Path(sys.argv[2]).write_text("ready")
                time.sleep(60)
            return self.fc(x)

    model = Slow()
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(12.0).reshape(3, 4) / 10)
        model.fc.bias.zero_()
    x = torch.arange(40.0).reshape(10, 4)
    extract(model, x, ["fc"], batch_size=4, cache_dir=sys.argv[1],
            model_key="weights-1", data_key="data-1")
    """
)


class WrappedLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def test_a_killed_write_is_recomputed(tmp_path):
    ready = tmp_path / "ready"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "c"), str(ready)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "the writer never got to its second batch"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    folder = tmp_path / "c" / "activations"
    assert list(folder.rglob("*.partial")) and not list(folder.rglob("*.json"))
    model = WrappedLinear()
    with torch.no_grad():
        model.fc.weight.copy_(torch.arange(12.0).reshape(3, 4) / 10)
        model.fc.bias.zero_()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    x = torch.arange(40.0).reshape(10, 4)
    acts = extract(
        model,
        x,
        ["fc"],
        batch_size=4,
        cache_dir=tmp_path / "c",
        model_key="weights-1",
        data_key="data-1",
    )
    assert len(calls) == 3 and not acts.info["fc"].from_cache
    np.testing.assert_allclose(acts["fc"], (x @ model.fc.weight.T).detach(), rtol=1e-6)
    assert not list(folder.rglob("*.partial"))  # the dead writer's leftover is gone
    sidecar = json.loads(next(folder.rglob("*.json")).read_text())
    assert sidecar["shape"] == [10, 3] and sidecar["key"]["layer"] == "fc"


# ----------------------------------------------------------------- memory -----


def test_small_max_memory_spills_to_disk_in_model_order(tmp_path):
    model = seeded(Tricky(), 1)
    x = inputs(10, 1, 4, 4)
    expected = tricky_by_hand(model, x)
    # greedy in model order: conv (10 x 64 floats = 2560 bytes) fits, relu (2560) no longer
    # fits the 1000 left, fc (640) does, then only logits (120) fits the 360 left
    acts = extract(
        model, x, TRICKY_LAYERS, batch_size=3, use_cache=False, max_memory=3560, cache_dir=tmp_path
    )
    on_disk = [name for name in TRICKY_LAYERS if acts.info[name].on_disk]
    assert on_disk == ["relu", "shared", "relu#2", "shared#2", "pair"]
    assert all(isinstance(acts[name], np.memmap) == (name in on_disk) for name in TRICKY_LAYERS)
    for name in TRICKY_LAYERS:
        np.testing.assert_allclose(acts[name], expected[name], rtol=1e-5, atol=1e-5, err_msg=name)
    spilled = list(tmp_path.rglob("*.npy"))
    assert len(spilled) == len(on_disk)
    assert not (tmp_path / "activations").exists()  # the cache stayed off
    acts.close()
    assert not any(path.exists() for path in spilled)
    with extract(model, x, ["conv"], use_cache=False, max_memory=0, cache_dir=tmp_path) as acts:
        assert isinstance(acts["conv"], np.memmap)
        np.testing.assert_allclose(acts["conv"], expected["conv"], rtol=1e-5, atol=1e-5)
