"""`--normalize auto` (the checkpoint's training normalisation) and the per-sample reshape of
flat or channel-less arrays (`sources.input_fit`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.sources.input_fit import fit_input_shape, parse_input_shape, training_normalization
from manifold_probe.sources.models import LoadedModel
from manifold_probe.sources.zoo import build_model
from manifold_probe_cli.main import main


def _info(checkpoint) -> LoadedModel:
    return LoadedModel(module=torch.nn.Identity(), description="m", kind="checkpoint", digest="",
                       checkpoint=checkpoint)  # fmt: skip


def test_auto_reads_the_checkpoint_and_says_when_there_is_nothing_to_read():
    assert training_normalization(_info({"training": {"data": "digits"}})) is None  # mprobe train's recipe
    assert training_normalization(_info({"training": {"normalize": "mnist"}})) == "mnist"
    with pytest.raises(InputError, match="records no training normalisation"):
        training_normalization(LoadedModel(module=torch.nn.Identity(), description="Linear (in memory)",
                                           kind="module", digest=""))  # fmt: skip


def test_auto_on_a_project_checkpoint_gives_the_inputs_it_was_trained_on(digits_checkpoint):
    model = mp.load_model(digits_checkpoint)
    auto = mp.load_data("digits", n_points=50, normalize="auto", model=model)
    plain = mp.load_data("digits", n_points=50)
    assert torch.equal(auto.inputs(), plain.inputs()) and auto.preprocessing == ""


def _digits_npz(path, shape):
    digits = mp.load_data("digits", n_points=120)
    x = digits.inputs().numpy()
    np.savez(path, x=x.reshape(len(x), *shape), y=digits.labels)
    return digits


@pytest.mark.parametrize("shape", [(64,), (8, 8)])
def test_flat_or_channel_less_samples_take_the_model_input_shape(digits_checkpoint, tmp_path, shape):
    digits = _digits_npz(tmp_path / "x.npz", shape)
    model = mp.load_model(digits_checkpoint)
    data = mp.load_data(f"npz:{tmp_path / 'x.npz'}", model=model)
    assert data.input_shape == (1, 8, 8)
    assert torch.equal(data.inputs(), digits.inputs())  # row-major: the same images
    first, _ = next(data.batches(7))
    assert first.shape == (7, 1, 8, 8) and torch.equal(data[3][0], digits[3][0])
    assert mp.load_data(f"npz:{tmp_path / 'x.npz'}").input_shape == shape  # no model: as stored


def test_explicit_shapes_and_mismatches_are_one_clear_line(digits_checkpoint, tmp_path):
    _digits_npz(tmp_path / "x.npz", (64,))
    data = mp.load_data(f"npz:{tmp_path / 'x.npz'}", input_shape="1,8,8")
    assert data.input_shape == (1, 8, 8) and data.inputs().shape == (120, 1, 8, 8)
    with pytest.raises(InputError, match="has 128 values per sample but"):
        mp.load_data(f"npz:{tmp_path / 'x.npz'}", input_shape=(2, 8, 8))
    with pytest.raises(InputError, match="positive integers"):
        parse_input_shape("1,a,8")
    np.savez(tmp_path / "odd.npz", x=np.zeros((20, 60), np.float32), y=np.arange(20) % 2)
    odd = mp.load_data(f"npz:{tmp_path / 'odd.npz'}")
    with pytest.raises(InputError, match="has inputs of 60 per sample but the model takes 1x8x8"):
        fit_input_shape(odd, model_shape=(1, 8, 8))
    with pytest.raises(InputError, match="the model takes 1x8x8"):
        mp.load_data(f"npz:{tmp_path / 'odd.npz'}", model=mp.load_model(digits_checkpoint))
    assert fit_input_shape(odd, model_shape=(60,)) is odd  # nothing to do


def test_cli_measures_a_flat_npz_and_refuses_auto_for_a_bare_state_dict(digits_checkpoint, tmp_path, capsys):
    _digits_npz(tmp_path / "flat.npz", (64,))
    args = ["id", "--model", str(digits_checkpoint), "--data", f"npz:{tmp_path / 'flat.npz'}", "--no-cache",
            "-q", "--method", "twonn", "--bootstrap", "0", "--normalize", "auto"]  # fmt: skip
    assert main(args) == 0
    state = tmp_path / "bare.pt"
    torch.save(build_model("digits-cnn", num_classes=10).state_dict(), state)  # default width
    capsys.readouterr()
    code = main(["id", "--model", str(state), "--arch", "digits-cnn", "--num-classes", "10", "--normalize",
                 "auto", "--no-cache", "-q"])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2 and "records no training normalisation" in err and len(err.strip().splitlines()) == 1
