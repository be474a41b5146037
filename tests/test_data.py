"""Data specs: the fixed digits split, every loader on a tiny fake root on disk, subsets, errors."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
from fakes import write_cifar_batch, write_fake_cifar10, write_idx
from PIL import Image
from sklearn.datasets import load_digits

from manifold_probe.errors import InputError
from manifold_probe.sources.data import (
    digits_split,
    has_test_split,
    load_data,
    stratified_subset,
)

# sha256 of the test indices (int64, little-endian) of the digits split: frozen forever.
DIGITS_TEST_DIGEST = "c3497390f2e232b2106f5b6a630aa90b6ad21448d21f75e24b1dfd06948146bb"


# --- digits ------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_disjoint():
    target = load_digits().target
    train_idx, test_idx = digits_split(target)
    counts = np.bincount(target)
    expected_test = np.floor(0.25 * counts + 0.5).astype(int)  # 25 % per class, half rounds up
    np.testing.assert_array_equal(np.bincount(target[test_idx]), expected_test)
    assert len(test_idx) == 451 and len(train_idx) == 1346
    assert np.intersect1d(train_idx, test_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, test_idx), np.arange(len(target)))
    digest = hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest()
    assert digest == DIGITS_TEST_DIGEST


def test_digits_images_are_the_sklearn_pixels_standardised_with_train_statistics():
    bunch = load_digits()
    train_idx, test_idx = digits_split(bunch.target)
    train = load_data("digits", split="train")
    test = load_data("digits", split="test")
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    x_train, x_test = train.inputs(), test.inputs()
    assert x_train.dtype == torch.float32 and x_train.shape == (1346, 1, 8, 8)
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-3
    mean, std = (bunch.data[train_idx] / 16).mean(), (bunch.data[train_idx] / 16).std()
    pixels = (x_test.numpy().reshape(-1, 64) * std + mean) * 16
    np.testing.assert_allclose(pixels, bunch.data[test_idx], atol=1e-4)
    np.testing.assert_array_equal(test.labels, bunch.target[test_idx])
    x0, y0 = test.dataset[0]
    assert torch.equal(x0, x_test[0]) and y0 == bunch.target[test_idx[0]]


def test_subset_is_reproducible_stratified_and_inside_the_split():
    a = load_data("digits", n_points=100, seed=5)
    b = load_data("digits", n_points=100, seed=5)
    c = load_data("digits", n_points=100, seed=6)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert a.n_points == 100 and len(a.dataset) == 100
    full = load_data("digits")
    np.testing.assert_array_equal(a.labels, full.labels[a.indices])
    assert torch.equal(a.inputs(), full.inputs()[torch.from_numpy(a.indices)])
    np.testing.assert_array_equal(np.bincount(a.labels), [10] * 10)


def test_stratified_quotas_follow_class_shares():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    chosen = stratified_subset(labels, 10, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [5, 3, 2])
    chosen = stratified_subset(labels, 11, seed=0)  # 5.5, 3.3, 2.2: the extra one goes to class 0
    np.testing.assert_array_equal(np.bincount(labels[chosen]), [6, 3, 2])
    assert len(np.unique(stratified_subset(labels, 2, seed=1))) == 2  # fewer points than classes


def test_too_many_points_and_bad_split_are_input_errors():
    with pytest.raises(InputError, match="at most 1346"):
        load_data("digits", n_points=5000)
    with pytest.raises(InputError, match="train or test"):
        load_data("digits", split="validation")
    with pytest.raises(InputError, match="n_points: must be a whole number of at least 1"):
        load_data("digits", n_points=0)


def test_batches_cover_the_data_in_order_and_shuffle_reproducibly():
    data = load_data("digits", split="test")
    xs, ys = zip(*data.batches(100), strict=True)
    assert torch.equal(torch.cat(xs), data.inputs())
    np.testing.assert_array_equal(torch.cat(ys).numpy(), data.labels)

    def shuffled_labels(seed):
        generator = torch.Generator().manual_seed(seed)
        return [y for _, y in data.batches(64, shuffle=True, generator=generator)]

    first, again = shuffled_labels(1), shuffled_labels(1)

    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.cat(shuffled_labels(2)))
    assert sorted(torch.cat(first).tolist()) == sorted(data.labels.tolist())
    assert sum(len(y) for _, y in data.batches(64, drop_last=True)) == 448


# --- spec errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("digts", "did you mean digits"),
        ("cifar:/data", "did you mean cifar10"),
        ("embeddings.npz", "did you mean npz:embeddings.npz"),
        ("fashion", "npz:PATH, imagefolder:ROOT, cifar10:ROOT"),
        ("mnist", "needs a location: mnist:ROOT"),
        ("digits:/x", "takes no argument"),
    ],
)
def test_bad_specs_say_what_to_write(spec, expected):
    with pytest.raises(InputError, match=expected.replace(".", r"\.")):
        load_data(spec)


# --- npz ---------------------------------------------------------------------------------


def test_npz_train_and_test_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(12, 3, 4)), rng.normal(size=(6, 3, 4))
    y, y_test = np.arange(12) % 3, np.array([0, 1, 2, 3, 3, 0])
    path = tmp_path / "arrays.npz"
    np.savez(path, x=x, y=y.astype(float), x_test=x_test, y_test=y_test)
    train = load_data(f"npz:{path}")
    test = load_data(f"npz:{path}", split="test")
    assert train.input_shape == (3, 4) and train.num_classes == 4 == test.num_classes
    np.testing.assert_allclose(train.inputs().numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(test.labels, y_test)
    assert has_test_split(f"npz:{path}")


def test_npz_without_test_arrays_and_bad_archives(tmp_path):
    path = tmp_path / "train_only.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    assert load_data(f"npz:{path}").n_points == 4
    assert not has_test_split(f"npz:{path}")
    with pytest.raises(InputError, match="no test split"):
        load_data(f"npz:{path}", split="test")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(InputError, match="Python objects"):
        load_data(f"npz:{objects}")
    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(InputError, match="x and y"):
        load_data(f"npz:{unnamed}")
    negative = tmp_path / "negative.npz"
    np.savez(negative, x=np.zeros((2, 2)), y=np.array([0, -1]))
    with pytest.raises(InputError, match="negative"):
        load_data(f"npz:{negative}")
    with pytest.raises(InputError, match="not found"):
        load_data(f"npz:{tmp_path / 'absent.npz'}")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match="is not a supported format: give a NumPy .npz archive"):
        load_data(f"npz:{garbage}")


# --- image folders -----------------------------------------------------------------------


def _png(path, value, size=(5, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)


def test_imagefolder_splits_share_class_indices(tmp_path):
    _png(tmp_path / "train" / "cat" / "a.png", 10)
    _png(tmp_path / "train" / "dog" / "b.png", 20)
    _png(tmp_path / "train" / "eel" / "c.png", 30)
    _png(tmp_path / "test" / "dog" / "d.png", 40)  # no cat or eel in test: dog must stay 1
    train = load_data(f"imagefolder:{tmp_path}")
    test = load_data(f"imagefolder:{tmp_path}", split="test")
    assert train.class_names == test.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(train.labels, [0, 1, 2])
    np.testing.assert_array_equal(test.labels, [1])
    assert train.input_shape == (3, 4, 5) and test.num_classes == 3
    np.testing.assert_allclose(test.inputs().numpy(), np.full((1, 3, 4, 5), 40 / 255), rtol=1e-6)
    halves = ((0.5,) * 3, (0.25,) * 3)
    resized = load_data(f"imagefolder:{tmp_path}", image_size=2, normalize=halves)
    assert resized.input_shape == (3, 2, 2)
    np.testing.assert_allclose(resized.dataset[0][0].numpy(), (10 / 255 - 0.5) / 0.25, rtol=1e-5)
    assert has_test_split(f"imagefolder:{tmp_path}")


def test_imagefolder_without_split_folders_is_the_train_split(tmp_path):
    _png(tmp_path / "a" / "1.png", 0)
    _png(tmp_path / "b" / "2.png", 255)
    data = load_data(f"imagefolder:{tmp_path}", n_points=1, seed=0)
    assert data.n_points == 1 and data.inputs().shape == (1, 3, 4, 5)
    assert not has_test_split(f"imagefolder:{tmp_path}")
    with pytest.raises(InputError, match="no test split"):
        load_data(f"imagefolder:{tmp_path}", split="test")
    with pytest.raises(InputError, match="image folder not found"):
        load_data(f"imagefolder:{tmp_path / 'absent'}")


# --- CIFAR -------------------------------------------------------------------------------


def test_cifar10_from_a_fake_root(tmp_path):
    batches = write_fake_cifar10(tmp_path)
    train = load_data(f"cifar10:{tmp_path}")
    assert train.n_points == 10 and train.input_shape == (3, 32, 32) and train.num_classes == 10
    images = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    expected = images.reshape(-1, 3, 32, 32).astype(np.float32) / 255
    np.testing.assert_allclose(train.inputs().numpy(), expected, rtol=1e-6)
    labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(train.labels, labels)
    assert train.class_names[3] == "class3"
    folder = tmp_path / "cifar-10-batches-py"  # the folder itself as ROOT works too
    test = load_data(f"cifar10:{folder}", split="test", normalize="cifar10")
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    raw = batches["test_batch"][0].reshape(-1, 3, 32, 32) / 255
    want = (raw - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(test.inputs().numpy(), want, rtol=1e-5, atol=1e-5)


def test_cifar100_from_a_fake_root(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    images = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    write_cifar_batch(folder / "train", images, [99, 5], "fine_labels")
    data = load_data(f"cifar100:{tmp_path}")
    assert data.num_classes == 100
    np.testing.assert_array_equal(data.labels, [99, 5])
    with pytest.raises(InputError, match="cifar-100-python/test"):
        load_data(f"cifar100:{tmp_path}", split="test")


def test_cifar_absent_root_says_what_to_put_where(tmp_path):
    expected = "expected .*cifar-10-batches-py.*python version of CIFAR-10"
    with pytest.raises(InputError, match=expected):
        load_data(f"cifar10:{tmp_path}")


class _Planted:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_batch_with_code_is_refused_without_running_it(tmp_path):
    write_fake_cifar10(tmp_path)
    marker = tmp_path / "ran"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as handle:
        pickle.dump({"data": _Planted(marker), "labels": [0]}, handle)
    with pytest.raises(InputError, match="refusing to load"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()


# --- MNIST -------------------------------------------------------------------------------


def test_mnist_from_a_fake_raw_folder(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(3, 28, 28))
    write_idx(raw / "train-images-idx3-ubyte", train_images, 2051)
    write_idx(raw / "train-labels-idx1-ubyte", np.array([7, 0, 9]), 2049)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(2, 28, 28)), 2051)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.array([1, 2]), 2049)
    train = load_data(f"mnist:{tmp_path}")
    assert train.input_shape == (1, 28, 28) and train.num_classes == 10
    np.testing.assert_array_equal(train.labels, [7, 0, 9])
    np.testing.assert_allclose(train.inputs().numpy()[:, 0], train_images / 255, rtol=1e-6)
    assert load_data(f"mnist:{tmp_path}", split="test").n_points == 2


def test_mnist_absent_names_every_place_it_looked(tmp_path):
    with pytest.raises(InputError, match="no train-images-idx3-ubyte .*MNIST/raw"):
        load_data(f"mnist:{tmp_path}")
