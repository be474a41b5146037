"""MNIST / Fashion-MNIST IDX files: the reader against torchvision's on the same bytes, every layout,
gzipped and plain, class names, bounded refusal of malformed files, Debian's package."""

import gzip
import os
import struct

import numpy as np
import pytest
from torchvision.datasets.mnist import read_image_file, read_label_file

from manifold_probe.errors import InputError
from manifold_probe.sources.data import load_data
from manifold_probe.sources.formats.idx import (
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    IDX_FILES,
    read_idx,
    read_split,
)


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write(path, array, gzipped):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _idx_bytes(array)
    if gzipped:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _fake_set(folder, gzipped, rng, n_train=5, n_test=3):
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        image_name, label_name = IDX_FILES[split]
        _write(folder / image_name, images, gzipped)
        _write(folder / label_name, labels, gzipped)
        arrays[split] = (images, labels)
    return arrays


def test_reader_equals_torchvision_on_the_same_bytes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, size=7).astype(np.uint8)
    plain_images = _write(tmp_path / "img", images, gzipped=False)
    plain_labels = _write(tmp_path / "lab", labels, gzipped=False)
    zipped_images = _write(tmp_path / "img", images, gzipped=True)
    np.testing.assert_array_equal(read_idx(plain_images), read_image_file(str(plain_images)).numpy())
    np.testing.assert_array_equal(read_idx(plain_labels), read_label_file(str(plain_labels)).numpy())
    np.testing.assert_array_equal(read_idx(zipped_images), read_image_file(str(plain_images)).numpy())


def test_reader_keeps_wider_types_in_native_order(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    path = _write(tmp_path / "wide", values, gzipped=False)
    out = read_idx(path)
    assert out.dtype == np.dtype(np.int32) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize(
    "layout, kind",
    [("MNIST/raw", "mnist"), ("FashionMNIST/raw", "fashion-mnist"), ("raw", "mnist"), ("", "fashion-mnist")],
)
def test_every_layout_gzipped_or_not(tmp_path, layout, kind, gzipped):
    arrays = _fake_set(tmp_path / layout, gzipped, np.random.default_rng(1))
    for split in ("train", "test"):
        data = load_data(f"{kind}:{tmp_path}", split=split)
        images, labels = arrays[split]
        assert data.input_shape == (1, 28, 28) and data.num_classes == 10
        np.testing.assert_array_equal(data.labels, labels)
        np.testing.assert_allclose(data.inputs().numpy()[:, 0], images / 255, rtol=1e-6)
    expected_names = FASHION_MNIST_CLASSES if kind == "fashion-mnist" else tuple("0123456789")
    assert data.class_names == expected_names


def test_normalize_and_subset(tmp_path):
    _fake_set(tmp_path, False, np.random.default_rng(2), n_train=20)
    raw = load_data(f"fashion-mnist:{tmp_path}", n_points=10, seed=3)
    normed = load_data(f"fashion-mnist:{tmp_path}", n_points=10, seed=3, normalize="fashion-mnist")
    np.testing.assert_allclose(normed.inputs().numpy(), (raw.inputs().numpy() - 0.2860) / 0.3530, rtol=1e-5)
    assert raw.n_points == 10


def test_cached_arrays_are_not_shared_with_the_caller(tmp_path):
    _fake_set(tmp_path, False, np.random.default_rng(3))
    first = load_data(f"mnist:{tmp_path}")
    first.dataset.images.zero_()
    second = load_data(f"mnist:{tmp_path}")
    assert second.dataset.images.abs().sum() > 0


def test_a_rewritten_file_is_read_again(tmp_path):
    _fake_set(tmp_path, False, np.random.default_rng(4))
    before = load_data(f"mnist:{tmp_path}").labels.copy()
    labels = (before + 1) % 10
    _write(tmp_path / IDX_FILES["train"][1], labels.astype(np.uint8), gzipped=False)
    np.testing.assert_array_equal(load_data(f"mnist:{tmp_path}").labels, labels)


def test_a_file_replaced_with_its_size_and_mtime_kept_is_read_again(tmp_path):
    """rsync -a and tar x write a new file (a new inode) and restore its modification time."""
    _fake_set(tmp_path, False, np.random.default_rng(5))
    target = tmp_path / IDX_FILES["train"][1]
    before = load_data(f"mnist:{tmp_path}").labels.copy()
    info = target.stat()
    replacement = _write(tmp_path / "incoming" / target.name, ((before + 1) % 10).astype(np.uint8), False)
    os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
    os.replace(replacement, target)
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)
    np.testing.assert_array_equal(load_data(f"mnist:{tmp_path}").labels, (before + 1) % 10)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "longer than its header"),
        (lambda b: b"\x08\x03" + b[2:], "not an IDX file"),
        (lambda b: b[:4] + struct.pack(">iii", 100000, 1000, 1000) + b[16:], "MiB"),
    ],
)
def test_malformed_files_are_refused_naming_the_file(tmp_path, damage, message):
    _fake_set(tmp_path, False, np.random.default_rng(5))
    target = tmp_path / IDX_FILES["train"][0]
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(InputError, match=message) as info:
        load_data(f"fashion-mnist:{tmp_path}")
    assert "train-images-idx3-ubyte" in str(info.value)


