"""Models the project did not build, offline and small: a torchvision VisionTransformer, timm's
ViT and ResNet, Hugging Face BERT and GPT-2 classifiers on token ids with an attention mask.

The reference for each token reduction is the same matrix taken by hand (a plain forward
hook, or the model's own hidden states) and measured with `--points`: the estimates agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe_cli.main import main

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
safetensors_torch = pytest.importorskip("safetensors.torch")

N, T, VOCAB = 60, 12, 40


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _id(args, capsys, tmp_path, name):
    """The per-layer metrics of `mprobe id ARGS --json`."""
    path = tmp_path / f"{name}.json"
    options = ["--method", "twonn", "--method", "mle", "--no-cache", "-q", "--json", path]
    code, _, err = run(["id", *args, *options], capsys)
    assert code == 0, err
    return {layer["name"]: layer["metrics"] for layer in json.loads(path.read_text())["layers"]}


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """An npz of token ids with right padding, its attention mask and 3 classes."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, T + 1, N)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    ids = rng.integers(1, VOCAB, (N, T)) * mask
    labels = rng.integers(0, 3, N)
    path = tmp_path_factory.mktemp("text") / "text.npz"
    np.savez(path, input_ids=ids, attention_mask=mask, labels=labels)
    return path, ids, mask, labels


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    """A Hugging Face folder (config.json, model.safetensors) of a tiny BERT classifier."""
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=T, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(1)
    model = transformers.BertForSequenceClassification(config).eval()
    folder = tmp_path_factory.mktemp("bert")
    model.save_pretrained(folder)  # writes model.safetensors
    assert (folder / "model.safetensors").is_file()
    return folder, model


def _reference(model, ids, mask, layer):
    """Hidden states after block `layer` (1-based, 0 = embeddings) computed by the model itself."""
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                    output_hidden_states=True)  # fmt: skip
    return out.hidden_states[layer].numpy()


def _masked_mean(hidden, mask):
    return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def _close(a: dict, b: dict):
    for metric in ("id_twonn", "id_mle"):
        assert a[metric] == pytest.approx(b[metric], rel=2e-3), metric


