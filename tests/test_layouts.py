"""Channels-last spatial maps and class tokens (issue 24, item 2).

The failures the issue lists, each a test: a timm Swin layer of 14x14x24 under `avgpool` gave 14
features (now 24, the hand-computed channel means), `mprobe layers` listed a mix of 24x14x14 and
14x14x24 without saying which is which (now a layout column), and `cls` on DeiT's `patch_embed`
(patches only, no class token) gave nc1 = inf with no status (now `skipped` with the reason)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_foreign_models import _block_output  # a plain forward hook
from torch import nn

import manifold_probe as mp
from manifold_probe.errors import InputError
from manifold_probe_cli.main import main

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

N = 30
IMAGES = torch.randn(N, 3, 56, 56, generator=torch.Generator().manual_seed(0))
LABELS = np.arange(N) % 3
SWIN = {
    "img_size": 56,
    "embed_dim": 24,
    "depths": [1, 1],
    "num_heads": [1, 2],
    "window_size": 7,
    "num_classes": 3,
}
DEIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 3}


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def swin():
    return mp.load_model("timm:swin_tiny_patch4_window7_224", arch_args=SWIN)


def test_swin_avgpool_gives_the_channel_means(swin):
    maps = _block_output(swin, swin.layers[0], IMAGES)
    assert maps.shape == (N, 14, 14, 24)  # timm's Swin stages are NHWC
    acts = mp.extract(swin, IMAGES, layers="layers.0,patch_embed.proj", reduction="avgpool")
    assert acts["layers.0"].shape == (N, 24)  # was 14: the mean over the last two axes
    np.testing.assert_allclose(acts["layers.0"], maps.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    conv = _block_output(swin, swin.patch_embed.proj, IMAGES)  # a convolution: channels first
    np.testing.assert_allclose(acts["patch_embed.proj"], conv.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    assert acts.source["layouts"] == {"patch_embed.proj": "channels_first", "layers.0": "channels_last"}
    layouts = {layer.name: layer.layout for layer in mp.list_layers(swin, IMAGES)}
    assert layouts["layers.0"] == layouts["layers.1"] == layouts["norm"] == "channels_last"
    assert layouts["patch_embed.proj"] == "channels_first" and layouts["logits"] == ""


def test_layout_overrides_the_detected_one(swin):
    acts = mp.extract(swin, IMAGES, layers="layers.0", reduction="avgpool", layout="channels_first")
    assert acts["layers.0"].shape == (N, 14)
    acts = mp.extract(
        swin, IMAGES, layers="layers.*", reduction="avgpool", layout={"layers.1": "channels_first"}
    )
    assert acts["layers.0"].shape == (N, 24) and acts["layers.1"].shape == (N, 7)
    with pytest.raises(InputError, match="^layout: unknown layout 'nhwc'"):
        mp.extract(swin, IMAGES, layers="layers.0", layout="nhwc")


def test_convnext_blocks_stay_channels_first():
    model = mp.load_model("timm:convnext_atto", arch_args={"num_classes": 3})
    layouts = {layer.name: layer.layout for layer in mp.list_layers(model, IMAGES[:2])}
    assert layouts["stages.0.blocks.0"] == layouts["stages.0"] == "channels_first"


def test_layers_shows_the_layout_and_avgpool_from_the_cli(tmp_path, capsys):
    np.savez(tmp_path / "images.npz", x=IMAGES.numpy(), y=LABELS)
    model = ["--arch", "timm:swin_tiny_patch4_window7_224", "--arch-kwargs", json.dumps(SWIN)]
    data = ["--data", f"npz:{tmp_path / 'images.npz'}"]
    code, out, err = run(["layers", *model, *data, "--split", "train", "--n-points", "10", "--reduction",
                          "avgpool"], capsys)  # fmt: skip
    assert code == 0, err
    assert "layout" in out and "channels_last" in out and "channels_first" in out
    js = tmp_path / "id.json"
    options = ["--reduction", "avgpool", "--method", "twonn", "--no-cache", "-q", "--json", js]
    code, _, err = run(["id", *model, *data, "--layers", "layers.0", *options], capsys)
    assert code == 0, err
    layer = json.loads(js.read_text())["layers"][0]
    assert layer["ambient_dim"] == 24
    code, _, err = run(["id", *model, *data, "--layers", "layers.0", "--layout", "sideways", "-q"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--layout" in err


def test_cls_on_deit_patch_embed_is_skipped_with_its_reason(tmp_path, capsys):
    deit = mp.load_model("timm:deit_tiny_patch16_224", arch_args=DEIT)
    images = IMAGES[:, :, :32, :32]
    result = mp.collapse(deit, images, labels=LABELS, layers="patch_embed,blocks.*,logits", reduction="cls")
    by_name = {layer.name: layer for layer in result.layers}
    patch = by_name["patch_embed"]
    assert patch.status == "skipped" and "before VisionTransformer prepends its class token" in patch.reason
    assert "token:0" in patch.reason and not patch.metrics
    assert by_name["blocks.1"].measured and np.isfinite(by_name["blocks.1"].metrics["nc1"])
    assert [layer.name for layer in result.layers][:3] == ["patch_embed", "blocks.0", "blocks.1"]
    before = mp.model_info(deit).digest
    tokens = mp.extract(deit, images, layers="patch_embed", reduction="token:0")  # asked for: read anyway
    assert (
        tokens["patch_embed"].shape == (N, 32) and mp.model_info(deit).digest == before
    )  # the probe restores
    np.savez(tmp_path / "images.npz", x=images.numpy(), y=LABELS)
    js = tmp_path / "collapse.json"
    model = ["--arch", "timm:deit_tiny_patch16_224", "--arch-kwargs", json.dumps(DEIT)]
    options = [
        "--layers",
        "patch_embed,blocks.*,logits",
        "--reduction",
        "cls",
        "--no-cache",
        "-q",
        "--json",
        js,
    ]
    code, out, err = run(["collapse", *model, "--data", f"npz:{tmp_path / 'images.npz'}", *options], capsys)
    assert code == 0, err
    layers = {layer["name"]: layer for layer in json.loads(js.read_text())["layers"]}
    assert layers["patch_embed"]["status"] == "skipped" and "class token" in layers["patch_embed"]["reason"]
    assert "inf" not in out.split("patch_embed")[1].splitlines()[0]


class _Tokens(nn.Module):
    """A transformer without a class-token parameter: mprobe cannot know what token 0 is."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.block = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.block(self.embed(x)).mean(1))


def test_cls_without_a_known_class_token_asks_for_token_0():
    model = _Tokens().eval()
    x = torch.randn(N, 5, 4, generator=torch.Generator().manual_seed(1))
    result = mp.intrinsic_dimension(model, x, layers="block,logits", reduction="cls", methods=("twonn",))
    block = result.layers[0]
    assert block.status == "skipped" and "use token:0 to read it anyway" in block.reason
    assert mp.extract(model, x, layers="block", reduction="token:0")["block"].shape == (N, 8)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=20, n_embd=8, n_layer=1, n_head=2,
                                                                n_positions=6)).eval()  # fmt: skip
    ids = {"input_ids": np.random.default_rng(0).integers(0, 20, (N, 6)), "labels": np.arange(N) % 3}
    acts = mp.extract(gpt2, ids, layers="transformer.h.0", reduction="cls", classifier=False)
    assert (
        "causal language model" in acts.refused["transformer.h.0"]
        and "last" in acts.refused["transformer.h.0"]
    )
