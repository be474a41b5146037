"""The paper's curvature protocol at full size: `--neighbourhood perturb`, 1,023 SVD-perturbed
copies per image, ResNet-18 at 32x32, every default layer.

Goal (issue 13, item 5): N = 5,000 images on one GPU in under 10 minutes (the reference
code: about 2.8 s per point at K = 1,024, D = 512 -- hours). With `--device cuda` this runs
the protocol on the GPU and measures it (--images 5000 for the whole goal). Without a GPU
it measures the CPU at a few images and prints a PROJECTION, with its assumptions:

- CPU: seconds per image (perturbing, forward pass of the copies, curvature fits) x N.
- GPU forward: the model's forward FLOPs per image (counted by torch's FlopCounterMode) x
  1,024 inputs per image x N, at --gpu-fp32-tflops sustained (default 15: about a quarter of
  an H200's 67 TFLOPS FP32 peak without tensor cores).
- GPU perturbing and fits (float64): their CPU seconds x (this CPU's float64 GEMM rate,
  measured in the same run) / --gpu-fp64-tflops sustained (default 8: about a quarter of the
  H200's 34 TFLOPS FP64 peak). Fits of small matrices rarely reach GEMM rates on either
  device, so this part is the least certain.

Every layer is fitted at --dim (default 10, a d in the range TwoNN reads on trained
CIFAR-scale layers; at a few images no d can be read from the data, and a layer left without
a d would skip its copies and make the run look free). The run reports how many layers were
fitted and stops if any layer wider than d was not (the 10 logits cannot be fitted at d = 10).

    python benchmarks/bench_perturb.py [--quick | --full] [--device cpu|cuda] [--images M] [--dim D]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from bench_resnet18 import CLASSES, synthetic_images
from timing import report_ratio, time_stages

TARGET_IMAGES = 5000
GOAL_MINUTES = 10.0


def forward_flops(model: torch.nn.Module, device: torch.device) -> float:
    """FLOPs of one 3x32x32 image's forward pass (FlopCounterMode, a multiply-add as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32, device=device))
    return float(counter.get_total_flops())


def cpu_fp64_gflops() -> float:
    """This machine's float64 GEMM rate (numpy, best of three 1,024^3 products), GFLOP/s."""
    a = np.random.default_rng(0).normal(size=(1024, 1024))
    best = min(_seconds(lambda: a @ a) for _ in range(3))
    return 2 * 1024**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="4 images on a CPU (the default)")
    size.add_argument("--full", action="store_true", help="20 images on a CPU, 5,000 on a GPU")
    parser.add_argument("--images", type=int, default=None, help="images to measure (overrides the size)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=10, help="tangent dimension of every layer's fit")
    parser.add_argument("--gpu-fp32-tflops", type=float, default=15.0)
    parser.add_argument("--gpu-fp64-tflops", type=float, default=8.0)
    args = parser.parse_args()
    import manifold_probe as mp
    from manifold_probe.device import resolve_device
    from manifold_probe.extraction import perturbations
    from manifold_probe.extraction.engine import extract

    dev = resolve_device(args.device)
    n = args.images or ((TARGET_IMAGES if dev.type == "cuda" else 20) if args.full else 4)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=CLASSES).eval().to(dev)
    with tempfile.TemporaryDirectory(prefix="bench-perturb-") as tmp:
        x, y = synthetic_images(max(n, 20))
        np.savez(Path(tmp) / "images.npz", x=x, y=y)
        data = mp.load_data(f"npz:{Path(tmp) / 'images.npz'}", n_points=n)
        seconds: dict[str, float] = {}
        time_stages({"perturbing": perturbations.svd_perturbations, "forward": extract}, seconds)
        print(
            f"perturb protocol: ResNet-18 (torchvision, random init), {n} synthetic 3x32x32 images, "
            f"1,023 copies each, every default layer, device={dev}",
            flush=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            result = mp.curvature(
                model, data, neighbourhood="perturb", dim=args.dim, n_bootstrap=10, progress=False
            )
            total = time.perf_counter() - start
    seconds["fits and the rest"] = total - seconds["perturbing"] - seconds["forward"]
    layers = len(result.layers)
    fitted = [layer.name for layer in result.layers if layer.status in ("measured", "cannot_tell")]
    print(f"measured: {total:.1f} s for {n} images, {len(fitted)} of {layers} layers fitted at d={args.dim}",
          flush=True)  # fmt: skip
    wide = [layer.name for layer in result.layers if layer.ambient_dim > args.dim]  # fittable at d
    if set(wide) - set(fitted):
        missing = {
            layer.name: layer.details.get("reason")
            for layer in result.layers
            if layer.name in set(wide) - set(fitted)
        }
        raise SystemExit(f"not every layer was fitted, so the time would undercount: {missing}")
    for stage, value in seconds.items():
        print(f"  {stage:<20}{value:>9.2f} s  ({value / n:.2f} s per image)", flush=True)
    if dev.type == "cuda":
        minutes = total / n * TARGET_IMAGES / 60
        kind = "measured" if n >= TARGET_IMAGES else f"scaled from {n} images"
        print(f"GPU, N={TARGET_IMAGES}: {minutes:.1f} min ({kind}); goal {GOAL_MINUTES:g} min", flush=True)
        what = f"perturb N={TARGET_IMAGES} on {dev} ({kind}), minutes"
        report_ratio("bench_perturb", what, minutes, GOAL_MINUTES)
        return
    flops = forward_flops(model, dev)
    cpu_rate = cpu_fp64_gflops()
    cpu_hours = total / n * TARGET_IMAGES / 3600
    gpu_forward = flops * 1024 * TARGET_IMAGES / (args.gpu_fp32_tflops * 1e12)
    gpu_rest = (
        (seconds["perturbing"] + seconds["fits and the rest"])
        / n
        * TARGET_IMAGES
        * cpu_rate
        / (args.gpu_fp64_tflops * 1e3)
    )
    gpu_minutes = (gpu_forward + gpu_rest) / 60
    print(f"CPU, N={TARGET_IMAGES} (projected from {n} images): {cpu_hours:.1f} h", flush=True)
    print(
        f"GPU PROJECTION, N={TARGET_IMAGES}: {gpu_minutes:.1f} min = forward {gpu_forward / 60:.1f} min "
        f"({flops / 1e9:.3f} GFLOP per image x 1,024 x {TARGET_IMAGES} at {args.gpu_fp32_tflops:g} TFLOPS) "
        f"+ perturbing and fits {gpu_rest / 60:.1f} min (their CPU time x {cpu_rate:.0f} GFLOP/s, this "
        f"CPU's float64 GEMM, / {args.gpu_fp64_tflops:g} TFLOPS assumed); a projection, not a measurement",
        flush=True,
    )
    what = f"perturb N={TARGET_IMAGES}, GPU minutes (PROJECTED)"
    report_ratio("bench_perturb", what, gpu_minutes, GOAL_MINUTES)


if __name__ == "__main__":
    main()