def test_bert_cls_and_mean_equal_the_hand_made_matrices(text, bert_folder, tmp_path, capsys):
    path, ids, mask, labels = text
    folder, model = bert_folder
    hidden = _reference(model, ids, mask, 2)
    model_args = ["--arch", f"hf:{folder}", "--data", f"npz:{path}", "--layers", "bert.encoder.layer.1"]
    for spec, matrix in (("cls", hidden[:, 0]), ("mean", _masked_mean(hidden, mask))):
        np.save(tmp_path / f"{spec}.npy", matrix)
        by_model = _id([*model_args, "--reduction", spec], capsys, tmp_path, spec)
        by_hand = _id(["--points", tmp_path / f"{spec}.npy"], capsys, tmp_path, f"{spec}-points")
        _close(by_model["bert.encoder.layer.1"], by_hand["points"])
    code, _, err = run(["id", *model_args, "--reduction", "avgpool", "--no-cache", "-q"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "avgpool" in err and "token sequence" in err


def test_bert_layers_and_collapse_from_the_cli(text, bert_folder, tmp_path, capsys):
    path, *_ = text
    folder, model = bert_folder
    code, out, _ = run(["layers", "--arch", f"hf:{folder}", "--data", f"npz:{path}"], capsys)
    assert code == 0 and "token" in out and "BertLayer" in out
    js = tmp_path / "collapse.json"
    code, _, err = run(["collapse", "--arch", f"hf:{folder}", "--data", f"npz:{path}", "--no-cache", "-q",
                        "--json", js], capsys)  # fmt: skip
    assert code == 0, err
    result = json.loads(js.read_text())
    assert result["source"]["weights_digest"] == mp.model_info(model).digest  # the folder's weights
    by_layer = {layer["name"]: layer["metrics"] for layer in result["layers"]}
    assert "nc3_self_duality" in by_layer["penultimate"] and by_layer["logits"]["nc1"] > 0


def test_gpt2_last_token_and_mean_from_python(text):
    path, ids, mask, labels = text
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2, n_positions=T,
                                     num_labels=3, pad_token_id=0)  # fmt: skip
    torch.manual_seed(2)
    model = transformers.GPT2ForSequenceClassification(config).eval()
    data = {"input_ids": ids, "attention_mask": mask, "labels": labels}  # a datasets-style dict
    hidden = _reference(model, ids, mask, 1)
    last = hidden[np.arange(N), mask.sum(1) - 1]
    for spec, matrix in (("last", last), ("mean", _masked_mean(hidden, mask))):
        by_model = mp.intrinsic_dimension(model, data, layers="transformer.h.0", reduction=spec,
                                          methods=("twonn", "mle"))  # fmt: skip
        by_hand = mp.intrinsic_dimension(matrix, methods=("twonn", "mle"))
        _close(by_model.metrics["transformer.h.0"], by_hand.metrics["points"])
    acts = mp.extract(model, mp.load_data(f"npz:{path}"), layers="logits")
    with torch.no_grad():
        logits = model(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).logits
    np.testing.assert_allclose(acts["logits"], logits.numpy(), rtol=1e-5, atol=1e-5)


def _block_output(model, module, x):
    """The output of `module` in a forward pass of `model` on `x`, by a plain hook."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0].numpy()


IMAGES = torch.randn(N, 3, 32, 32, generator=torch.Generator().manual_seed(0))
IMAGE_LABELS = np.arange(N) % 3


def test_timm_vit_cls_mean_and_kinds_from_python():
    sizes = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 3}
    model = mp.load_model("timm:vit_tiny_patch16_224", arch_args=sizes)
    again = mp.load_model("timm:vit_tiny_patch16_224", arch_args=sizes)
    assert mp.model_info(model).digest == mp.model_info(again).digest  # seeded initial weights
    kinds = {layer.name: layer.kind for layer in mp.list_layers(model, IMAGES)}
    assert kinds["patch_embed.proj"] == "spatial map" and kinds["blocks.1"] == "token sequence"
    assert kinds["logits"] == "vector"
    tokens = _block_output(model, model.blocks[1], IMAGES)
    assert tokens.shape == (N, 17, 32)  # 16 patches and the class token
    for spec, matrix in (("cls", tokens[:, 0]), ("mean", tokens.mean(1)), ("flatten", tokens.reshape(N, -1))):
        by_model = mp.intrinsic_dimension(model, IMAGES, layers="blocks.1", reduction=spec,
                                          methods=("twonn",))  # fmt: skip
        by_hand = mp.intrinsic_dimension(matrix, methods=("twonn",))
        assert by_model.metrics["blocks.1"]["id_twonn"] == pytest.approx(
            by_hand.metrics["points"]["id_twonn"], rel=2e-3)  # fmt: skip
    with pytest.raises(InputError, match="layer 'blocks.1' gives a token sequence"):
        mp.extract(model, IMAGES, layers="blocks.1", reduction="avgpool")
    result = mp.collapse(model, IMAGES, labels=IMAGE_LABELS)
    assert "nc3_self_duality" in result.metrics["penultimate"]


def test_timm_resnet_from_safetensors_and_the_cli(tmp_path, capsys):
    built = mp.load_model("timm:resnet18", arch_args={"num_classes": 3, "in_chans": 1})
    weights = tmp_path / "resnet.safetensors"
    state = {k: v.contiguous() for k, v in built.state_dict().items()}
    for value in state.values():
        if value.is_floating_point():
            value.add_(0.01)  # other weights than the seeded initial ones
    safetensors_torch.save_file(state, str(weights))
    loaded = mp.load_model(weights, arch="timm:resnet18", arch_args={"num_classes": 3, "in_chans": 1})
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, state[name]), name
    np.savez(tmp_path / "gray.npz", x=IMAGES[:, :1].numpy(), y=IMAGE_LABELS)
    args = [
        "--model",
        weights,
        "--arch",
        "timm:resnet18",
        "--arch-kwargs",
        '{"num_classes":3,"in_chans":1}',
        "--data",
        f"npz:{tmp_path / 'gray.npz'}",
        "--layers",
        "layer4,logits",
        "--reduction",
        "avgpool",
    ]
    metrics = _id(args, capsys, tmp_path, "resnet")
    assert set(metrics) == {"layer4", "logits"} and all(m["id_twonn"] > 0 for m in metrics.values())


def test_torchvision_vit_of_any_size_and_a_one_channel_resnet(tmp_path, capsys):
    vit = mp.load_model("torchvision:VisionTransformer", num_classes=3, arch_args=dict(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32))  # fmt: skip
    tokens = _block_output(vit, vit.encoder.layers[1], IMAGES)
    by_model = mp.intrinsic_dimension(vit, IMAGES, layers="encoder.layers.encoder_layer_1", reduction="cls",
                                      methods=("twonn",))  # fmt: skip
    by_hand = mp.intrinsic_dimension(tokens[:, 0], methods=("twonn",))
    assert by_model.metrics["encoder.layers.encoder_layer_1"]["id_twonn"] == pytest.approx(
        by_hand.metrics["points"]["id_twonn"], rel=2e-3)  # fmt: skip

    import torchvision

    gray = torchvision.models.resnet18(num_classes=3)
    gray.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    torch.save(gray.state_dict(), tmp_path / "gray-resnet.pt")
    np.savez(tmp_path / "gray.npz", x=IMAGES[:, :1].numpy(), y=IMAGE_LABELS)
    model_args = ["--model", tmp_path / "gray-resnet.pt", "--arch", "torchvision:resnet18",
                  "--num-classes", "3"]  # fmt: skip
    code, _, err = run(["layers", *model_args, "--data", f"npz:{tmp_path / 'gray.npz'}"], capsys)
    assert code == 2 and "conv1.weight is (64, 1, 7, 7) in the file" in err
    metrics = _id([*model_args, "--in-channels", "1", "--data", f"npz:{tmp_path / 'gray.npz'}",
                   "--layers", "layer3,logits"], capsys, tmp_path, "gray")  # fmt: skip
    assert set(metrics) == {"layer3", "logits"}


def test_grayscale_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    rgb = mp.load_data(f"imagefolder:{tmp_path}")
    gray = mp.load_data(f"imagefolder:{tmp_path}", channels=1)
    assert rgb.input_shape == (3, 8, 8) and gray.input_shape == (1, 8, 8)
    weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]  # ITU-R 601-2 luma, PIL's "L"
    np.testing.assert_allclose(gray[0][0][0], (rgb[0][0] * weights).sum(0), atol=1 / 255 + 1e-6)
    with pytest.raises(InputError, match="channels applies to imagefolder"):
        mp.load_data("digits", channels=1)


def test_integer_and_keyword_inputs(tmp_path, text):
    path, ids, mask, labels = text
    data = mp.load_data(f"npz:{path}")
    inputs, label = data[0]
    assert set(inputs) == {"input_ids", "attention_mask"} and inputs["input_ids"].dtype == torch.int64
    assert label == labels[0] and data.num_classes == 3
    np.savez(tmp_path / "ids.npz", x=ids, y=labels)
    x, _ = mp.load_data(f"npz:{tmp_path / 'ids.npz'}")[0]
    assert x.dtype == torch.int64  # token ids reach an nn.Embedding as integers
    embedding = nn.Sequential(nn.Embedding(VOCAB, 4), nn.Flatten())
    acts = mp.extract(embedding, mp.load_data(f"npz:{tmp_path / 'ids.npz'}"), layers="0")
    np.testing.assert_allclose(acts["0"], embedding[0](torch.as_tensor(ids)).mean(1).detach(), rtol=1e-6)
    same = mp.load_data({"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert same.spec.startswith("arrays:") and len(same) == N
    with pytest.raises(InputError, match="no labels"):
        mp.load_data({"input_ids": ids})


def test_fixed_batch_export_runs_any_number_of_points(tmp_path, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3)).eval()
    torch.export.save(torch.export.export(net, (torch.randn(4, 3, 4),)), tmp_path / "fixed.pt2")
    x = np.random.default_rng(0).normal(size=(30, 3, 4)).astype(np.float32)
    model = mp.load_model(tmp_path / "fixed.pt2")
    acts = mp.extract(model, x, layers="logits", batch_size=7)  # chunks of 4, the last one padded
    np.testing.assert_allclose(acts["logits"], net(torch.from_numpy(x)).detach(), rtol=1e-5, atol=1e-6)
    np.savez(tmp_path / "x.npz", x=x, y=np.arange(30) % 3)
    args = ["--model", tmp_path / "fixed.pt2", "--data", f"npz:{tmp_path / 'x.npz'}"]
    metrics = _id(args, capsys, tmp_path, "fixed")
    assert set(metrics) == {"logits"}


def test_export_returning_a_hugging_face_output_loads_in_a_fresh_process(tmp_path, bert_folder):
    import subprocess
    import sys

    _, bert = bert_folder

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids):
            return self.bert(input_ids=input_ids)  # a SequenceClassifierOutput

    ids = torch.randint(1, VOCAB, (2, T), generator=torch.Generator().manual_seed(0))
    torch.export.save(torch.export.export(Classifier().eval(), (ids,)), tmp_path / "hf.pt2")
    script = f"""
import sys
import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe.sources import models
assert "transformers" not in sys.modules
models.IMPORTABLE_FOR_EXPORTS = ()
try:
    mp.load_model({str(tmp_path / "hf.pt2")!r})
except InputError as exc:
    print("refused:", exc)
models.IMPORTABLE_FOR_EXPORTS = ("transformers.",)
model = mp.load_model({str(tmp_path / "hf.pt2")!r})
print("loaded:", type(model).__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused:") and "import transformers.modeling_outputs" in lines[0]
    assert lines[1] == "loaded: FixedBatch" and done.stderr.strip() == ""


def test_a_model_that_rejects_the_data_is_one_line_exit_2(capsys):
    """A model built for 32x32 inputs given 8x8 digits: bad input (exit 2) naming the batch's shape."""
    code, _, err = run(
        [
            "layers",
            "--arch",
            "timm:vit_tiny_patch16_224",
            "--arch-kwargs",
            '{"img_size": 32, "depth": 1, "num_classes": 10}',
            "--data",
            "digits",
        ],
        capsys,
    )
    assert code == 2, err
    assert "forward pass failed on a batch of 1x1x8x8 float32" in err
    assert "Traceback" not in err


def test_a_hooks_own_error_is_not_blamed_on_the_data(capsys):
    """avgpool refused on a token sequence (raised inside the forward pass) keeps its own line."""
    code, _, err = run(
        [
            "id",
            "--arch",
            "timm:vit_tiny_patch16_224",
            "--arch-kwargs",
            '{"img_size": 8, "patch_size": 2, "depth": 1, "in_chans": 1, "num_classes": 10}',
            "--data",
            "digits",
            "--n-points",
            "60",
            "--reduction",
            "avgpool",
            "--no-cache",
        ],
        capsys,
    )
    assert code == 2, err
    assert "gives a token sequence" in err
    assert "forward pass failed" not in err
