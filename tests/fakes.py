"""Small fakes on disk (data sets in the layouts the loaders expect, untrained checkpoints,
TorchScript archives; no downloads in tests) and a runner of the command line."""

import pickle
import struct
import tracemalloc
import warnings

import numpy as np
import torch

from manifold_probe.sources import zoo
from manifold_probe.sources.checkpoint import make_checkpoint, save_checkpoint
from manifold_probe_cli.main import main

CHANCE_METRICS = {"train_accuracy": 0.1, "test_accuracy": 0.1, "train_loss": 2.3, "test_loss": 2.3}


def run_cli(args, capsys):
    """(exit code, stdout, stderr) of `mprobe ARGS` run in this process."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one non-empty line of `err` (fails the test when there are more or none)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def save_script(module, path):
    """Save `module` (in eval mode) as a TorchScript archive at `path`; returns the path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(module.eval()).save(str(path))
    return path


def untrained_checkpoint(path, arch="digits-cnn", arch_args=None, *, seed=0, head_scale=1.0):
    """An untrained zoo model saved as mprobe's checkpoint (the classifier's weights times
    `head_scale`); returns the path."""
    arch_args = arch_args or {"width": 4, "depth": 2}
    torch.manual_seed(seed)
    module = zoo.build_model(arch, **arch_args)
    state = {k: v * head_scale if k.startswith("head.") else v for k, v in module.state_dict().items()}
    save_checkpoint(
        path,
        make_checkpoint(arch=arch, arch_args=arch_args, state_dict=state, data="digits", split_seed=0,
                        seed=seed, epoch=0, training={}, metrics=CHANCE_METRICS),
    )  # fmt: skip
    return path


def write_idx(path, array, magic):
    """An uncompressed MNIST idx file (magic 2051: images, 2049: labels)."""
    with open(path, "wb") as handle:
        handle.write(struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape))
        handle.write(array.astype(np.uint8).tobytes())


def write_cifar_batch(path, images, labels, label_key):
    with open(path, "wb") as handle:
        pickle.dump({"data": images, label_key: list(labels), "batch_label": "fake"}, handle)


def write_fake_cifar10(root, per_batch=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch)
        write_cifar_batch(folder / name, images, labels, "labels")
        batches[name] = (images, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    return batches


def peak_allocation(call) -> int:
    """The peak of Python's and NumPy's allocations (tracemalloc) while call() runs, in bytes."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
