"""The zoo, and every way `load_model` reads a model: checkpoint, state_dict, TorchScript,
torch.export, trusted pickle; refusals of unsafe pickles, mismatched and broken files; digests."""

import hashlib
import os
import pickle
import struct
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.sources import zoo
from manifold_probe.sources.checkpoint import FORMAT, make_checkpoint, save_checkpoint
from manifold_probe.sources.models import load_model, weights_digest


def _digits_cnn(seed=0, **args):
    torch.manual_seed(seed)
    return zoo.build_model("digits-cnn", width=4, depth=2, **args).eval()


def _inputs(seed=1, shape=(5, 1, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _checkpoint(module, arch="digits-cnn", arch_args=None):
    return make_checkpoint(
        arch=arch,
        arch_args=arch_args or {"width": 4, "depth": 2},
        state_dict=module.state_dict(),
        data="digits",
        split_seed=0,
        seed=0,
        metrics={"train_accuracy": 0.5, "test_accuracy": 0.4, "train_loss": 1.0, "test_loss": 1.2},
        epoch=3,
        training={"lr": 0.1},
    )


# --- the zoo -------------------------------------------------------------------------------


def test_digits_cnn_blocks_are_named_children_with_the_expected_shapes():
    model = zoo.build_model("digits-cnn")
    assert [name for name, _ in model.named_children()] == [
        "block1",
        "block2",
        "block3",
        "pool",
        "head",
    ]
    x = _inputs(shape=(2, 1, 8, 8))
    shapes = []
    for name, child in model.named_children():
        x = child(x)
        shapes.append((name, tuple(x.shape)))
    # pooling while the map is at least 4 wide: 8 -> 4 -> 2, then 2 stays
    assert shapes == [
        ("block1", (2, 32, 4, 4)),
        ("block2", (2, 32, 2, 2)),
        ("block3", (2, 32, 2, 2)),
        ("pool", (2, 32)),
        ("head", (2, 10)),
    ]
    assert isinstance(model.head, nn.Linear)
    assert zoo.input_shape("digits-cnn", {"in_channels": 3, "input_size": 32}) == (3, 32, 32)
    cifar = zoo.build_model("digits-cnn", in_channels=3, input_size=32, depth=4)
    assert cifar(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_default_layer_selection_gives_one_layer_per_block():
    from manifold_probe.extraction.layers import default_layers

    x = torch.zeros(2, 1, 8, 8)
    cnn = zoo.build_model("digits-cnn").eval()
    assert default_layers(cnn, x) == ["block1", "block2", "block3", "pool", "logits"]
    mlp = zoo.build_model("digits-mlp", depth=2).eval()
    assert default_layers(mlp, x) == ["hidden1", "hidden2", "logits"]


def test_digits_mlp_depth_one_is_the_one_hidden_layer_net():
    model = zoo.build_model("digits-mlp", depth=1, width=32)
    assert [name for name, _ in model.named_children()] == ["hidden1", "head"]
    n_parameters = sum(p.numel() for p in model.parameters())
    assert n_parameters == (64 * 32 + 32) + (32 * 10 + 10)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize(
    "channels, size, expected",
    [
        (
            1,
            8,
            [("stem", (16, 8, 8)), ("block1", (16, 8, 8)), ("block2", (32, 4, 4)), ("block3", (32, 4, 4))],
        ),
        (
            1,
            28,
            [
                ("stem", (16, 28, 28)),
                ("block1", (16, 28, 28)),
                ("block2", (32, 14, 14)),
                ("block3", (64, 7, 7)),
            ],
        ),
        (
            3,
            32,
            [
                ("stem", (16, 32, 32)),
                ("block1", (16, 32, 32)),
                ("block2", (32, 16, 16)),
                ("block3", (64, 8, 8)),
            ],
        ),
    ],
)
def test_small_resnet_halves_the_map_and_doubles_channels_down_to_eight_pixels(channels, size, expected):
    from manifold_probe.extraction.layers import default_layers, list_layers

    model = zoo.build_model("small-resnet", width=16, depth=3, in_channels=channels, input_size=size).eval()
    x = torch.randn(2, channels, size, size)
    shapes = {info.name: info.output_shape for info in list_layers(model, x)}
    names = default_layers(model, x)
    assert names == [name for name, _ in expected] + ["pool", "logits"]
    assert [(name, shapes[name]) for name, _ in expected] == expected
    assert model(x).shape == (2, 10)
    block = model.block2  # a residual block really adds its input: zero conv2 and bn2 leave the shortcut
    torch.nn.init.zeros_(block.bn2.weight)
    torch.nn.init.zeros_(block.bn2.bias)
    h = model.block1(model.stem(x))
    torch.testing.assert_close(block(h), torch.relu(block.shortcut(h)))


def test_zoo_errors_and_torchvision():
    with pytest.raises(InputError, match="did you mean digits-cnn"):
        zoo.build_model("digit-cnn")
    with pytest.raises(InputError, match="no argument 'widht'"):
        zoo.build_model("digits-cnn", widht=3)
    with pytest.raises(InputError, match="depth: must be a whole number of at least 1"):
        zoo.build_model("digits-mlp", depth=0)
    with pytest.raises(InputError, match="close matches: resnet18"):
        zoo.build_model("torchvision:resnet81")
    model = zoo.build_model("torchvision:resnet18", num_classes=7)
    assert model.fc.out_features == 7
    assert "digits-cnn" in zoo.ARCHITECTURES and "digits-mlp" in zoo.ARCHITECTURES


# --- loading -------------------------------------------------------------------------------


def test_project_checkpoint_round_trip(tmp_path):
    module = _digits_cnn()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _checkpoint(module))
    assert torch.load(path, weights_only=True)["format"] == FORMAT
    loaded = load_model(path)
    assert loaded.kind == "checkpoint" and not loaded.module.training
    assert torch.equal(loaded.module(_inputs()), module(_inputs()))
    assert loaded.input_shape == (1, 8, 8) and loaded.num_classes == 10
    assert loaded.arch_args == {"width": 4, "depth": 2, "num_classes": 10, "in_channels": 1, "input_size": 8}
    assert "state_dict" not in loaded.checkpoint and loaded.checkpoint["epoch"] == 3
    assert loaded.digest == weights_digest(module.state_dict())
    assert "digits-cnn(" in loaded.description


def test_newer_checkpoint_format_is_refused(tmp_path):
    ckpt = _checkpoint(_digits_cnn())
    ckpt["format"] = "manifold-probe/checkpoint@9"
    torch.save(ckpt, tmp_path / "new.pt")
    with pytest.raises(InputError, match="checkpoint@9 file"):
        load_model(tmp_path / "new.pt")


def test_torchvision_state_dict_needs_arch_and_fitting_shapes(tmp_path):
    torch.manual_seed(0)
    model = zoo.build_model("torchvision:resnet18", num_classes=10).eval()
    path = tmp_path / "resnet.pt"
    torch.save(model.state_dict(), path)
    x = _inputs(shape=(2, 3, 32, 32))
    loaded = load_model(path, arch="torchvision:resnet18", num_classes=10)
    assert loaded.kind == "state_dict" and loaded.input_shape is None and loaded.num_classes == 10
    assert torch.equal(loaded.module(x), model(x))
    with pytest.raises(InputError, match="--arch .*--num-classes"):
        load_model(path)
    with pytest.raises(InputError, match=r"fc\.weight is \(10, 512\) in the file but \(5, 512\)"):
        load_model(path, arch="torchvision:resnet18", num_classes=5)
    with pytest.raises(InputError, match="unexpected .* and .* more"):
        load_model(path, arch="digits-cnn")


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict"])
def test_wrapped_and_prefixed_state_dict(tmp_path, wrapper):
    module = zoo.build_model("digits-mlp", depth=1).eval()
    state = {f"module.{k}": v for k, v in module.state_dict().items()}  # as DataParallel saves
    path = tmp_path / "wrapped.pt"
    torch.save({wrapper: state, "epoch": 4}, path)
    loaded = load_model(path, arch="digits-mlp", arch_args={"depth": 1})
    assert torch.equal(loaded.module(_inputs()), module(_inputs()))
    assert loaded.arch_args["depth"] == 1
    with pytest.raises(InputError, match=r"head\.weight is \(10, 32\) in the file but \(5, 32\)"):
        load_model(path, arch="digits-mlp", arch_args={"depth": 1}, num_classes=5)
    with pytest.raises(InputError, match="missing hidden2.linear.weight"):
        load_model(path, arch="digits-mlp")  # default depth 3


def test_torchscript_archive_loads_without_deprecation_noise(tmp_path):
    module = _digits_cnn()
    path = tmp_path / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module).save(str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(path)
    assert not [w for w in caught if "deprecated" in str(w.message)]
    assert loaded.kind == "torchscript" and not loaded.module.training
    assert torch.allclose(loaded.module(_inputs()), module(_inputs()), atol=1e-6)
    assert loaded.digest == weights_digest(module.state_dict())


def test_torch_export_program_loads(tmp_path):
    module = _digits_cnn()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, (_inputs(),), dynamic_shapes=({0: batch},))
    path = tmp_path / "model.pt2"
    torch.export.save(program, str(path))
    loaded = load_model(path)
    assert loaded.kind == "export" and loaded.input_shape == (1, 8, 8)
    x = _inputs(seed=2, shape=(3, 1, 8, 8))
    assert torch.allclose(loaded.module(x), module(x), atol=1e-6)


def test_whole_pickled_module_needs_trust(tmp_path):
    module = _digits_cnn()
    path = tmp_path / "whole.pt"
    torch.save(module, path)
    with pytest.raises(InputError, match="DigitsCNN.*--trust-checkpoint"):
        load_model(path)
    loaded = load_model(path, trust_checkpoint=True)
    assert loaded.kind == "pickle" and not loaded.module.training
    assert torch.equal(loaded.module(_inputs()), module(_inputs()))


class _Planted:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        ("torch.save", r"\(io\.open\).*--trust-checkpoint"),
        ("pickle protocol 2", r"\(io\.open\).*--trust-checkpoint"),
        ("pickle protocol 5", "not a file written by torch.save"),
    ],
)
def test_malicious_pickle_is_not_run_without_trust(tmp_path, writer, message):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save({"state_dict": _Planted(marker)}, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(_Planted(marker), handle, protocol=int(writer[-1]))
    with pytest.raises(InputError, match=message):
        load_model(path)
    assert not marker.exists()
    # the payload is live: trusting the file runs it (and then fails: it is no model)
    with pytest.raises(InputError):
        load_model(path, trust_checkpoint=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage " * 20, "truncated"],
)
def test_broken_files_give_one_clear_line(tmp_path, content):
    path = tmp_path / "broken.pt"
    if content == "truncated":
        torch.save(_digits_cnn().state_dict(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=f"could not read checkpoint {path}") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_missing_file_and_non_model_content(tmp_path):
    with pytest.raises(InputError, match="checkpoint not found"):
        load_model(tmp_path / "absent.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(InputError, match="holds a list, not a model"):
        load_model(tmp_path / "list.pt")


# --- digest --------------------------------------------------------------------------------


def test_digest_follows_the_documented_format():
    state = {"b": torch.tensor([1.5], dtype=torch.float64), "a": torch.arange(3, dtype=torch.int32)}
    sha = hashlib.sha256()
    sha.update(b"a\0torch.int32\0(3,)\x0012\0" + bytes([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]))
    sha.update(b"b\0torch.float64\0(1,)\x008\0" + struct.pack("<d", 1.5))
    assert weights_digest(state) == sha.hexdigest()


def test_digest_is_stable_across_processes_and_changes_with_one_weight(tmp_path):
    module = _digits_cnn()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _checkpoint(module))
    here = load_model(path).digest
    code = f"from manifold_probe.sources.models import load_model; print(load_model({str(path)!r}).digest)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    assert here == there
    state = module.state_dict()
    state["head.bias"][0] = torch.nextafter(state["head.bias"][0], torch.tensor(1e9))
    assert weights_digest(state) != here
