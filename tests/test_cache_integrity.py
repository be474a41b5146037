"""The activation cache never gives numbers that do not belong to the data and the model: keys
hold a digest of the bytes of the data file or of every file of a data folder, entries carry the
digest of their array signed with a key kept outside the cache, and a tampered, truncated or
empty entry is recomputed with a warning (never an interruption)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import warnings

import numpy as np
import pytest
import torch
from fakes import run_cli, untrained_checkpoint
from PIL import Image
from torch import nn

from manifold_probe.extraction.cache import ActivationCache, CacheKey, array_digest, content_fingerprint


def _write_images(root, seed):
    rng = np.random.default_rng(seed)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(20):
            pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")


class _TinyRGB(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4 * 6 * 6, 12)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def _twonn(path):
    return json.loads(path.read_text())["layers"][-1]["metrics"]["id_twonn"]


def test_rewriting_an_image_of_an_image_folder_changes_the_numbers(tmp_path, capsys):
    torch.manual_seed(0)
    model = tmp_path / "rgb.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_TinyRGB().eval()).save(str(model))
    root = tmp_path / "images"
    _write_images(root, seed=0)
    before = content_fingerprint(root)
    args = ["id", "--model", model, "--data", f"imagefolder:{root}", "--cache-dir", tmp_path / "cache"]
    assert run_cli([*args, "--json", tmp_path / "first.json"], capsys)[0] == 0
    _write_images(root, seed=1)  # the same names and folders, other pixels
    assert content_fingerprint(root) != before
    assert run_cli([*args, "--json", tmp_path / "second.json"], capsys)[0] == 0
    fresh = ["id", "--model", model, "--data", f"imagefolder:{root}", "--no-cache"]
    assert run_cli([*fresh, "--json", tmp_path / "fresh.json"], capsys)[0] == 0
    assert _twonn(tmp_path / "second.json") == _twonn(tmp_path / "fresh.json")
    assert _twonn(tmp_path / "second.json") != _twonn(tmp_path / "first.json")


@pytest.fixture()
def checkpoint(tmp_path):
    return untrained_checkpoint(tmp_path / "cnn.pt")


def _entries(cache):
    return sorted((cache / "activations").glob("*/*.npy"))


@pytest.mark.parametrize("damage", ["tampered", "truncated", "empty"])
def test_a_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path, checkpoint, capsys, damage):
    cache = tmp_path / "cache"
    args = ["id", "--model", checkpoint, "--data", "digits", "--n-points", "80", "--cache-dir", cache]
    assert run_cli([*args, "--json", tmp_path / "first.json"], capsys)[0] == 0
    entries = _entries(cache)
    assert entries
    for entry in entries:
        array = np.load(entry)
        if damage == "tampered":  # other numbers of the same shape and dtype
            np.save(entry, np.random.default_rng(1).normal(size=array.shape).astype(array.dtype))
        elif damage == "truncated":
            entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
        else:
            entry.write_bytes(b"")
    code, _, err = run_cli([*args, "--json", tmp_path / "second.json"], capsys)
    assert code == 0, err
    assert "ignoring damaged cache entry" in err and "recomputing" in err
    first = json.loads((tmp_path / "first.json").read_text())["layers"]
    second = json.loads((tmp_path / "second.json").read_text())["layers"]
    assert [layer["metrics"] for layer in first] == [layer["metrics"] for layer in second]
    code, _, err = run_cli([*args, "--json", tmp_path / "third.json"], capsys)  # rewritten: clean now
    assert code == 0 and "ignoring damaged" not in err


def test_entries_store_the_digest_of_their_array(tmp_path):
    cache = ActivationCache(tmp_path)
    key = CacheKey("model", "data", "layer", "none")
    pending = cache.create(key, (4, 3))
    pending.array[:] = np.arange(12, dtype=np.float32).reshape(4, 3)
    pending.commit()
    sidecar = json.loads(next((tmp_path / "activations").glob("*/*.json")).read_text())
    assert sidecar["sha256"] == array_digest(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert np.array_equal(cache.lookup(key).array, np.arange(12).reshape(4, 3))


# --- third round: data keyed by its bytes, entries signed with a key outside the cache ------


def _digits_npz(path, seed):
    """80 random digit-sized images and labels: the same file size for every seed."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.normal(size=(80, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 80))
    return path


