"""Shared fixtures: a small trained checkpoint of the built-in model, made once per session."""

from __future__ import annotations

import os

import pytest

from manifold_probe.study.training import train_and_save


@pytest.fixture(scope="session")
def digits_checkpoint(tmp_path_factory):
    """A digits-cnn (width 8, depth 3) trained for 2 epochs: quick, but clearly better than chance."""
    out = tmp_path_factory.mktemp("ckpt") / "digits-cnn.pt"
    train_and_save("digits-cnn", {"width": 8, "depth": 3}, out=out, epochs=2, seed=0)
    return out


@pytest.fixture(scope="session", autouse=True)
def private_config_dir(tmp_path_factory):
    """The tests' own configuration folder (the cache key), not the user's: $MPROBE_CONFIG_DIR,
    which sweep workers inherit."""
    before = os.environ.get("MPROBE_CONFIG_DIR")
    os.environ["MPROBE_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))
    yield
    if before is None:
        os.environ.pop("MPROBE_CONFIG_DIR", None)
    else:
        os.environ["MPROBE_CONFIG_DIR"] = before
