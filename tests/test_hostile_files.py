"""Hardening, second and third rounds: model files that carry code, a CIFAR batch that expands
without bound. Each hostile file is built here; where it would write a marker file, the test
checks the marker never appears without --trust-checkpoint and does appear with it (so the
payload is real and the refusal is what stops it)."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
import shutil
import struct
import subprocess
import warnings
import zipfile

import numpy as np
import pytest
import torch
from fakes import one_line, peak_allocation, run_cli, save_script
from torch import nn

from manifold_probe.errors import InputError
from manifold_probe.sources import model_safety, zoo
from manifold_probe.sources.data import load_data
from manifold_probe.sources.formats.safe_pickle import ArrayUnpickler, read_array_pickle
from manifold_probe.sources.models import load_model


def _digits_cnn():
    torch.manual_seed(0)
    return zoo.build_model("digits-cnn", width=4, depth=2).eval()


class _Plain(nn.Module):
    """A linear net that carries the path a payload writes to (its marker)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


class _FromFile(_Plain):
    """A TorchScript forward that maps (and so creates) a file of its choice."""

    def forward(self, x):
        mapped = torch.from_file(self.marker, True, 16)
        return self.linear(x.flatten(1)) + mapped.sum()


class _SetState(_Plain):
    """A TorchScript module whose __setstate__ (run by torch.jit.load) writes a file."""

    @torch.jit.export
    def __getstate__(self):
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]):
        self.marker = state[0]
        self.training = state[1]
        torch.from_file(self.marker, True, 16)


