"""The multiscale profile on a ResNet-18 layer, against a plain per-neighbourhood SVD.

Workload: torchvision's `resnet18(num_classes=10)` at random init (no download), N synthetic
3x32x32 images (`bench_resnet18.synthetic_images`), the output of `layer1` (64 x 8 x 8 = 4096
features per image) and of `layer4` (512). Timed, best of `--repeats`:

- mprobe: `geometry.multiscale.multiscale_profile` on the layer (12 scales, K = 10 to N / 4,
  `--anchors` anchors, 200 by default as in the measures; its own kNN graph included);
- peer: the same profile written the plain way: scikit-learn's `NearestNeighbors` for the
  graph, then for every scale and every anchor `numpy.linalg.svd` of the centred K x D
  neighbourhood (what a researcher writes first).

Both must agree: the mean singular values at every scale within 1e-6 relative (checked before
any ratio is reported). The ratio peer / mprobe is the speed-up (goal: at least 1, mprobe no
slower than the plain loop). Denoising, which the measures run first, is timed separately
(`geometry.denoise.denoise` on the layer).

    python benchmarks/bench_multiscale.py [--quick] [--n N] [--repeats R]

--quick: N = 1000, 50 anchors, one repeat (a few minutes on 2 busy cores). Default N = 2000,
200 anchors, 2 repeats.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from timing import best_of, report_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_resnet18 import synthetic_images  # noqa: E402


def layer_points(n: int, layer: str) -> np.ndarray:
    """The flattened output of `layer` of a random-init ResNet-18 on n synthetic images."""
    import torch
    import torchvision

    import manifold_probe as mp

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    images, labels = synthetic_images(n)
    acts = mp.extract(
        model, (torch.from_numpy(images), torch.from_numpy(labels)), layers=[layer], reduction="none"
    )
    return np.asarray(acts[layer], dtype=np.float64)


def plain_profile(x: np.ndarray, ks: np.ndarray, anchors: np.ndarray, kept: int) -> np.ndarray:
    """The peer: mean over anchors of the centred neighbourhood's singular values / sqrt(K - 1)."""
    from sklearn.neighbors import NearestNeighbors

    graph = NearestNeighbors(n_neighbors=int(ks[-1]) + 1).fit(x)
    _, indices = graph.kneighbors(x[anchors])
    indices = indices[:, 1:]  # the anchor itself first
    out = np.zeros((len(ks), kept))
    for s, k in enumerate(ks):
        width = min(kept, int(k) - 1, x.shape[1])
        for row in indices[:, :k]:
            nb = x[row] - x[row].mean(axis=0)
            out[s, :width] += np.linalg.svd(nb, compute_uv=False)[:width] / np.sqrt(k - 1)
        out[s] /= len(anchors)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--anchors", type=int, default=None)
    args = parser.parse_args()
    n = args.n or (1000 if args.quick else 2000)
    n_anchors = args.anchors or (50 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 2)

    from manifold_probe.geometry.denoise import denoise
    from manifold_probe.geometry.multiscale import KEPT, multiscale_profile, scale_ladder

    for layer in ("layer1", "layer4"):
        x = layer_points(n, layer)
        print(f"{layer}: N = {n}, D = {x.shape[1]}, {n_anchors} anchors: timing ...", flush=True)
        profile, ours = best_of(lambda x=x: multiscale_profile(x, seed=0, n_anchors=n_anchors), repeats)
        ks = scale_ladder(n)
        anchors = np.sort(np.random.default_rng(0).choice(n, size=min(n, n_anchors), replace=False))
        width = profile.singular_values.shape[1]
        peer_values, peer = best_of(
            lambda x=x, a=anchors, w=width, ks=ks: plain_profile(x, ks, a, min(KEPT, w)), repeats
        )
        ours_values = np.nan_to_num(profile.singular_values)
        error = np.max(
            np.abs(ours_values - peer_values) / np.maximum(np.abs(peer_values), 1e-12 * ours_values.max())
        )
        print(f"{layer}: N = {n}, D = {x.shape[1]}: mprobe {ours:.2f} s, plain SVD loop {peer:.2f} s, "
              f"largest relative difference of the singular values {error:.1e}; "
              f"window: {profile.window.dim if profile.window else None} ({profile.reason or 'found'})",
              flush=True)  # fmt: skip
        if not error <= 1e-6:
            print(f"{layer}: the two profiles disagree: no ratio reported", flush=True)
            return 1
        _, noise_seconds = best_of(lambda x=x: denoise(x), repeats)
        print(f"{layer}: denoise {noise_seconds:.2f} s", flush=True)
        report_ratio("multiscale", f"plain loop / mprobe, ResNet-18 {layer} (D = {x.shape[1]}), N = {n}",
                     peer / ours, 1.0, lower_is_better=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
