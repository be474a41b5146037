"""A sweep over checkpoints the project did not train (issue 11, item 6): torchvision state
dicts of two families listed in a manifest, the model options of the measuring commands, the
report's families from the manifest, and the per-layer long-form table."""

import csv
import json

import numpy as np
import pytest
import torch

from manifold_probe.errors import InputError
from manifold_probe.study.checkpoints import read_manifest
from manifold_probe.study.sweep import run_sweep
from manifold_probe.study.tables import LAYER_COLUMN_TYPES
from manifold_probe_cli.main import main

torchvision = pytest.importorskip("torchvision")

FAMILIES = {"resnet": "torchvision:resnet18", "shufflenet": "torchvision:shufflenet_v2_x0_5"}
LAYERS = {"resnet": "layer*,logits", "shufflenet": "stage*,logits"}  # each family names its own


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Four random-init torchvision state dicts (two per family), 3x16x16 data and a manifest."""
    root = tmp_path_factory.mktemp("foreign")
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x=rng.normal(size=(60, 3, 16, 16)).astype(np.float32),
             y=np.repeat(np.arange(10), 6))  # fmt: skip
    rows = []
    for index, (family, arch) in enumerate(FAMILIES.items()):
        for seed in range(2):
            torch.manual_seed(10 * index + seed)
            model = torchvision.models.get_model(arch.split(":")[1], weights=None, num_classes=10)
            name = f"{family}-{seed}.pt"
            torch.save(model.state_dict(), root / name)
            accuracy = 0.5 + 0.1 * seed + 0.05 * index
            rows.append([name, arch, 10, family, accuracy, 0.9, LAYERS[family], 0.1 * (seed + 1), "sgd"])
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "arch", "num_classes", "family", "test_acc", "train_acc", "layers", "lr",
                         "optimizer"])  # fmt: skip
        writer.writerows(rows)
    return root


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_read_manifest_csv_and_json(foreign, tmp_path):
    entries = read_manifest(foreign / "manifest.csv")
    assert [e.family for e in entries] == ["resnet", "resnet", "shufflenet", "shufflenet"]
    first = entries[0]
    assert first.load_options == {"arch": "torchvision:resnet18", "num_classes": 10}
    assert first.metrics == {"test_accuracy": 0.5, "train_accuracy": 0.9}
    assert first.settings == {"lr": 0.1, "optimizer": "sgd"} and first.layers == ("layer*", "logits")
    assert first.path == str((foreign / "resnet-0.pt").resolve())
    listed = [{"path": str(foreign / "resnet-1.pt"), "arch": "torchvision:resnet18", "num_classes": 10,
               "family": "r", "test_accuracy": 0.7, "arch_args": {"zero_init_residual": True}}]  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps({"checkpoints": listed}))
    (entry,) = read_manifest(tmp_path / "m.json")
    assert entry.load_options["arch_args"] == {"zero_init_residual": True}
    assert entry.metrics == {"test_accuracy": 0.7}


@pytest.mark.parametrize(
    "text, message",
    [
        ("arch,family\ntorchvision:resnet18,r\n", "has no path"),
        ("path\nmissing.pt\n", "checkpoint not found"),
        ("path,test_acc\nresnet-0.pt,87\n", "fraction from 0 to 1"),
        ("path,num_classes\nresnet-0.pt,ten\n", "whole number"),
        ("path\n", "lists no checkpoint"),
    ],
)
def test_bad_manifests_name_the_entry(foreign, text, message):
    path = foreign / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(path)


def test_a_sweep_over_a_manifest_gives_the_tables_and_the_report(foreign, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--manifest", str(foreign / "manifest.csv"), "--probes", "id,collapse",
                 "--data", f"npz:{foreign / 'data.npz'}", "--reduction", "avgpool", "--reduction",
                 "logits=none", "--workers", "1", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    table = _read_csv(out / "table.csv")
    assert sorted(row["family"] for row in table) == ["resnet", "resnet", "shufflenet", "shufflenet"]
    assert {row["arch"] for row in table} == set(FAMILIES.values())
    assert sorted(float(row["test_accuracy"]) for row in table) == pytest.approx([0.5, 0.55, 0.6, 0.65])
    assert {row["lr"] for row in table} == {"0.1", "0.2"} and {row["optimizer"] for row in table} == {"sgd"}
    assert all(float(row["last_layer_id_twonn"]) > 0 and float(row["nc1_penultimate"]) > 0 for row in table)

    layers = _read_csv(out / "layers.csv")
    assert list(layers[0]) == list(LAYER_COLUMN_TYPES)
    resnet = [r for r in layers if r["run_id"] == table[0]["run_id"] and r["measure"] == "id"]
    twonn = [r for r in resnet if r["metric"] == "id_twonn"]
    # the manifest's layers, globs within one dotted level: the four stages, not their blocks
    assert [r["layer"] for r in twonn] == ["layer1", "layer2", "layer3", "layer4", "logits"]
    assert [float(r["depth"]) for r in twonn] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert all(r["family"] == "resnet" and float(r["value"]) > 0 for r in twonn)
    shuffle = {r["layer"] for r in layers if r["family"] == "shufflenet" and r["measure"] == "collapse"}
    assert {"stage2", "stage3", "stage4", "logits"} <= shuffle
    assert {r["measure"] for r in layers} == {"id", "collapse"}

    code = main(["report", str(out), "--out", str(tmp_path / "report"), "--bootstrap", "20",
                 "--permutations", "20", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["summary"]["families"] == {"resnet": 2, "shufflenet": 2}
    assert (tmp_path / "report" / "index.html").is_file()


def test_sweep_model_options_apply_to_plain_checkpoint_paths(foreign, tmp_path):
    summary = run_sweep([foreign / "resnet-0.pt"], ("id",), tmp_path / "s", arch="torchvision:resnet18",
                        num_classes=10, layers=["layer?", "logits"], reduction={"default": "avgpool",
                        "logits": "none"}, data=f"npz:{foreign / 'data.npz'}", workers=1)  # fmt: skip
    assert not summary.failed and summary.layers_csv is not None
    rows = _read_csv(summary.table_csv)
    assert rows[0]["family"] == "torchvision:resnet18"  # no manifest: the family is the arch
    # a glob stays within one dotted level: the four stages, not their blocks
    found = [r["layer"] for r in _read_csv(summary.layers_csv) if r["metric"] == "id_twonn"]
    assert found == ["layer1", "layer2", "layer3", "layer4", "logits"]
    with pytest.raises(InputError, match="give at least one checkpoint"):
        run_sweep([], ("id",), tmp_path / "t")
