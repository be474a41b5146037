"""Exact kNN against a plain float32 Gram product + top-k (and faiss-cpu's exact search).

Goal (issue 26, goal 1): `nearest_neighbours` (candidates from a float32 product, exact
distances where the rigorous error bound leaves doubt, every row certified) within 1.1x the
time of the bare product + top-k (numpy's BLAS, torch.topk on all cores) and within 1.2x of
faiss's exact flat index (`IndexFlatL2`: float32, not re-ranked) at every (N, D) in
{2k, 10k, 50k} x {64, 512, 4096} and 1.5k x 65,536, on all cores (2 here). The plain search is
the one every exact method must at least do; the three run on the same data in the same run,
interleaved round by round, best of the rounds. k = 20 (MLE's default, the graph the ID
estimators share). Cells whose data would not fit in --max-gb (the points, their centred
float32 copy and the input check's mask: 9 bytes an entry, plus 1 GB) are skipped and said so.

    python benchmarks/bench_knn.py [--quick | --full] [--max-gb 24] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from timing import best_of, report_ratio

from manifold_probe.device import resolve_device
from manifold_probe.geometry.neighbours import nearest_neighbours

K = 20
QUICK = [(2000, 64), (2000, 512), (2000, 4096), (10_000, 512), (1500, 65_536)]
FULL = [*itertools.product([2000, 10_000, 50_000], [64, 512, 4096]), (1500, 65_536)]


def manifold_layer(n: int, dim: int, d: int = 8, seed: int = 0) -> np.ndarray:
    """A curved d-dimensional manifold in R^dim, float32 (an activation-like layer), built
    a block of rows at a time so no float64 copy of the whole layer exists."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    mixing = rng.normal(size=(3 * d, dim)) / np.sqrt(3 * d)
    out = np.empty((n, dim), dtype=np.float32)
    step = max(1, 2**22 // dim)
    for start in range(0, n, step):
        block = z[start : start + step]
        out[start : start + step] = np.hstack([np.sin(block), np.cos(block), block]) @ mixing
    return out


def plain_search(x: torch.Tensor, k: int) -> torch.Tensor:
    """The bare float32 search: ||y||^2 - 2 q.y in blocks of 64 MB, top k + 1 per row."""
    n = len(x)
    sq = (x * x).sum(dim=1)[None, :]
    rows = max(1, min(n, 2**24 // n))
    found = []
    for s in range(0, n, rows):
        block = x[s : s + rows]
        # numpy's BLAS on a CPU: the faster float32 product there (what nearest_neighbours uses)
        product = block @ x.T if x.is_cuda else torch.from_numpy(block.numpy() @ x.numpy().T)
        d2 = product.mul_(-2.0).add_(sq)
        found.append(torch.topk(d2, k + 1, dim=1, largest=False).indices)
    if x.is_cuda:
        torch.cuda.synchronize()
    return torch.cat(found)


def faiss_search(x: np.ndarray, k: int):
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    return index.search(x, k + 1)


def measure_cell(n: int, dim: int, dev: torch.device, repeats: int, have_faiss: bool) -> dict:
    """Seconds of the plain search, of `nearest_neighbours` and of faiss (when present) on one layer."""
    x = manifold_layer(n, dim)
    xt = torch.from_numpy(x).to(dev)
    nearest_neighbours(x[:300], K, device=dev)  # warm-up (thread pools, CUDA context)
    runs = {"plain": lambda: plain_search(xt, K), "ours": lambda: nearest_neighbours(x, K, device=dev)}
    if have_faiss:
        runs["faiss"] = lambda: faiss_search(x, K)
    best = dict.fromkeys(runs, float("inf"))
    values = {}
    for _ in range(repeats):  # interleaved: a burst of load on the machine hits every peer alike
        for name, run in runs.items():
            values[name], seconds = best_of(run, 1)
            best[name] = min(best[name], seconds)
    if have_faiss:
        found = values["faiss"][1]
        best["agree"] = float((found[:, 1:] == values["ours"].indices).mean())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"cells {QUICK} (the default)")
    size.add_argument("--full", action="store_true", help="{2k, 10k, 50k} x {64, 512, 4096} and 1.5k x 65536")
    parser.add_argument(
        "--max-gb",
        type=float,
        default=20.0,
        help="skip cells needing more memory (default 20: what a 24 GB machine can spare)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="best of R rounds (default 3 quick, 2 full)"
    )
    parser.add_argument("--cells", default="", help="only these cells, e.g. 2000x64,1500x65536")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = FULL if args.full else QUICK
    if args.cells:
        cells = [tuple(int(v) for v in cell.split("x")) for cell in args.cells.split(",")]
    repeats = args.repeats or (2 if args.full else 3)
    dev = resolve_device(args.device)
    try:
        import faiss  # noqa: F401

        have_faiss = dev.type == "cpu"
    except ImportError:
        have_faiss = False
    print(
        f"exact kNN, k={K}, device={dev}, torch threads={torch.get_num_threads()}, best of {repeats} "
        "interleaved rounds; "
        f"faiss {'present' if have_faiss else 'absent: its column is skipped'}",
        flush=True,
    )
    header = ("plain s", "mprobe s", "ratio", "faiss s", "vs faiss")
    print(f"{'N':>7}{'D':>7}" + "".join(f"{h:>10}" for h in header), flush=True)
    worst, worst_faiss = 0.0, 0.0
    for n, dim in cells:
        # the float32 points, their float32 centred copy, the input check's boolean mask, 1 GB else
        need_gb = n * dim * (4 + 4 + 1) / 2**30 + 1.0
        if need_gb > args.max_gb:
            print(f"{n:>7}{dim:>7}  skipped: needs about {need_gb:.0f} GB (> --max-gb {args.max_gb:g})")
            continue
        t = measure_cell(n, dim, dev, repeats, have_faiss)
        ratio = t["ours"] / t["plain"]
        worst = max(worst, ratio)
        row = f"{n:>7}{dim:>7}{t['plain']:>10.2f}{t['ours']:>10.2f}{ratio:>9.2f}x"
        if have_faiss:
            worst_faiss = max(worst_faiss, t["ours"] / t["faiss"])
            row += f"{t['faiss']:>10.2f}{t['ours'] / t['faiss']:>9.2f}x  (same neighbours: {t['agree']:.1%})"
        print(row, flush=True)
    report_ratio("bench_knn", "kNN / plain Gram+top-k, worst cell", worst, 1.1)
    if have_faiss:
        report_ratio("bench_knn", "kNN / faiss exact, worst cell", worst_faiss, 1.2)


if __name__ == "__main__":
    main()
