"""Mixed sweeps (issue 24, item 3): one manifest mixing a timm ViT, a timm Swin and a grayscale
torchvision ResNet, each row with its own layers, reduction, in_channels, arch_kwargs and
normalize; per-layer reductions written comma-separated; a layer pattern one architecture lacks
left out for that checkpoint with a note; a bad row reported while the others run; and `sweep`
taking every measuring option."""

from __future__ import annotations

import csv
import inspect
import json

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.extraction.reductions import parse_reduction_options
from manifold_probe.results import read_result
from manifold_probe.study.checkpoints import read_manifest, read_manifest_rows
from manifold_probe.study.sweep import run_sweep
from manifold_probe_cli import commands_sweep, options
from manifold_probe_cli.main import main

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
PIL = pytest.importorskip("PIL")

VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 3}
SWIN = {
    "img_size": 32,
    "patch_size": 4,
    "window_size": 4,
    "embed_dim": 16,
    "depths": [1, 1],
    "num_heads": [1, 2],
    "num_classes": 3,
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Random-init checkpoints of three architectures, an RGB image folder and a manifest."""
    root = tmp_path_factory.mktemp("mixed")
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / "images" / label).mkdir(parents=True)
        for i in range(8):
            pixels = (rng.uniform(size=(32, 32, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "images" / label / f"{i}.png")
    torch.manual_seed(0)
    torch.save(
        timm.create_model("vit_tiny_patch16_224", pretrained=False, **VIT).state_dict(), root / "vit.pt"
    )
    torch.save(
        timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **SWIN).state_dict(),
        root / "swin.pt",
    )
    resnet = torchvision.models.resnet18(num_classes=3)
    resnet.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save(resnet.state_dict(), root / "gray.pt")
    rows = [
        {
            "path": "vit.pt",
            "arch": "timm:vit_tiny_patch16_224",
            "arch_kwargs": json.dumps(VIT),
            "reduction": "blocks.*=cls,head=none",
            "layers": "blocks.*,head",
            "normalize": "imagenet",
            "test_acc": 0.4,
            "train_acc": 0.5,
        },
        {
            "path": "swin.pt",
            "arch": "timm:swin_tiny_patch4_window7_224",
            "arch_kwargs": json.dumps(SWIN),
            "reduction": "",
            "layers": "layers.*,head",
            "normalize": "",
            "test_acc": 0.45,
            "train_acc": 0.5,
        },
        {
            "path": "gray.pt",
            "arch": "torchvision:resnet18",
            "num_classes": 3,
            "in_channels": 1,
            "reduction": "avgpool,logits=none",
            "layers": "layer*,logits",
            "normalize": "0.5,0.25",
            "test_acc": 0.5,
            "train_acc": 0.6,
        },
    ]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_comma_separated_per_layer_reductions_split_at_their_own_equals_sign():
    assert parse_reduction_options(["blocks.*=cls,head=none"]) == {"blocks.*": "cls", "head": "none"}
    assert parse_reduction_options(["avgpool,logits=none"]) == {"default": "avgpool", "logits": "none"}
    assert parse_reduction_options(["token:0, logits = none"]) == {"default": "token:0", "logits": "none"}
    with pytest.raises(InputError, match="given twice"):
        parse_reduction_options(["logits=none,logits=cls"])
    with pytest.raises(InputError, match="no layer before"):
        parse_reduction_options(["=cls"])


def test_manifest_rows_carry_their_own_measuring_options(mixed):
    vit, swin, gray = read_manifest(mixed / "manifest.csv")
    assert vit.reduction == {"blocks.*": "cls", "head": "none"} and vit.layers == ("blocks.*", "head")
    assert vit.load_options["arch_args"] == VIT and vit.data_options == {"normalize": "imagenet"}
    assert swin.reduction is None and swin.data_options == {}
    assert gray.load_options["in_channels"] == 1 and gray.reduction == {
        "default": "avgpool",
        "logits": "none",
    }
    assert gray.data_options == {"normalize": ((0.5,), (0.25,)), "channels": 1}
    listed = [{"path": "vit.pt", "reduction": {"blocks.*": "cls", "default": "mean"}},
              {"path": "vit.pt", "reduction": ["avgpool", "logits=none"]}]  # fmt: skip
    (mixed / "m.json").write_text(json.dumps(listed))
    first, second = read_manifest(mixed / "m.json")
    assert first.reduction == {"blocks.*": "cls", "default": "mean"}
    assert second.reduction == {"default": "avgpool", "logits": "none"}


def test_a_sweep_mixing_vit_swin_and_a_grayscale_resnet_runs_every_row_with_its_options(mixed, tmp_path):
    summary = run_sweep(
        (),
        ["id"],
        tmp_path / "sweep",
        manifest=mixed / "manifest.csv",
        data=f"imagefolder:{mixed / 'images'}",
        workers=1,
    )
    assert not summary.failed and not summary.rejected, summary.failed or summary.rejected
    assert len(summary.done) == 3
    results = {
        p.parent.name.split("-")[0]: read_result(p)
        for p in (tmp_path / "sweep" / "results").glob("*/id.json")
    }
    vit, swin, gray = results["vit"], results["swin"], results["gray"]
    assert [layer.name for layer in vit.layers] == ["blocks.0", "blocks.1", "head"]
    assert vit.source["reduction"] == {"blocks.*": "cls", "head": "none"}
    assert all(layer.ambient_dim == 32 for layer in vit.layers[:2]) and vit.layers[2].ambient_dim == 3
    assert "imagenet" in vit.source["preprocessing"] or "0.485" in vit.source["preprocessing"]
    assert [layer.name for layer in swin.layers] == ["layers.0", "layers.1", "head"]
    assert [layer.name for layer in gray.layers] == ["layer1", "layer2", "layer3", "layer4", "logits"]
    assert [layer.ambient_dim for layer in gray.layers] == [64, 128, 256, 512, 3]  # avgpool, logits as is
    assert "0.25" in gray.source["preprocessing"]  # its own normalisation, one channel


def test_a_sweep_reads_and_overrides_the_layout_of_every_checkpoint(mixed, tmp_path):
    """Swin's stages (8 x 8 x 16, 4 x 4 x 32) are channels-last maps: avgpool keeps their 16 and
    32 channels; --layout channels_first in the sweep (the measuring commands' option) averages
    the last two axes instead, leaving 8 and 4 features."""
    options = {"arch": "timm:swin_tiny_patch4_window7_224", "arch_args": SWIN, "layers": ["layers.*"],
               "reduction": "avgpool", "data": f"imagefolder:{mixed / 'images'}", "workers": 1}  # fmt: skip
    dims = {}
    for layout in ("auto", "channels_first"):
        summary = run_sweep([mixed / "swin.pt"], ["id"], tmp_path / layout, layout=layout, **options)
        assert not summary.failed, summary.failed
        (result,) = [read_result(p) for p in (tmp_path / layout / "results").glob("*/id.json")]
        dims[layout] = [layer.ambient_dim for layer in result.layers]
    assert dims == {"auto": [16, 32], "channels_first": [8, 4]}
    with pytest.raises(InputError, match="unknown layout"):
        run_sweep([mixed / "swin.pt"], ["id"], tmp_path / "other", layout="sideways")


def _sweep(manifest, mixed, out, *extra):
    """`mprobe sweep` of the id measure over `manifest` on the image folder, in this process."""
    data = f"imagefolder:{mixed / 'images'}"
    common = ["--measures", "id", "--data", data, "--workers", "1", "--out", str(out), "-q"]
    return main(["sweep", "--manifest", str(manifest), *common, *extra])


def test_a_pattern_one_architecture_lacks_is_left_out_for_that_checkpoint(mixed, tmp_path, capsys):
    manifest = tmp_path / "m.json"
    rows = [
        {"path": str(mixed / "gray.pt"), "arch": "torchvision:resnet18", "num_classes": 3, "in_channels": 1},
        {"path": str(mixed / "vit.pt"), "arch": "timm:vit_tiny_patch16_224", "arch_kwargs": VIT},
    ]
    manifest.write_text(json.dumps(rows))
    out = tmp_path / "sweep"
    code = _sweep(
        manifest, mixed, out, "--layers", "layer1,blocks.*,logits,head", "--reduction", "avgpool,blocks.*=cls"
    )
    err = capsys.readouterr().err
    assert code == 0, err
    gray = read_result(next((out / "results").glob("gray-*/id.json")))
    vit = read_result(next((out / "results").glob("vit-*/id.json")))
    assert [layer.name for layer in gray.layers] == ["layer1", "logits"]
    assert [layer.name for layer in vit.layers] == ["blocks.0", "blocks.1", "head", "logits"]
    assert any("'blocks.*' matches no layer" in note for note in gray.source["left_out"])
    assert any("'layer1' matches no layer" in note for note in vit.source["left_out"])
    assert "'blocks.*' matches no layer of this model: left out" in " ".join(err.split())


def test_a_bad_row_is_reported_and_the_other_rows_run(mixed, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,arch,num_classes,in_channels,reduction,test_acc\n"
        f"{mixed / 'gray.pt'},torchvision:resnet18,3,1,avgpool,0.5\n"
        f"{mixed / 'gray.pt'},torchvision:resnet18,3,1,avgpool=pool,0.5\n"  # a bad reduction
        f"{mixed / 'gray.pt'},torchvision:resnet18,3,3,avgpool,0.5\n"  # weights do not fit
        f"{mixed / 'missing.pt'},torchvision:resnet18,3,1,avgpool,0.5\n"
        f"{mixed / 'gray.pt'},torchvision:resnet18,3,1,avgpool,1.5\n"
    )
    entries, rejected = read_manifest_rows(manifest)
    assert len(entries) == 2 and [r.where.rsplit(" ", 1)[1] for r in rejected] == ["2", "4", "5"]
    out = tmp_path / "sweep"
    code = _sweep(manifest, mixed, out, "--layers", "layer4")
    captured = capsys.readouterr()
    assert code == 1
    assert len(list((out / "results").glob("*/id.json"))) == 1
    err = " ".join(captured.err.split())
    for number, reason in (
        ("2", "unknown reduction"),
        ("3", "the model does not load"),
        ("4", "checkpoint not found"),
        ("5", "fraction from 0 to 1"),
    ):
        assert f"entry {number}: " in err and reason in err, err
    with pytest.raises(InputError, match="no checkpoint can be run"):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"path,reduction\n{mixed / 'gray.pt'},pool\n")
        run_sweep((), ["id"], tmp_path / "s2", manifest=bad)


def test_sweep_takes_every_measuring_option():
    """Every data and model option of the measuring commands, except the point-cloud and
    single-model ones and the cache (the sweep keeps its own in its folder)."""
    own = set(inspect.signature(commands_sweep.sweep_command).parameters)
    shared = set(options._SOURCE_OPTIONS) - {"model", "points", "labels", "cache_dir", "no_cache"}
    assert shared <= own, shared - own
