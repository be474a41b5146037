"""Hugging Face folders written by `save_pretrained` (config.json and model.safetensors) load
through transformers' own `from_pretrained`, offline and without remote code (issue 24, item 1).

Each tiny model is built from a small config with random weights, saved, loaded back by
`mp.load_model("hf:FOLDER")` (and by the command line), and compared with the original: every
weight equal, the same forward pass, and its layers extracted. A pickled `pytorch_model.bin`
loads only with --trust-checkpoint, and a config naming its own code (`auto_map`) never loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe_cli.main import main

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

N, T, VOCAB = 24, 8, 40
IMAGES = torch.randn(N, 3, 32, 32, generator=torch.Generator().manual_seed(0))
_rng = np.random.default_rng(0)
_lengths = _rng.integers(3, T + 1, N)
MASK = (np.arange(T)[None, :] < _lengths[:, None]).astype(np.int64)
IDS = _rng.integers(1, VOCAB, (N, T)) * MASK
TEXT = {"input_ids": IDS, "attention_mask": MASK, "labels": np.arange(N) % 3}


def _vision(size: int = 32) -> dict:
    return dict(image_size=size, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                intermediate_size=64)  # fmt: skip


MODELS = {
    "vit": lambda: transformers.ViTForImageClassification(transformers.ViTConfig(**_vision(), num_labels=3)),
    "clip-vision": lambda: transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**_vision())),
    "bert": lambda: transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=T, num_labels=3)),
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=T, bos_token_id=1, eos_token_id=1)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, max_position_embeddings=T, bos_token_id=1, eos_token_id=1)),
}  # fmt: skip


def _inputs(name: str) -> dict:
    if name in ("vit", "clip-vision"):
        return {"pixel_values": IMAGES}
    return {"input_ids": torch.as_tensor(IDS), "attention_mask": torch.as_tensor(MASK)}


def _output(model, name: str) -> torch.Tensor:
    with torch.no_grad():
        out = model(**_inputs(name))
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> (folder written by save_pretrained, the original model)."""
    saved = {}
    for index, (name, build) in enumerate(MODELS.items()):
        torch.manual_seed(10 + index)
        model = build().eval()
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
        saved[name] = (folder, model)
    return saved


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", list(MODELS))
def test_a_saved_folder_loads_with_its_weights_and_extracts(folders, name):
    folder, original = folders[name]
    loaded = mp.load_model(f"hf:{folder}")
    assert type(loaded) is type(original)
    saved = original.state_dict()
    state = loaded.state_dict()
    assert set(state) == set(saved)
    for key, value in state.items():
        assert torch.equal(value, saved[key]), key
    torch.testing.assert_close(_output(loaded, name), _output(original, name), rtol=0, atol=0)
    info = mp.model_info(loaded)
    assert info.digest == mp.model_info(original).digest and info.path.endswith("model.safetensors")
    data = IMAGES if name in ("vit", "clip-vision") else TEXT
    acts = mp.extract(loaded, data, classifier=False)
    assert "logits" in acts and all(array.shape[0] == N for array in acts.values())


def test_the_vit_folder_of_the_issue_from_the_cli(folders, tmp_path, capsys):
    """`the weights in .../model.safetensors do not fit hf:...` (issue 24): now measured."""
    folder, _ = folders["vit"]
    np.savez(tmp_path / "images.npz", x=IMAGES.numpy(), y=np.arange(N) % 3)
    js = tmp_path / "id.json"
    code, _, err = run(["id", "--arch", f"hf:{folder}", "--data", f"npz:{tmp_path / 'images.npz'}",
                        "--method", "twonn", "--no-cache", "-q", "--json", js], capsys)  # fmt: skip
    assert code == 0, err
    result = json.loads(js.read_text())
    assert [layer["name"] for layer in result["layers"]] == ["vit", "logits"]
    code, out, err = run(["layers", "--model", folder, "--data", f"npz:{tmp_path / 'images.npz'}"], capsys)
    assert code == 0, err
    assert "ViTLayer" in out


def test_a_separate_safetensors_file_with_a_config_folder(folders, tmp_path):
    """--model weights.safetensors --arch hf:FOLDER: the checkpoint's names converted the same way."""
    folder, original = folders["vit"]
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((folder / "config.json").read_text())
    loaded = mp.load_model(folder / "model.safetensors", arch=f"hf:{config_only}")
    torch.testing.assert_close(_output(loaded, "vit"), _output(original, "vit"), rtol=0, atol=0)


def test_a_pickled_bin_needs_trust_checkpoint(folders, tmp_path, capsys):
    folder, original = folders["bert"]
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save(original.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(InputError, match=r"pytorch_model.bin is a pickle.*--trust-checkpoint"):
        mp.load_model(f"hf:{pickled}")
    np.savez(tmp_path / "text.npz", **TEXT)
    code, _, err = run(
        ["layers", "--arch", f"hf:{pickled}", "--data", f"npz:{tmp_path / 'text.npz'}"], capsys
    )
    assert code == 2 and err.count("\n") == 1 and "--trust-checkpoint" in err
    trusted = mp.load_model(f"hf:{pickled}", trust_checkpoint=True)
    torch.testing.assert_close(_output(trusted, "bert"), _output(original, "bert"), rtol=0, atol=0)


def test_remote_code_is_never_run(folders, tmp_path, capsys):
    folder, _ = folders["bert"]
    custom = tmp_path / "custom"
    custom.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (custom / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(InputError, match=r"names code of its own \(auto_map: modeling_evil.EvilModel\)"):
        mp.load_model(f"hf:{custom}")
    code, _, err = run(["layers", "--arch", f"hf:{custom}", "--data", "digits"], capsys)
    assert code == 2 and err.count("\n") == 1 and "auto_map" in err


def test_weights_that_do_not_fit_the_config_are_one_line(folders):
    folder, _ = folders["vit"]
    with pytest.raises(InputError, match=r"could not load ViTForImageClassification .*num_labels"):
        mp.load_model(f"hf:{folder}", arch_args={"num_labels": 5})
