"""The data key of the activation cache: a SHA-256 of the data's bytes (`content_fingerprint`),
against reading the same data (`load_data`, and for an image folder decoding every image).

Fashion-MNIST is Debian's `dataset-fashion-mnist` (four gzipped IDX files, 30 MB; skipped when
it is not installed); the image folder is made here: --quick 5,000 PNG images of 32x32 pixels in
10 class folders, --full 50,000 (CIFAR-10's training set as files) plus 2,000 JPEG images of
224x224. Each key is timed twice in one process: the first call reads and hashes every byte
(from the page cache: the files were just written or read, so this is the hashing cost, not
the disk's), the second finds each file's digest remembered for its version (path, size,
modification and status-change times, inode) and only stats the files.

    python benchmarks/bench_data_key.py [--quick | --full] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from timing import report_ratio, timed

from manifold_probe.extraction import cache
from manifold_probe.sources.data import data_location, load_data
from manifold_probe.sources.formats.idx import DEBIAN_FASHION_MNIST


def _folder_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def make_images(root: Path, count: int, size: int, suffix: str) -> Path:
    """`count` random images of size x size pixels in 10 class folders under `root`."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}{suffix}")
    return root


def key_times(location: Path) -> tuple[float, float]:
    """(seconds of the first key, of the second) of `location` in this process."""
    cache._DIGESTS.clear()  # noqa: SLF001 - the first call must read every byte
    first = timed(lambda: cache.content_fingerprint(location))[1]
    second = timed(lambda: cache.content_fingerprint(location))[1]
    return first, second


def report(name: str, location: Path, read_seconds: float, what_read: str) -> None:
    n_bytes = location.stat().st_size if location.is_file() else _folder_bytes(location)
    n_files = 1 if location.is_file() else sum(1 for p in location.rglob("*") if p.is_file())
    first, second = key_times(location)
    print(
        f"{name}: {n_files:,} files, {n_bytes / 2**20:,.1f} MiB; key {first:.3f} s first "
        f"({n_bytes / 2**20 / first:,.0f} MiB/s, {first / n_files * 1e6:,.0f} us per file), "
        f"{second:.3f} s remembered; {what_read} {read_seconds:.2f} s",
        flush=True,
    )
    report_ratio("bench_data_key", f"{name}: key / {what_read}", first / read_seconds, 0.25)


def read_folder(root: Path) -> float:
    """Seconds to load the image folder and decode every image (what a forward pass needs)."""

    def decode():
        data = load_data(f"imagefolder:{root}", image_size=32)
        for i in range(len(data)):
            data[i]

    return timed(decode)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 small images instead of 50,000 + 2,000.")
    parser.add_argument("--full", action="store_true", help="The sizes of the docstring (the default).")
    parser.add_argument("--keep", type=Path, help="Make the image folders here and keep them.")
    args = parser.parse_args()

    if DEBIAN_FASHION_MNIST.is_dir():
        location = data_location("fashion-mnist")
        seconds = timed(lambda: load_data("fashion-mnist"))[1]
        report("fashion-mnist", location, seconds, "load_data")
    else:
        print(f"fashion-mnist: not in {DEBIAN_FASHION_MNIST} (apt-get install dataset-fashion-mnist)")

    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        sets = [("png 32x32", 5_000 if args.quick else 50_000, 32, ".png")]
        if not args.quick:
            sets.append(("jpeg 224x224", 2_000, 224, ".jpg"))
        for name, count, size, suffix in sets:
            root = make_images(base / name.replace(" ", "-"), count, size, suffix)
            report(f"image folder, {count:,} {name}", root, read_folder(root), "load and decode")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
