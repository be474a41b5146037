"""Memory bounded by the input's size: every parser refuses a file that declares more than
`validation.expansion_limit` of its own size (16 times, at least 64 MiB) before allocating it.

Each bomb here is small on disk and would take 200-512 MiB once read; the tests check the
refusal and that the peak stays near the file's size (tracemalloc, which sees NumPy's and
Python's allocations; for torch's own reader, the peak resident size of a child process,
read from `resource`), never a time."""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from fakes import one_line, peak_allocation, run_cli, save_script

from manifold_probe.errors import InputError
from manifold_probe.sources import zoo
from manifold_probe.sources.data import load_data
from manifold_probe.sources.formats.idx import read_idx
from manifold_probe.sources.named_models import read_config, read_safetensors
from manifold_probe.validation import SMALL_FILE_ALLOWANCE

MIB = 2**20


def _deflated(archive: zipfile.ZipFile, name: str, head: bytes, zeros: int) -> None:
    """Write entry `name`: `head` then `zeros` zero bytes, deflated (about 1,000 times smaller)."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with archive.open(info, "w", force_zip64=True) as entry:
        entry.write(head)
        block = bytes(MIB)
        for _ in range(zeros // MIB):
            entry.write(block)


def _npy_head(shape, dtype="<f8") -> bytes:
    """The header of a version 1.0 `.npy` file of `shape` and `dtype`."""
    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _npz_bomb(path, n_bytes=512 * MIB):
    """An npz whose x.npy inflates to `n_bytes` of zeros (about n_bytes / 1,000 on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _deflated(archive, "x.npy", _npy_head((n_bytes // 8,)), n_bytes)
        with archive.open("y.npy", "w") as entry:
            np.lib.format.write_array(entry, np.zeros(1, np.int64))
    return path


def test_a_deflated_npz_bomb_is_refused_before_it_inflates(tmp_path, capsys):
    bomb = _npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 2 * MIB

    def refused():
        with pytest.raises(InputError, match="declares 512 MiB of content"):
            load_data(f"npz:{bomb}")

    assert peak_allocation(refused) < 16 * MIB
    code, _, err = run_cli(["id", "--points", bomb], capsys)
    assert code == 2 and "declares 512 MiB of content" in one_line(err)


def test_an_npy_header_larger_than_its_file_is_refused_before_numpy_allocates(tmp_path, capsys):
    path = tmp_path / "header-only.npy"
    path.write_bytes(_npy_head((2**25, 8)) + bytes(64))  # 2 GiB declared, 64 bytes held
    code, _, err = run_cli(["id", "--points", path], capsys)
    assert code == 2 and "declares an array of shape (33554432, 8)" in one_line(err)

    def refused():
        with pytest.raises(InputError, match="holds 64"):
            load_data(f"npz:{_npz_of(tmp_path / 'member.npz', path.read_bytes())}")

    assert peak_allocation(refused) < 16 * MIB


def _npz_of(path, x_npy: bytes):
    """An npz (stored, not deflated) whose x.npy is the bytes given and y.npy a real array."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", x_npy)
        with archive.open("y.npy", "w") as entry:
            np.lib.format.write_array(entry, np.zeros(1, np.int64))
    return path


def test_a_compressed_npz_of_real_data_still_loads(tmp_path):
    """The bound leaves room for what np.savez_compressed makes of ordinary data."""
    rng = np.random.default_rng(0)
    x = (rng.random((2000, 64)) < 0.05).astype(np.float32)  # sparse pixels compress well
    np.savez_compressed(tmp_path / "sparse.npz", x=x, y=rng.integers(0, 3, 2000))
    assert np.array_equal(load_data(f"npz:{tmp_path / 'sparse.npz'}").inputs().numpy(), x)


def test_a_gzipped_idx_bomb_is_refused_before_it_inflates(tmp_path):
    n = 200 * MIB // 784
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as handle:
        handle.write(struct.pack(">i", 2051) + struct.pack(">3i", n, 28, 28))
        block = bytes(784 * 1024)
        for _ in range(n // 1024):
            handle.write(block)
        handle.write(bytes(784 * (n % 1024)))
    assert path.stat().st_size < 4 * MIB

    def refused():
        with pytest.raises(InputError, match="declares 200 MiB of content"):
            read_idx(path)

    assert peak_allocation(refused) < 16 * MIB


def test_a_plain_idx_file_shorter_than_its_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(struct.pack(">i", 2051) + struct.pack(">3i", 300_000, 28, 28) + bytes(784))

    def refused():
        with pytest.raises(InputError, match="is truncated"):
            read_idx(path)

    assert peak_allocation(refused) < 4 * MIB


# --- torch's own reader: zip entries of .pt, TorchScript and .pt2 files ---------------------

_CHILD = """
import resource, sys
from manifold_probe.errors import InputError
from manifold_probe.sources.models import load_model
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    try:
        load_model(path)
        print("loaded", path)
    except InputError as exc:
        print("refused", exc)
unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
print("grew", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * unit)
"""


def _zip_bomb(source, target, entry_suffix, n_bytes=512 * MIB):
    """`source` (a torch zip archive) with the entry ending in `entry_suffix` replaced by
    `n_bytes` of deflated zeros: about 512 kB more on disk, 512 MiB once torch reads it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            if info.filename.endswith(entry_suffix):
                _deflated(out, info.filename, b"", n_bytes)
            else:
                out.writestr(info, src.read(info))
    return target


def test_zip_bombs_in_model_files_are_refused_at_baseline_memory(tmp_path):
    torch.manual_seed(0)
    cnn = zoo.build_model("digits-cnn", width=4, depth=2).eval()
    torch.save(cnn.state_dict(), tmp_path / "weights.pt")
    save_script(cnn, tmp_path / "script.pt")
    bombs = [
        _zip_bomb(tmp_path / "weights.pt", tmp_path / "weights-bomb.pt", "/data.pkl"),  # read whole
        _zip_bomb(tmp_path / "script.pt", tmp_path / "script-bomb.pt", "/constants.pkl"),  # read whole
    ]
    assert all(bomb.stat().st_size < 2 * MIB for bomb in bombs)
    child = subprocess.run([sys.executable, "-c", _CHILD, *map(str, bombs)], capture_output=True, text=True,
                           check=True)  # fmt: skip
    lines = child.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["refused", "refused", "grew"], child.stdout + child.stderr
    assert all("declares 512 MiB of content" in line for line in lines[:2])
    assert int(lines[-1].split()[1]) < SMALL_FILE_ALLOWANCE  # torch took 1 GiB for the first


# --- headers and configs -----------------------------------------------------------------


def _safetensors(header: bytes, body: bytes = bytes(64)) -> bytes:
    return struct.pack("<Q", len(header)) + header + body


def _tensor_header(shape, offsets) -> bytes:
    return json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()


@pytest.mark.parametrize(
    "content",
    [
        struct.pack("<Q", 2**40) + b"{}",  # a header of a terabyte
        _safetensors(b"[" * 100_000 + b"]" * 100_000),  # JSON nested 100,000 deep
        _safetensors(
            json.dumps({"w": {"dtype": "F32", "shape": [10**5, 10**5], "data_offsets": [0, 64]}}).encode()
        ),
        _safetensors(
            json.dumps({"w": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}}).encode()
        ),
    ],
    ids=["header of 1 TB", "nested JSON", "shape beyond its bytes", "offsets beyond the file"],
)
def test_hostile_safetensors_headers_are_refused(tmp_path, content):
    """The safetensors library checks the header (at most 100 MB, every tensor's bytes inside
    the file) before it allocates anything; each refusal is one InputError."""
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match="could not read safetensors file") as caught:
        read_safetensors(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"model_type": "bert", "padding": "' + b"x" * 2 * MIB + b'"}', "more than the 1,048,576"),
        (b"[" * 100_000 + b"]" * 100_000, "could not read the Hugging Face config"),
        (b"[1, 2, 3]", "holds a JSON list, not an object of config fields"),
    ],
    ids=["2 MiB", "nested 100,000 deep", "a JSON array"],
)
def test_hugging_face_configs_are_read_within_bounds(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_config(path)
