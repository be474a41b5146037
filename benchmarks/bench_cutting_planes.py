"""Cutting planes: batched optimisation against the same planes optimised one at a time.

Goal (issue 4): at least 10x more planes per second on CPU on the built-in digits model,
with the same result for every plane. The peer is `optimise_planes(..., batch=1)`: the same
code, the same planes and seeds, one plane per forward pass (as the reference notebook does).
The digits-cnn of the built-in zoo is used when importable (a same-shaped small CNN
otherwise), trained for a few seconds on the 8x8 digits so the planes see a real classifier.

Run: python benchmarks/bench_cutting_planes.py [--quick] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from timing import timed
from torch import nn

from manifold_probe.device import resolve_device
from manifold_probe.probes.critical_dimension import default_dims
from manifold_probe.probes.cutting_planes import (
    CuttingPlaneOptions,
    draw_planes,
    measure_class_manifold,
    optimise_planes,
)


def digits_model() -> tuple[nn.Module, str]:
    """The zoo's digits-cnn, or a small CNN of the same input (1x8x8) and output (10)."""
    try:
        from manifold_probe.sources.zoo import build_model

        return build_model("digits-cnn"), "zoo digits-cnn"
    except ImportError:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, 10),
        )
        return model, "fallback CNN"


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 15) -> float:
    """A few epochs of Adam; returns the training accuracy."""
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer planes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--target", type=int, default=3, help="target digit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    torch.manual_seed(0)  # the benchmark's own model weights
    model, name = digits_model()
    accuracy = train(model, x, y)

    dims = default_dims(64)
    planes_per_dim = 5 if args.quick else 10  # 5: the default per class
    sequential_per_dim = 1 if args.quick else 2
    planes = draw_planes(x.numpy(), y.numpy(), (args.target,), dims, planes_per_dim, seed=0)
    subset = [p for i, p in enumerate(planes) if i % planes_per_dim < sequential_per_dim]
    kwargs = dict(input_shape=(1, 8, 8), target_classes=args.target, device=device)

    optimise_planes(model, planes[:4], **kwargs)  # warm-up (allocator, kernels)
    batched, t_batched = timed(lambda: optimise_planes(model, planes, batch=len(planes), **kwargs))
    batched_subset, t_batched_subset = timed(
        lambda: optimise_planes(model, subset, batch=len(subset), **kwargs)
    )
    sequential, t_sequential = timed(lambda: optimise_planes(model, subset, batch=1, **kwargs))

    difference = np.abs(batched_subset.max_probs - sequential.max_probs).max()
    same_hits = bool((batched_subset.hits == sequential.hits).all())
    same_steps = bool((batched_subset.steps == sequential.steps).all())
    rate_batched = len(planes) / t_batched
    rate_sequential = len(subset) / t_sequential

    print(
        f"cutting planes, {name} (train acc {accuracy:.3f}), target {args.target}, "
        f"dims {dims[0]}..{dims[-1]} ({len(dims)} values), device {device}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"{'run':<34}{'planes':>8}{'seconds':>10}{'planes/s':>11}{'ratio':>8}")
    print(
        f"{'one plane at a time (batch=1)':<34}{len(subset):>8}{t_sequential:>10.2f}"
        f"{rate_sequential:>11.2f}{1.0:>8.1f}"
    )
    print(
        f"{'batched, same planes':<34}{len(subset):>8}{t_batched_subset:>10.2f}"
        f"{len(subset) / t_batched_subset:>11.2f}"
        f"{len(subset) / t_batched_subset / rate_sequential:>8.1f}"
    )
    print(
        f"{'batched, all planes':<34}{len(planes):>8}{t_batched:>10.2f}{rate_batched:>11.2f}"
        f"{rate_batched / rate_sequential:>8.1f}"
    )
    print(
        f"same planes, batched vs one at a time: max |diff max_prob| = {difference:.2e}, "
        f"same hits: {same_hits}, same stopping steps: {same_steps}"
    )

    if not args.quick:
        start = time.perf_counter()
        for digit in range(10):
            options = CuttingPlaneOptions(dims=tuple(dims), planes=5)
            result = measure_class_manifold(model, x, y, digit, options, device=device)
            d_star = result.critical_dim
            text = "none" if d_star is None else f"{d_star:.1f}"
            print(
                f"  digit {digit}: d* = {text} ({result.critical.status}), hits "
                f"{[s.hits for s in result.success]}"
            )
        print(f"all 10 digits, {len(dims)} dims x 5 planes: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