def test_fewer_labels_than_images_is_refused(tmp_path):
    _fake_set(tmp_path, False, np.random.default_rng(6))
    _write(tmp_path / IDX_FILES["train"][1], np.array([1, 2], dtype=np.uint8), gzipped=False)
    with pytest.raises(InputError, match="2 labels for the 5 images"):
        load_data(f"mnist:{tmp_path}")


def test_a_gzip_bomb_is_read_only_up_to_its_declared_size(tmp_path):
    header = bytes([0, 0, 8, 1]) + struct.pack(">i", 10)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(header + b"\x00" * (50 * 2**20)))
    with pytest.raises(InputError, match="longer than its header"):
        read_idx(path)


def test_missing_set_says_where_it_looked(tmp_path):
    with pytest.raises(InputError, match="FashionMNIST/raw.*nothing is downloaded"):
        load_data(f"fashion-mnist:{tmp_path}")


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_debian_package_is_the_default_location():
    images, labels, names = read_split(None, "test", "fashion-mnist")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    data = load_data("fashion-mnist", split="test", n_points=50, seed=0)
    assert data.class_names[0] == "T-shirt/top" and data.n_points == 50


def test_class_names_reach_the_result_json(tmp_path):
    import manifold_probe as mp
    from manifold_probe.sources.zoo import build_model

    _fake_set(tmp_path, True, np.random.default_rng(7), n_train=40)
    data = mp.load_data(f"fashion-mnist:{tmp_path}", n_points=40, seed=0)
    model = build_model("digits-mlp", width=8, depth=1, input_size=28).eval()
    result = mp.intrinsic_dimension(model, data, methods=("twonn",))
    assert result.to_dict()["source"]["class_names"] == list(FASHION_MNIST_CLASSES)


def test_normalize_is_recorded_in_the_cache_key_and_the_result(tmp_path):
    from manifold_probe.measures.pipeline import data_source, default_data_key
    from manifold_probe_cli.options import parse_normalize

    _fake_set(tmp_path, False, np.random.default_rng(8), n_train=20)
    plain = load_data(f"fashion-mnist:{tmp_path}")
    normed = load_data(f"fashion-mnist:{tmp_path}", normalize=parse_normalize("0.286,0.353"))
    assert parse_normalize("fashion-mnist") == "fashion-mnist"
    assert parse_normalize("0.49,0.48,0.45,0.25,0.24,0.26") == ((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))
    with pytest.raises(InputError, match="even count"):
        parse_normalize("0.3")
    assert plain.preprocessing == "" and "preprocessing" not in data_source(plain, len(plain))
    assert normed.preprocessing == "normalize=mean[0.286],std[0.353]"
    assert default_data_key(plain) != default_data_key(normed)
    assert data_source(normed, len(normed))["preprocessing"] == normed.preprocessing
