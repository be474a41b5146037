"""Small fake data sets on disk, in the layouts the loaders expect (no downloads in tests)."""

import pickle

import numpy as np


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