def _export(path, batch=None):
    """The digits CNN exported with any batch size, or only `batch` when given."""
    shapes = None if batch else ({0: torch.export.Dim("batch")},)
    program = torch.export.export(_digits_cnn(), (torch.zeros(batch or 2, 1, 8, 8),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def _rewrite_archive(source, target, change):
    """Copy the zip archive `source` to `target`, passing each entry through change(name, bytes)."""
    return _rebuild_archive(source, target, lambda name, data: (name, change(name, data)))


def _rebuild_archive(source, target, change=None, extra=()):
    """Copy the zip archive `source` to `target`, each entry through change(name, bytes) ->
    (name, bytes) when given, then add the (name below the root, bytes) pairs of `extra`."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        root = src.namelist()[0].partition("/")[0]
        for info in src.infolist():
            name, data = (change or (lambda n, d: (n, d)))(info.filename, src.read(info.filename))
            out.writestr(name, data)
        for name, data in extra:
            out.writestr(f"{root}/{name}", data)
    return target


def _graph_node_to_from_file(marker):
    """A change that turns the program's first relu node into aten.from_file(marker, shared=True)."""

    def change(name, data):
        if not (name.endswith(".json") and "/models/" in name):
            return data
        program = json.loads(data)
        for node in program["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.relu.default":
                node["target"] = "torch.ops.aten.from_file.default"
                node["inputs"] = [
                    {"name": "filename", "arg": {"as_string": str(marker)}, "kind": 1},
                    {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
                    {"name": "size", "arg": {"as_int": 64}, "kind": 1},
                ]
                break
        return json.dumps(program).encode()

    return change


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickled_sample_inputs(marker):
    """A change that replaces the sample inputs with a pickle that creates `marker` when loaded."""

    def change(name, data):
        if "sample_inputs" not in name:
            return data
        buffer = io.BytesIO()
        torch.save((_Payload(marker),), buffer)
        return buffer.getvalue()

    return change


# --- 1. model files that carry code ------------------------------------------------------


def test_torchscript_calling_from_file_needs_trust(tmp_path, capsys):
    marker = tmp_path / "written-by-the-model"
    evil = save_script(_FromFile(str(marker)), tmp_path / "evil.pt")
    for command in (["layers"], ["id", "--n-points", "60"]):
        code, _, err = run_cli([*command, "--model", evil, "--data", "digits"], capsys)
        assert code == 2
        assert "aten::from_file" in one_line(err) and "--trust-checkpoint" in err
        assert not marker.exists()
    code, _, _ = run_cli(["layers", "--model", evil, "--data", "digits", "--trust-checkpoint"], capsys)
    assert code == 0 and marker.exists()  # the payload is real: trusted, it runs


def test_torchscript_setstate_runs_on_load_so_it_needs_trust(tmp_path):
    marker = tmp_path / "written-while-loading"
    evil = save_script(_SetState(str(tmp_path / "ignored")), tmp_path / "evil.pt")
    with pytest.raises(InputError, match="__setstate__"):
        load_model(evil)
    assert not marker.exists()


def test_export_graph_node_from_file_needs_trust(tmp_path, capsys):
    marker = tmp_path / "written-by-the-graph"
    good = _export(tmp_path / "good.pt2")
    evil = _rewrite_archive(good, tmp_path / "evil.pt2", _graph_node_to_from_file(marker))
    code, _, err = run_cli(["layers", "--model", evil, "--data", "digits"], capsys)
    assert code == 2 and "torch.ops.aten.from_file.default" in one_line(err)
    assert not marker.exists()
    run_cli(["layers", "--model", evil, "--data", "digits", "--trust-checkpoint"], capsys)
    assert marker.exists()  # trusted, the node runs (the forward pass then fails on its output)


def test_export_pickle_in_sample_inputs_runs_on_load_so_it_needs_trust(tmp_path, capsys):
    """torch.export.load falls back to a full pickle load of the sample inputs: code at load time."""
    marker = tmp_path / "written-while-loading"
    good = _export(tmp_path / "good.pt2")
    evil = _rewrite_archive(good, tmp_path / "evil.pt2", _pickled_sample_inputs(marker))
    code, _, err = run_cli(["layers", "--model", evil, "--data", "digits"], capsys)
    assert code == 2 and "sample_inputs" in one_line(err)
    assert not marker.exists()
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        load_model(evil, trust_checkpoint=True)  # the payload runs, then the load fails on its output
    assert marker.exists()


def test_pickled_export_weights_need_trust(tmp_path):
    def pickled_weights(name, data):
        if not name.endswith("model_weights_config.json"):
            return data
        config = json.loads(data)
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        return json.dumps(config).encode()

    evil = _rewrite_archive(_export(tmp_path / "good.pt2"), tmp_path / "evil.pt2", pickled_weights)
    with pytest.raises(InputError, match="pickled or custom object"):
        load_model(evil)


def test_pure_programs_load_without_the_flag(tmp_path):
    """The zoo's nets and a torchvision ResNet, scripted, traced and exported, pass the allowlist."""
    import torchvision

    cnn = _digits_cnn()
    x = torch.randn(2, 1, 8, 8)
    resnet = torchvision.models.resnet18(num_classes=10).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(cnn, x).save(str(tmp_path / "traced.pt"))
        torch.jit.script(resnet).save(str(tmp_path / "resnet.pt"))
    save_script(zoo.build_model("digits-mlp", width=8, depth=2).eval(), tmp_path / "mlp.pt")
    _export(tmp_path / "cnn.pt2")
    for name in ("traced.pt", "resnet.pt", "mlp.pt", "cnn.pt2"):
        assert load_model(tmp_path / name).kind in ("torchscript", "export")


def test_allowlist_holds_no_file_or_process_operator():
    forbidden = {"from_file", "save", "load", "_load_for_mobile", "fork", "wait", "Print"}
    assert not forbidden & (model_safety.PURE_ATEN_OPS | model_safety.TORCHSCRIPT_PRIM_OPS)


# --- 1b. deny by default: hooks of the root module, names torch reads in any case, native code


def _from_file_hook(module: _Plain, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    return output + torch.from_file(module.marker, True, 16).sum()


def _from_file_pre_hook(module: _Plain, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
    return (inputs[0] + torch.from_file(module.marker, True, 16).sum(),)


def _pure_hook(module: _Plain, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    return torch.relu(output)


@pytest.mark.parametrize("hook", ["forward hook", "forward pre-hook"])
def test_a_hook_on_the_root_module_calling_from_file_needs_trust(tmp_path, capsys, hook):
    """The root's hooks are no method and no graph calls them: they run around its forward."""
    marker = tmp_path / "written-by-the-hook"
    module = _Plain(str(marker))
    if hook == "forward hook":
        module.register_forward_hook(_from_file_hook)
    else:
        module.register_forward_pre_hook(_from_file_pre_hook)
    evil = save_script(module, tmp_path / "evil.pt")
    for command in (["layers"], ["id", "--n-points", "60"]):
        code, _, err = run_cli([*command, "--model", evil, "--data", "digits", "--no-cache"], capsys)
        assert code == 2 and "aten::from_file" in one_line(err) and "--trust-checkpoint" in err
        assert not marker.exists()
    run_cli(["layers", "--model", evil, "--data", "digits", "--trust-checkpoint"], capsys)
    assert marker.exists()  # the payload is real: trusted, the hook runs


def test_a_pure_hook_on_the_root_module_loads_without_the_flag(tmp_path):
    module = _Plain(str(tmp_path / "unused"))
    module.register_forward_hook(_pure_hook)
    loaded = load_model(save_script(module, tmp_path / "hooked.pt"))
    assert loaded.kind == "torchscript"
    assert loaded.module(torch.zeros(2, 64)).min() >= 0  # the hook ran: a relu on the output


def _renamed(old: str, new: str, change=None):
    """A change that renames the entry ending in `old` to end in `new` (and passes its bytes
    through `change` first)."""

    def rename(name, data):
        data = change(name, data) if change else data
        return (name[: -len(old)] + new, data) if name.endswith(old) else (name, data)

    return rename


def test_an_export_program_named_in_upper_case_is_refused_before_its_graph_runs(tmp_path, capsys):
    """torch.export.load loads every file under models/ as a program: models/model.JSON too."""
    marker = tmp_path / "written-by-the-graph"
    good = _export(tmp_path / "good.pt2")
    change = _renamed("models/model.json", "models/model.JSON", _graph_node_to_from_file(marker))
    evil = _rebuild_archive(good, tmp_path / "evil.pt2", change)
    code, _, err = run_cli(["layers", "--model", evil, "--data", "digits"], capsys)
    line = one_line(err)
    assert code == 2 and "models/model.JSON" in line and "--trust-checkpoint" in line
    assert not marker.exists()
    run_cli(["layers", "--model", evil, "--data", "digits", "--trust-checkpoint"], capsys)
    assert marker.exists()  # trusted, torch loads the upper-case program and its node runs


def _shared_object(tmp_path, marker):
    """A shared object whose constructor writes `marker` when it is loaded (None without a C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    source = tmp_path / "planted.c"
    source.write_text(
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void planted(void) {\n"
        f'    FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n'
        "}\n"
    )
    library = tmp_path / "planted.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, source], check=True, capture_output=True)
    return library.read_bytes()


def test_a_planted_aotinductor_library_is_refused_and_runs_only_when_trusted(tmp_path, capsys):
    marker = tmp_path / "written-by-the-library"
    library = _shared_object(tmp_path, marker) or b"\x7fELF not compiled here"
    metadata = json.dumps({"AOTI_DEVICE_KEY": "cpu"}).encode()
    planted = [
        ("data/aotinductor/model/model.so", library),
        ("data/aotinductor/model/wrapper_metadata.json", metadata),
        ("data/aotinductor/model/model_metadata.json", metadata),
    ]
    evil = _rebuild_archive(_export(tmp_path / "good.pt2"), tmp_path / "evil.pt2", extra=planted)
    code, _, err = run_cli(["layers", "--model", evil, "--data", "digits"], capsys)
    line = one_line(err)
    assert code == 2 and "AOTInductor compiled code data/aotinductor/model/model.so" in line
    assert not marker.exists()
    if library.startswith(b"\x7fELF not"):
        pytest.skip("no C compiler here to build the positive control's shared object")
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        load_model(evil, trust_checkpoint=True)  # torch's loader opens the library, then fails
    assert marker.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([("data/executorch/model.bin", b"\0")], "an entry it cannot check: data/executorch/model.bin"),
        ([("MODELS/model.json", b"{}")], "one name to torch's zip reader"),
        ([("Data/Sample_Inputs/other.pt", b"\0")], "a pickle entry only if case is ignored"),
    ],
)
def test_unknown_and_case_twin_entries_of_a_program_are_refused(tmp_path, extra, message):
    evil = _rebuild_archive(_export(tmp_path / "good.pt2"), tmp_path / "evil.pt2", extra=extra)
    with pytest.raises(InputError, match=re.escape(message)):
        load_model(evil)


def test_unknown_entries_of_a_torchscript_archive_are_refused(tmp_path):
    good = save_script(_digits_cnn(), tmp_path / "good.pt")
    evil = _rebuild_archive(good, tmp_path / "evil.pt", extra=[("bytecode.pkl", b"\0")])
    with pytest.raises(InputError, match="an entry it cannot check: bytecode.pkl"):
        load_model(evil)
    assert load_model(good).kind == "torchscript"


# --- 4. bounded parsing of CIFAR batches -------------------------------------------------


def _cifar_root(tmp_path, batch_bytes: bytes):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(batch_bytes)
    return tmp_path


def test_nested_shared_lists_in_a_cifar_batch_are_refused_in_bounded_memory(tmp_path):
    nested: list = [0]
    for _ in range(30):
        nested = [nested, nested]  # 2**30 leaves once walked, a few hundred bytes pickled
    bomb = pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": nested})
    assert len(bomb) < 4000
    root = _cifar_root(tmp_path, bomb)

    def refused():
        with pytest.raises(InputError, match="shared reference to a list"):
            load_data(f"cifar10:{root}")

    assert peak_allocation(refused) < 20 * 2**20


def test_cifar_cli_bomb_is_one_line_exit_2(tmp_path, capsys):
    nested: list = [0]
    for _ in range(30):
        nested = [nested, nested]
    root = _cifar_root(tmp_path, pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": nested}))
    model = tmp_path / "cnn.pt"
    save_script(_digits_cnn(), model)
    code, _, err = run_cli(["id", "--model", model, "--data", f"cifar10:{root}"], capsys)
    assert code == 2
    line = one_line(err)
    assert "data_batch_1" in line and "shared reference" in line


def _batch(data: bytes, labels: bytes = b"]") -> bytes:
    """A protocol-2 pickle of {"data": <data>, "labels": <labels>}, the values given as opcodes."""
    return b"\x80\x02}(X\x04\x00\x00\x00data" + data + b"X\x06\x00\x00\x00labels" + labels + b"u."


_MIB = b"T" + struct.pack("<I", 2**20) + b"\0" * 2**20  # one 1 MiB byte string (BINSTRING)
CIFAR_BOMBS = {
    # 1.06 MB on disk; 3 GB once each reference is copied into an array (it was, before)
    "a 1 MiB string referenced 3,000 times": (
        _batch(b"]q\x01(" + _MIB + b"q\x02" + b"h\x02" * 2999 + b"e"),
        "bytes of objects",
    ),
    "lists nested 200,000 deep": (_batch(b"]" * 200_000 + b"a" * 199_999), "nested more than 16 deep"),
    "tuples nested 100,000 deep": (_batch(b"N" + b"\x85" * 100_000), "nested more than 16 deep"),
    "a list shared through DUP, 30 times": (
        _batch(b"]" + b"2\x86" * 30),
        "shared reference to a list",
    ),
    "a 1 TB byte string announced": (_batch(b"\x8e" + struct.pack("<Q", 2**40)), "a field of"),
    "an array whose shape needs more than its bytes": (
        pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": []}, protocol=3).replace(
            b"K\x01M\x00\x0c\x86", b"J\x00\x00\x00\x01M\x00\x0c\x86"
        ),
        "stored in 3072 bytes",
    ),
}


@pytest.mark.parametrize("bomb", list(CIFAR_BOMBS))
def test_cifar_bombs_are_refused_at_baseline_memory(tmp_path, capsys, bomb):
    stream, message = CIFAR_BOMBS[bomb]
    root = _cifar_root(tmp_path, stream)
    batch = root / "cifar-10-batches-py" / "data_batch_1"

    def refused():
        with pytest.raises(InputError, match=re.escape(message)):
            load_data(f"cifar10:{root}")

    assert peak_allocation(refused) < batch.stat().st_size + 16 * 2**20
    model = save_script(_digits_cnn(), tmp_path / "cnn.pt")
    code, _, err = run_cli(["id", "--model", model, "--data", f"cifar10:{root}"], capsys)
    assert code == 2 and "data_batch_1" in one_line(err) and message in err


def test_a_full_size_cifar_batch_loads_within_its_bound(tmp_path):
    """A batch as CIFAR-10 ships it (10,000 images, labels and file names): the accounting
    leaves room for it."""
    rng = np.random.default_rng(0)
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": rng.integers(0, 10, 10_000).tolist(),
        "data": rng.integers(0, 256, (10_000, 3072), dtype=np.uint8),
        "filenames": [f"image_{i:05d}.png" for i in range(10_000)],
    }
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=3))
    loaded = read_array_pickle(path)
    assert np.array_equal(loaded["data"], batch["data"]) and loaded["filenames"][-1] == "image_09999.png"


def test_objects_built_are_bounded_by_max_bytes():
    stream = pickle.dumps(list(range(1000)), protocol=2)
    assert len(ArrayUnpickler(io.BytesIO(stream), max_bytes=2**20).load()) == 1000
    with pytest.raises(pickle.UnpicklingError, match="more than 5,000 bytes of objects"):
        ArrayUnpickler(io.BytesIO(stream), max_bytes=5000).load()


def test_repeated_immutable_leaves_are_allowed(tmp_path):
    """Memo references to strings and numbers are how pickle shares them; they stay allowed."""
    name = "airplane"
    batch = {"data": np.zeros((2, 3072), np.uint8), "labels": [1, 1], "names": [name, name]}
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(batch))
    assert read_array_pickle(path)["names"] == ["airplane", "airplane"]
