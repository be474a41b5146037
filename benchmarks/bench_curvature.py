"""Batched curvature estimator against the same estimator written the plain way.

    python benchmarks/bench_curvature.py [--quick] [--n 5000] [--ambient 512] [--k 128]
        [--dim 6] [--device cpu,cuda] [--threads 1 --workers 16]
    python benchmarks/bench_curvature.py --memory [--quick]

--memory: the working memory and per-point cost of `curvature` alone (the kNN graph is built
before and not counted). Each run is a fresh process that loads float32 points of the curved
manifold below (d = 2, default K), builds the graph, and samples its resident set size
(/proc/self/statm, every 5 ms) during the call: the table gives the peak RSS above the RSS just
before the call (after a small warm-up call with the same budget, so that the libraries' own
pages are not counted), for --max-memory none, 256MB and 32MB at D = 65,536, and the time per
point at D = 512 and D = 65,536 (same N), whose ratio shows what the width costs beyond the
one K x K Gram product per point (K D work against K^2 D).

Data: a curved d-dimensional manifold in R^D: random Fourier features cos(W z + b) of a
latent z uniform in [0, 1]^d (min(64, D) features, frequencies N(0, 2^2)), embedded isometrically
by a random orthonormal D x 64 matrix, plus Gaussian noise of 1e-3. One kNN graph serves
both estimators (its time is not counted). The plain estimator loops over points with
numpy: SVD of Delta, Y = U^T Delta, lstsq for every normal coordinate, eigvalsh of every
H_a; SVD of the centred neighbourhood, lstsq of the normal parts with a constant, the
residual-based noise correction (with `quartic`, the radial-quartic columns |u|^2 u_i u_j
in the SFF fit too). The batched one is `manifold_probe.geometry.curvature`.
The script checks that the per-point values agree and prints the times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manifold_probe.geometry.curvature import curvature  # noqa: E402
from manifold_probe.geometry.neighbours import nearest_neighbours  # noqa: E402


def curved_manifold(n: int, dim: int, ambient: int, seed: int = 0) -> np.ndarray:
    """n points of a smooth curved dim-manifold in R^ambient (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_features = min(64, ambient)
    z = rng.uniform(0.0, 1.0, size=(n, dim))
    phase = rng.uniform(0, 2 * np.pi, n_features)
    features = np.cos(z @ rng.normal(0.0, 2.0, size=(dim, n_features)) + phase)
    basis, _ = np.linalg.qr(rng.standard_normal((ambient, n_features)))
    return features @ basis.T + 1e-3 * rng.standard_normal((n, ambient))


def _design(u: np.ndarray) -> np.ndarray:
    d = u.shape[1]
    cols = [u[:, i] for i in range(d)] + [0.5 * u[:, i] ** 2 for i in range(d)]
    cols += [u[:, i] * u[:, j] for i in range(d) for j in range(i + 1, d)]
    return np.stack(cols, axis=1)


def _hessian(quad: np.ndarray, d: int) -> np.ndarray:
    h = np.diag(quad[:d])
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    for value, (i, j) in zip(quad[d:], pairs, strict=True):
        h[i, j] = h[j, i] = value
    return h


def plain_local_fit(delta: np.ndarray, dim: int, quartic: bool = False) -> tuple[float, float, np.ndarray]:
    """One point, the plain way: (mapc, noise-corrected ||II||^2, principal curvatures (m, d)).

    delta: (K, D) differences x_j - x.
    """
    k = delta.shape[0]
    n_quad = dim * (dim + 1) // 2
    weights = np.r_[np.ones(dim), 2 * np.ones(n_quad - dim)]
    # reference: SVD of Delta (D x K), Y = U^T Delta, joint lstsq without a constant
    u_svd, _, _ = np.linalg.svd(delta.T, full_matrices=False)
    y = u_svd.T @ delta.T
    tangent, normal_coords = y[:dim].T, y[dim:].T
    coef, *_ = np.linalg.lstsq(_design(tangent), normal_coords, rcond=None)
    hessians = np.stack([_hessian(coef[dim:, a], dim) for a in range(coef.shape[1])])
    principal = np.linalg.eigvalsh(hessians)
    mapc = float(np.abs(principal).mean())
    # SFF: tangent frame of the centred neighbourhood, lstsq of the normal parts with a constant
    # (and the radial-quartic columns)
    _, _, vt = np.linalg.svd(delta - delta.mean(axis=0), full_matrices=False)
    frame = vt[:dim].T
    u = delta @ frame
    normal = delta - u @ frame.T
    psi = np.column_stack([np.ones(k), _design(u)])
    if quartic:
        psi = np.column_stack([psi, _design(u)[:, dim:] * (u**2).sum(axis=1, keepdims=True)])
    coef_c, *_ = np.linalg.lstsq(psi, normal, rcond=None)
    quad = coef_c[1 + dim : 1 + dim + n_quad]
    raw = float((weights * (quad**2).sum(axis=1)).sum())
    rss = float(((normal - psi @ coef_c) ** 2).sum())
    cov = np.linalg.inv(psi.T @ psi)
    noise = rss / (k - psi.shape[1]) * float((weights * np.diag(cov)[1 + dim : 1 + dim + n_quad]).sum())
    return mapc, (raw - noise) / dim, principal


def plain_curvature(points: np.ndarray, indices: np.ndarray, dim: int) -> tuple[np.ndarray, ...]:
    """Per-point mapc and noise-corrected ||II||^2 with a Python loop over points."""
    mapc = np.empty(len(points))
    sff_squared = np.empty(len(points))
    for i in range(len(points)):
        mapc[i], sff_squared[i], _ = plain_local_fit(points[indices[i]] - points[i], dim)
    return mapc, sff_squared


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(path: str, max_memory: int | None) -> None:
    """One measured call (run in a fresh process): prints 'seconds per-point-ms peak-bytes'."""
    points = np.load(path).astype(np.float32)
    graph = nearest_neighbours(points, 30)
    curvature(points[:40, :64], 2, k=30, n_bootstrap=10, max_memory=max_memory)  # warm-up: library pages
    _, seconds, peak = _with_peak_rss(
        lambda: curvature(points, 2, k=30, graph=graph, n_bootstrap=100, max_memory=max_memory)
    )
    print(seconds, 1e3 * seconds / len(points), peak)


def _with_peak_rss(fn):
    """(fn(), its seconds, the peak RSS above the start during it, sampled every 5 ms)."""
    peak, stop = [_rss_bytes()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _rss_bytes())

    before = _rss_bytes()
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    return value, seconds, max(peak[0], _rss_bytes()) - before


def whole_call_child(path: str, max_memory: int | None) -> None:
    """The whole measure (`mp.curvature` on bare points: the neighbour graph, the spectral-gap
    rule's local spectra, the fits) in a fresh process: prints 'seconds peak-bytes-above-start
    fit-seconds gram-floor-seconds'. The float64 Gram floor is the fits' K x K products (N K^2 D
    multiply-adds) at this machine's float64 GEMM rate, measured here on blocks of the same
    shape."""
    import importlib

    import manifold_probe as mp

    module = importlib.import_module("manifold_probe.geometry.curvature")  # not the function

    points = np.load(path).astype(np.float32)
    mp.curvature(points[:60, :64], n_bootstrap=10, max_memory=max_memory)  # warm-up: library pages
    fit_seconds = [0.0, 0]
    fit_all = module._fit_all

    def timed_fit_all(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return fit_all(*args, **kwargs)
        finally:
            fit_seconds[0] += time.perf_counter() - begin
            fit_seconds[1] = args[2]  # k

    module._fit_all = timed_fit_all
    result, seconds, peak = _with_peak_rss(
        lambda: mp.curvature(points, n_bootstrap=100, max_memory=max_memory)
    )
    n, ambient = points.shape
    k = fit_seconds[1] or 1
    block = np.random.default_rng(0).standard_normal((16, k, ambient))
    begin = time.perf_counter()
    for _ in range(3):
        block @ block.transpose(0, 2, 1)
    rate = 3 * 16 * k * k * ambient / (time.perf_counter() - begin)  # multiply-adds per second
    floor = n * k * k * ambient / rate
    status = result.layers[0].status
    print(seconds, peak, fit_seconds[0], floor, status, k)


def whole_call_table(n: int, ambient: int = 16_384) -> tuple[list[tuple], float]:
    """Rows of the whole-call table (issue 26, goal 5) and the worst peak / budget ratio."""
    import subprocess
    import tempfile

    rows, worst, floors = [], 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/points_{ambient}.npy"
        np.save(path, curved_manifold(n, 2, ambient).astype(np.float32))
        for budget in ("none", "256MB", "32MB"):
            out = subprocess.run(
                [sys.executable, __file__, "--whole-child", path, "--max-memory", budget],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            seconds, peak, fits, floor = (float(v) for v in out[:4])
            if budget != "none":
                from manifold_probe_cli.options import parse_memory

                worst = max(worst, peak / parse_memory(budget))
            floors.append(fits / floor if floor > 0 else float("nan"))
            ratio = f"{fits / floor:.1f}x" if floor > 0 else "-"
            rows.append((str(ambient), budget, f"{seconds:.2f}", f"{peak / 2**20:.0f}", f"{fits:.2f}",
                         f"{floor:.2f}", ratio, out[4], out[5]))  # fmt: skip
    return rows, worst, min(floors)


def memory_table(n: int) -> None:
    """The --memory table (module docstring), each row from a fresh process."""
    import subprocess
    import tempfile

    def run(path: str, max_memory: str) -> tuple[float, float, int]:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", path, "--max-memory", max_memory],
            check=True, capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        return float(out[0]), float(out[1]), int(float(out[2]))

    with tempfile.TemporaryDirectory() as tmp:
        rows = [("D", "--max-memory", "seconds", "ms/point", "peak RSS above start (MB)")]
        times = {}
        for ambient, budgets in ((512, ("none",)), (65536, ("none", "256MB", "32MB"))):
            path = f"{tmp}/points_{ambient}.npy"
            np.save(path, curved_manifold(n, 2, ambient).astype(np.float32))
            for budget in budgets:
                seconds, per_point, peak = run(path, budget)
                times.setdefault(ambient, per_point)
                rows.append(
                    (str(ambient), budget, f"{seconds:.2f}", f"{per_point:.2f}", f"{peak / 2**20:.0f}")
                )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    print(f"curvature alone, N={n}, d=2, K=30, float32 points (torch threads {torch.get_num_threads()})")
    for r in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)))
    print(f"per-point cost D=65536 / D=512: {times[65536] / times[512]:.1f}x for 128x the width")
    from timing import report_ratio  # benchmarks/ is on the path when this runs as a script

    whole, worst, floor_ratio = whole_call_table(n)
    header = ("D", "--max-memory", "seconds", "peak RSS MB", "fits s", "f64 Gram floor s", "fits/floor",
              "status", "K")  # fmt: skip
    print(f"the whole call mp.curvature(points, max_memory=...) (graph, gap rule, fits), N={n}, d=2:")
    widths = [max(len(str(r[c])) for r in [header, *whole]) for c in range(len(header))]
    for r in [header, *whole]:
        print("  ".join(str(cell).rjust(w) for cell, w in zip(r, widths, strict=True)))
    report_ratio("bench_curvature", "whole call at D=16384: peak RSS above start / max_memory", worst, 1.0)
    report_ratio("bench_curvature", "fits at D=16384 / float64 Gram floor (best budget)", floor_ratio, 3.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 300: finishes in seconds")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--ambient", type=int, default=512)
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--dim", type=int, default=6)
    parser.add_argument("--device", default="cpu", help="comma-separated, e.g. cpu,cuda")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the batched run")
    parser.add_argument("--workers", type=int, help="chunks in parallel (default: torch threads)")
    parser.add_argument("--memory", action="store_true", help="peak RSS and per-point cost table")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--whole-child", help=argparse.SUPPRESS)
    parser.add_argument("--max-memory", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        from manifold_probe_cli.options import parse_memory

        memory_child(args.memory_child, None if args.max_memory == "none" else parse_memory(args.max_memory))
        return 0
    if args.whole_child:
        from manifold_probe_cli.options import parse_memory

        whole_call_child(
            args.whole_child, None if args.max_memory == "none" else parse_memory(args.max_memory)
        )
        return 0
    if args.memory:
        memory_table(200 if args.quick else 1000)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 300 if args.quick else args.n
    devices = args.device.split(",")

    points = curved_manifold(n, args.dim, args.ambient)
    graph = nearest_neighbours(points, args.k)

    start = time.perf_counter()
    plain_mapc, plain_sq = plain_curvature(points, graph.indices, args.dim)
    plain_s = time.perf_counter() - start
    plain_sff = float(np.sqrt(max(plain_sq.mean(), 0.0)))
    rows = [
        ("estimator", "seconds", "ms/point", "speed-up", "mapc", "curvature_sff", "max rel. diff"),
        (
            "plain (numpy loop)",
            f"{plain_s:.2f}",
            f"{1e3 * plain_s / n:.3f}",
            "1.0x",
            f"{plain_mapc.mean():.6g}",
            f"{plain_sff:.6g}",
            "",
        ),
    ]
    agree = True
    for device in devices:
        curvature(points[:50], args.dim, k=min(args.k, 49), device=device)  # warm-up
        start = time.perf_counter()
        result = curvature(points, args.dim, k=args.k, graph=graph, device=device, workers=args.workers)
        batched_s = time.perf_counter() - start
        err_mapc = np.max(np.abs(result.mapc_per_point - plain_mapc) / np.abs(plain_mapc))
        err_sff = np.max(np.abs(result.sff_squared_per_point - plain_sq)) / np.abs(plain_sq).max()
        agree &= bool(err_mapc < 1e-6 and err_sff < 1e-6)
        rows.append(
            (
                f"batched ({device})",
                f"{batched_s:.2f}",
                f"{1e3 * batched_s / n:.3f}",
                f"{plain_s / batched_s:.1f}x",
                f"{result.mapc:.6g}",
                f"{result.curvature_sff:.6g}",
                f"{max(err_mapc, err_sff):.1e}",
            )
        )

    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    print(
        f"N={n} D={args.ambient} K={args.k} d={args.dim}  (kNN graph shared, not timed; "
        f"torch threads {torch.get_num_threads()}, workers {args.workers or 'default'})"
    )
    for r in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)))
    print("per-point values " + ("agree (relative difference < 1e-6)" if agree else "DISAGREE"))
    time_perturb(100 if args.quick else 500)
    return 0 if agree else 1


def time_perturb(n_images: int) -> None:
    """The `perturb` neighbourhood on the built-in digits-cnn: n_images x 127 copies through the
    model and the fits in all five default layers (the untrained net: same cost as a trained one)."""
    import tempfile

    import manifold_probe as mp
    from manifold_probe.study.training import train_and_save

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = f"{tmp}/digits-cnn.pt"
        train_and_save("digits-cnn", {}, out=checkpoint, epochs=0)
        start = time.perf_counter()
        data = mp.load_data("digits", n_points=n_images)
        result = mp.curvature(mp.load_model(checkpoint), data, neighbourhood="perturb", n_bootstrap=200)
        seconds = time.perf_counter() - start
    copies = result.params["n_copies"]
    print(
        f"perturb neighbourhood on digits-cnn: {n_images} images x {copies} copies, "
        f"{len(result.layers)} layers: {seconds:.1f} s ({1e3 * seconds / n_images:.1f} ms per image)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
