"""Exact family curvature: Poole et al.'s mean-field predictions, and exact vs sampled on real layers.

    python benchmarks/bench_family_curvature.py [--part mean-field|sampled|all] [--full]
        [--checkpoint ckpt.pt] [--untrained untrained.pt] [--device cpu|cuda] [--threads N]

(a) Mean field (Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli 2016, "Exponential expressivity in
deep neural networks through transient chaos"). A random tanh net of width N,
h^{l+1} = W^{l+1} tanh(h^l) + b^{l+1}, W_ij ~ N(0, sigma_w^2 / N), b_i ~ N(0, sigma_b^2), takes at
layer 1 the great circle h^1(t) = sqrt(N q*) (u0 cos t + u1 sin t) (the `circle:Q` family with
Q = q*). With z ~ N(0, 1) and phi = tanh:

    q*   = sigma_w^2 E[phi(sqrt(q*) z)^2] + sigma_b^2      (fixed point of the length map)
    chi1 = sigma_w^2 E[phi'(sqrt(q*) z)^2],   chi2 = sigma_w^2 E[phi''(sqrt(q*) z)^2].

Derivation of the curve recursions. Write v = dh/dt, a = d^2h/dt^2, and per-neuron averages
g = |v|^2 / N, A = |a|^2 / N. Every point of the circle sits at the fixed point, so |h|^2 = N q*
along the curve: h.v = 0 and h.a = -|v|^2, while v.a = 0 (constant speed). With
v' = W (phi'(h) v) and a' = W (phi''(h) v^2 + phi'(h) a) and a fresh W, |W y|^2 ~ sigma_w^2 |y|^2.
Over neurons h_i ~ N(0, q*) is independent of v_i (uncorrelated, jointly Gaussian), and
a_i = alpha h_i + a_perp with alpha = -g / q* and a_perp independent of h. Then
g' = sigma_w^2 E[phi'^2] g = chi1 g, and
A' = sigma_w^2 (3 E[phi''^2] g^2 + 2 g alpha E[h phi' phi''] + alpha^2 E[phi'^2 h^2]
     + E[phi'^2] (A - alpha^2 q*))      (E v^4 = 3 g^2 for Gaussian v; odd moments vanish),
and Stein's lemma (E[h F] = q* E[F'], E[h^2 F] = q* E[F] + q*^2 E[F'']) makes the alpha terms
cancel: A' = 3 chi2 g^2 + chi1 A. With v.a = 0 the curvature is kappa^2 = A / g^2 in per-neuron
units (the curve h / sqrt(N)), so

    g^{l+1} = chi1 g^l,                 g^1 = q*,
    kappa^{l+1}^2 = 3 chi2 / chi1^2 + kappa^l^2 / chi1,   kappa^1 = 1 / sqrt(q*),

and the normalised length L^l = 2 pi sqrt(g^l) (the Euclidean length of h^l is sqrt(N) L^l). In the
ordered phase (chi1 < 1) the circle shrinks and its curvature grows exponentially; in the chaotic
phase (chi1 > 1) the length grows as chi1^(l/2) and kappa tends to sqrt(3 chi2 / (chi1 (chi1 - 1))).
Measured: `family_curvature(..., "circle:q*", layers="h*")` at every layer, per-neuron units
(curve_length / sqrt(N), curve_curvature x sqrt(N)), averaged over seeds; printed with the ratio
measured / predicted. Grid sigma_b^2 = 0.3, sigma_w^2 in {1, 2, 4} (chi1 = 0.56, 0.88: ordered;
1.26: chaotic), width 1000, depth 20, 2 seeds, 256 values of t (`--full`: width 2000, sigma_w^2 in
{1, 2, 3, 4, 6}, 3 seeds, 512 values). The length's periodic trapezoidal rule has converged at 256
values: at sigma_w^2 = 4, layer 20, 256 and 1024 values give lengths 79.75 and 79.73.

(b) Exact vs sampled on real layers. A digits-cnn (width 32, depth 3) and a small-resnet (width 16,
depth 2), each trained 15 epochs and untrained (`mprobe train --arch ARCH --epochs 15 --out
ckpt.pt`, `--epochs 0`; trained here in a temporary folder unless --checkpoint / --untrained give a
digits-cnn pair), the family plane:0,1,2 on `digits`, N = 1600 values of theta on a 40 x 40 grid
(`--full`: 2500, and rotate-scale:0 too). Per layer: the regime, the autodiff curvature_sff (0 for
these ReLU/max-pool layers: piecewise linear), the finite-difference value at three steps h (0.01,
0.05 and 0.1 of the range: the curvature averaged over theta +- h; the sampled estimator's
neighbourhoods of K = 30 of 1600 grid points have a radius of about 0.08 of the range,
sqrt(30 / pi) / 39), and two sampled estimates on the same points: the fit at the family's own
d = 2 (`geometry.curvature(points, dim=2)`: value, 95 % interval, status) and the default path
(`mp.curvature(points)`: the manifold scale window chooses d and K, with its null; value and status).
`length` is the layer's `length_scale` (RMS distance of the image points from their mean): raw
curvatures are 1/length, so compare layers by curvature x length.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import manifold_probe as mp  # noqa: E402
from manifold_probe.geometry.curvature import curvature  # noqa: E402
from manifold_probe.probes.family_curvature import family_curvature  # noqa: E402
from manifold_probe.study.training import train_and_save  # noqa: E402

SIGMA_B2 = 0.3
GAUSS_HERMITE_NODES = 101


NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(GAUSS_HERMITE_NODES)


def gaussian_mean(values_of, q: float) -> float:
    """E[F(sqrt(q) z)], z ~ N(0, 1), by Gauss-Hermite quadrature (101 nodes)."""
    return float(np.sum(WEIGHTS * values_of(math.sqrt(q) * NODES)) / np.sum(WEIGHTS))


def mean_field(sigma_w2: float, sigma_b2: float, depth: int) -> dict:
    """q*, chi1, chi2 and the predicted normalised length and curvature at layers 1..depth."""
    q = 1.0
    for _ in range(2000):
        q = sigma_w2 * gaussian_mean(lambda h: np.tanh(h) ** 2, q) + sigma_b2
    chi1 = sigma_w2 * gaussian_mean(lambda h: np.cosh(h) ** -4, q)
    chi2 = sigma_w2 * gaussian_mean(lambda h: (2 * np.tanh(h) * np.cosh(h) ** -2) ** 2, q)
    speed_sq, kappa_sq = [q], [1 / q]
    for _ in range(depth - 1):
        speed_sq.append(chi1 * speed_sq[-1])
        kappa_sq.append(3 * chi2 / chi1**2 + kappa_sq[-1] / chi1)
    return {
        "q": q, "chi1": chi1, "chi2": chi2,
        "length": 2 * np.pi * np.sqrt(speed_sq), "curvature": np.sqrt(kappa_sq),
    }  # fmt: skip


def random_tanh_net(width: int, depth: int, sigma_w2: float, sigma_b2: float, seed: int) -> nn.Module:
    """Layer `h1` (the input itself) then h{l+1} = W tanh(h{l}) + b, float64, seeded."""
    generator = torch.Generator().manual_seed(seed)
    children: OrderedDict[str, nn.Module] = OrderedDict(h1=nn.Identity())
    for layer in range(2, depth + 1):
        linear = nn.Linear(width, width, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(width, width, generator=generator, dtype=torch.float64))
            linear.weight.mul_(math.sqrt(sigma_w2 / width))
            linear.bias.copy_(
                torch.randn(width, generator=generator, dtype=torch.float64) * math.sqrt(sigma_b2)
            )
        children[f"phi{layer - 1}"] = nn.Tanh()
        children[f"h{layer}"] = linear
    return nn.Sequential(children)


def agreement(measured: np.ndarray, predicted: np.ndarray) -> str:
    """The largest and the median relative deviation, as |exp(|log(measured / predicted)|) - 1|."""
    error = np.abs(np.log(measured / predicted))
    return f"within {np.expm1(error.max()):.1%} (median {np.expm1(np.median(error)):.1%})"


def run_mean_field(args) -> None:
    width, depth = (2000, 20) if args.full else (1000, 20)
    sigmas = (1.0, 2.0, 3.0, 4.0, 6.0) if args.full else (1.0, 2.0, 4.0)
    seeds = range(3 if args.full else 2)
    n_grid = 512 if args.full else 256
    print(
        f"\n(a) great circle through random tanh nets: width {width}, depth {depth}, "
        f"sigma_b^2 = {SIGMA_B2}, {len(seeds)} seeds, {n_grid} values of t"
    )
    for sigma_w2 in sigmas:
        theory = mean_field(sigma_w2, SIGMA_B2, depth)
        lengths, kappas = [], []
        start = time.perf_counter()
        for seed in seeds:
            net = random_tanh_net(width, depth, sigma_w2, SIGMA_B2, seed)
            spec = f"circle:{theory['q']!r}"
            result = family_curvature(
                net, torch.zeros(1, width), spec, layers="h*", n_grid=n_grid, device=args.device, seed=seed
            )
            lengths.append([layer.curve_length / math.sqrt(width) for layer in result.layers])
            kappas.append([layer.curve_curvature * math.sqrt(width) for layer in result.layers])
        seconds = time.perf_counter() - start
        length, kappa = np.mean(lengths, axis=0), np.mean(kappas, axis=0)
        phase = "ordered" if theory["chi1"] < 1 else "chaotic"
        print(
            f"\nsigma_w^2 = {sigma_w2:g}: q* = {theory['q']:.4f}, chi1 = {theory['chi1']:.4f} ({phase}), "
            f"chi2 = {theory['chi2']:.4f}   [{seconds:.0f} s]"
        )
        columns = ("layer", "length", "predicted", "ratio", "curvature", "predicted", "ratio")
        print(" ".join(f"{c:>10}" for c in columns))
        for index in range(depth):
            if index < 4 or index % 4 == 3:
                row = (length[index], theory["length"][index], kappa[index], theory["curvature"][index])
                print(
                    f"{index + 1:>10} {row[0]:>10.4g} {row[1]:>10.4g} {row[0] / row[1]:>10.3f} "
                    f"{row[2]:>10.4g} {row[3]:>10.4g} {row[2] / row[3]:>10.3f}"
                )
        print(
            f"agreement over layers 1-{depth}: length {agreement(length, theory['length'])}, "
            f"curvature {agreement(kappa, theory['curvature'])}"
        )


ARCHS = {"digits-cnn": {"width": 32, "depth": 3}, "small-resnet": {"width": 16, "depth": 2}}


def checkpoints(args, folder: Path) -> dict[str, str]:
    """Paths of each architecture trained (15 epochs) and untrained: given, or trained here."""
    given = {"digits-cnn trained": args.checkpoint, "digits-cnn untrained": args.untrained}
    paths = {}
    for arch, arch_args in ARCHS.items():
        for state, epochs in (("trained", 15), ("untrained", 0)):
            label = f"{arch} {state}"
            paths[label] = given.get(label) or str(folder / f"{arch}-{state}.pt")
            if given.get(label) is None:
                start = time.perf_counter()
                train_and_save(arch, arch_args, out=paths[label], epochs=epochs, seed=0)
                print(f"made the {label} ({epochs} epochs) in {time.perf_counter() - start:.0f} s")
    return paths


def run_sampled(args) -> None:
    n_grid = 2500 if args.full else 1600
    families = ("plane:0,1,2", "rotate-scale:0") if args.full else ("plane:0,1,2",)
    steps = (0.01, 0.05, 0.1)
    print(f"\n(b) exact vs sampled: {', '.join(ARCHS)} on digits, N = {n_grid} values of theta per family")
    with tempfile.TemporaryDirectory() as folder:
        paths = checkpoints(args, Path(folder))
        data = mp.load_data("digits")
        fd_columns = (f"FD h={h:g}" for h in steps)
        columns = ("model", "family", "layer", "D", "length", "regime", "autodiff", *fd_columns)
        widths = {"model": 20, "regime": 16}
        header = " ".join(f"{c:>{widths.get(c, 10)}}" for c in columns)
        print_header = header + f" {'d=2 fit':>10} {'95% interval':>21} {'status':>12} {'default':>10} status"
        for label, path in paths.items():
            model = mp.load_model(path)
            for spec in families:
                start = time.perf_counter()
                runs = {
                    step: family_curvature(
                        model,
                        data,
                        spec,
                        n_grid=n_grid,
                        fd_step=step,
                        keep_points=step == steps[0],
                        device=args.device,
                    )  # fmt: skip
                    for step in steps
                }
                print(f"\n{label} ({path}), {spec}: exact in {time.perf_counter() - start:.0f} s")
                print(print_header)
                for index, layer in enumerate(runs[steps[0]].layers):
                    fd = [runs[step].layers[index].curvature_sff_fd for step in steps]
                    sampled = curvature(layer.points.astype(np.float64), layer.dim)
                    low, high = sampled.intervals["curvature_sff"]
                    default = mp.curvature(layer.points, seed=0).layers[0]
                    names = (
                        f"{label:>20} {spec:>10} {layer.layer:>10} {layer.n_features:>10} "
                        f"{layer.length_scale:>10.4g} {layer.regime:>16}"
                    )
                    values = (layer.curvature_sff_autodiff, *fd, sampled.curvature_sff)
                    print(
                        names + " " + " ".join(f"{v:>10.4g}" for v in values)
                        + f" [{low:>9.4g}, {high:>9.4g}] {sampled.status:>12}"
                        + f" {default.metrics['curvature_sff']:>10.4g} {default.status}"
                    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("mean-field", "sampled", "all"), default="all")
    parser.add_argument("--full", action="store_true", help="bigger nets, more seeds, more families")
    parser.add_argument("--checkpoint", help="a trained digits-cnn checkpoint (default: train one)")
    parser.add_argument("--untrained", help="an untrained digits-cnn checkpoint (default: make one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.part in ("mean-field", "all"):
        run_mean_field(args)
    if args.part in ("sampled", "all"):
        run_sampled(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
