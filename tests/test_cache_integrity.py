"""The activation cache never gives numbers that do not belong to the data and the model: keys
cover every file of a data folder, entries carry the digest of their array, and a tampered,
truncated or empty entry is recomputed with a warning (never an interruption)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from fakes import run_cli, untrained_checkpoint
from PIL import Image
from torch import nn

from manifold_probe.extraction.cache import ActivationCache, CacheKey, array_digest, path_fingerprint


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
    before = path_fingerprint(root)
    args = ["id", "--model", model, "--data", f"imagefolder:{root}", "--cache-dir", tmp_path / "cache"]
    assert run_cli([*args, "--json", tmp_path / "first.json"], capsys)[0] == 0
    _write_images(root, seed=1)  # the same names and folders, other pixels
    assert path_fingerprint(root) != before
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