def _copy_keeping_times(source, target):
    """`cp -p source target` with the target's own modification time kept (what rsync -a or
    tar x of an archive made from other data of the same size leaves behind)."""
    info = target.stat()
    os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    shutil.copy2(source, target)
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (info.st_size, info.st_mtime_ns)


def test_data_replaced_with_its_size_and_mtime_kept_gets_new_numbers(tmp_path, checkpoint, capsys):
    data = _digits_npz(tmp_path / "data.npz", seed=0)
    other = _digits_npz(tmp_path / "other.npz", seed=1)
    args = ["id", "--model", checkpoint, "--data", f"npz:{data}", "--cache-dir", tmp_path / "cache"]
    assert run_cli([*args, "--json", tmp_path / "first.json"], capsys)[0] == 0
    _copy_keeping_times(other, data)
    assert run_cli([*args, "--json", tmp_path / "second.json"], capsys)[0] == 0
    fresh = [
        "id",
        "--model",
        checkpoint,
        "--data",
        f"npz:{data}",
        "--no-cache",
        "--json",
        tmp_path / "fresh.json",
    ]
    assert run_cli(fresh, capsys)[0] == 0
    assert _twonn(tmp_path / "second.json") == _twonn(tmp_path / "fresh.json")
    assert _twonn(tmp_path / "second.json") != _twonn(tmp_path / "first.json")


def test_an_image_replaced_with_its_size_and_mtime_kept_changes_the_folder_key(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / label / f"{i}.bmp")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "other.bmp")
    before = content_fingerprint(root)
    _copy_keeping_times(tmp_path / "other.bmp", root / "b" / "2.bmp")
    assert content_fingerprint(root) != before


def _tamper(cache):
    """Replace every entry's array by other numbers of its shape and rewrite its sidecar's
    SHA-256 to match: everything a writer of the cache folder can do without the key."""
    for entry in _entries(cache):
        array = np.load(entry)
        np.save(entry, np.random.default_rng(1).normal(size=array.shape).astype(array.dtype))
        sidecar_path = entry.with_suffix(".json")
        sidecar = json.loads(sidecar_path.read_text())
        sidecar["sha256"] = array_digest(np.load(entry))
        sidecar_path.write_text(json.dumps(sidecar))


def test_an_entry_rewritten_with_its_sidecar_is_detected_and_recomputed(tmp_path, checkpoint, capsys):
    cache = tmp_path / "cache"
    args = ["id", "--model", checkpoint, "--data", "digits", "--n-points", "80", "--cache-dir", cache]
    assert run_cli([*args, "--json", tmp_path / "first.json"], capsys)[0] == 0
    _tamper(cache)
    code, _, err = run_cli([*args, "--json", tmp_path / "second.json"], capsys)
    assert code == 0 and "not signed with this user's cache key" in err and "recomputing" in err
    first = json.loads((tmp_path / "first.json").read_text())["layers"]
    second = json.loads((tmp_path / "second.json").read_text())["layers"]
    assert [layer["metrics"] for layer in first] == [layer["metrics"] for layer in second]


def test_entries_signed_with_another_key_are_recomputed(tmp_path, monkeypatch):
    cache = ActivationCache(tmp_path / "cache")
    key = CacheKey("model", "data", "layer", "none")
    pending = cache.create(key, (4, 3))
    pending.array[:] = 1.0
    pending.commit()
    assert cache.lookup(key) is not None
    monkeypatch.setenv("MPROBE_CONFIG_DIR", str(tmp_path / "another-user"))
    with pytest.warns(UserWarning, match="written by another user"):
        assert ActivationCache(tmp_path / "cache").lookup(key) is None


def test_the_cache_key_is_created_once_outside_the_cache_readable_by_its_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("MPROBE_CONFIG_DIR", str(tmp_path / "config"))
    first = ActivationCache(tmp_path / "cache")
    key_file = tmp_path / "config" / "cache-key"
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not key_file.is_relative_to(first.root)
    assert len(first.key) == 32 and ActivationCache(tmp_path / "other").key == first.key
