"""The reference workload: torchvision ResNet-18 at 32x32, every default layer, no reduction.

Goals: `mprobe id` at N = 5,000 (default layers and methods) in under 45 s on 2 cores (issue 26,
goal 4; issue 13 asked for 10 minutes), its forward stage within 1.5x of an in-process hook
loop over the same images (timed in the same run: forward hooks on the same layers, batches of
256 under inference_mode, outputs copied into preallocated arrays); `mprobe curvature` at
N = 2,000 within 20 minutes; peak RSS under 4 GB, every layer reported. The model
is `torchvision.models.resnet18(num_classes=10)`, random init and briefly trained (a few
SGD steps on the same synthetic data: no download happens here); the inputs are synthetic
3x32x32 images, ten classes of smooth random patterns plus pixel noise (`synthetic_images`).
Each run is the real command line in a fresh interpreter, with the time of its stages
recorded: import, forward (activation extraction), kNN (every `nearest_neighbours` call),
and the rest (the fits and writing the result), and its peak RSS.

    python benchmarks/bench_resnet18.py [--quick | --full] [--skip-curvature] [--timeout S]
                                        [--curvature-args "--dim twonn --centres 500"]

Curvature runs with `--curvature-args` (default `--dim twonn`: the paper's protocol, so every
layer is fitted; with the default spectral-gap rule these layers have no clear gap, are
reported `uncertain_dimension` without any fit, and the run would time nothing). A layer
counts as reported when it has a finite curvature value or a status with a reason.

--quick: random init only, id at N=1,000 and curvature at N=300 (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import report_ratio, time_stages

HERE = Path(__file__).resolve().parent
CLASSES = 10


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, 3, 32, 32) float32 in [0, 1] and labels: each class a smooth random
    pattern (an 8x8 colour field upsampled), each image its class's pattern, shifted in
    brightness, plus pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, size=(CLASSES, 3, 8, 8))
    patterns = coarse.repeat(4, axis=2).repeat(4, axis=3)
    labels = rng.integers(0, CLASSES, size=n)
    x = patterns[labels] + 0.2 * rng.normal(size=(n, 1, 1, 1)) + 0.1 * rng.normal(size=(n, 3, 32, 32))
    return np.clip(x, 0, 1).astype(np.float32), labels.astype(np.int64)


def make_models(folder: Path, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, Path]:
    """State dicts of resnet18(num_classes=10): random init, and after `steps` SGD steps."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=CLASSES)
    paths = {"random init": folder / "resnet18-random.pt"}
    torch.save(model.state_dict(), paths["random init"])
    if steps:
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        generator = np.random.default_rng(1)
        for _ in range(steps):
            batch = generator.choice(len(x), 128, replace=False)
            logits = model(torch.from_numpy(x[batch]))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[batch]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        print(f"  trained {steps} SGD steps (batch 128), last loss {loss.item():.3f}", flush=True)
        paths[f"trained {steps} steps"] = folder / "resnet18-trained.pt"
        torch.save(model.state_dict(), paths[f"trained {steps} steps"])
    return paths


def child(argv: list[str], stages_path: str) -> int:
    """Run `mprobe ARGV` in this process with its stages timed; write them to stages_path."""
    import pkgutil
    import resource

    start = time.perf_counter()
    import importlib

    import manifold_probe

    for info in pkgutil.walk_packages(manifold_probe.__path__, "manifold_probe."):
        importlib.import_module(info.name)
    from manifold_probe.extraction.engine import extract
    from manifold_probe.geometry.neighbours import nearest_neighbours
    from manifold_probe_cli.main import main

    seconds = {"import": time.perf_counter() - start}
    time_stages({"forward": extract, "kNN": nearest_neighbours}, seconds)
    code = main(argv)
    total = time.perf_counter() - start
    seconds["fits and the rest"] = total - sum(seconds.values())
    seconds["total"] = total
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    Path(stages_path).write_text(json.dumps({"seconds": seconds, "peak_gb": peak_gb, "code": code}))
    return code


def layers_reported(result_path: Path) -> tuple[int, list[str], int]:
    """(number of layers in the result, the layers without one finite number, the layers with
    a finite curvature `mapc`: those whose fits ran)."""
    data = json.loads(result_path.read_text())
    mapcs = [layer.get("metrics", {}).get("mapc") for layer in data["layers"]]  # NaN is null in JSON
    fitted = sum(isinstance(v, (int, float)) and bool(np.isfinite(v)) for v in mapcs)
    missing = []
    for layer in data["layers"]:
        values = [v for v in layer.get("metrics", {}).values() if isinstance(v, (int, float))]
        values += [row.get("value") for row in layer.get("rows", []) if isinstance(row, dict)]
        if not any(isinstance(v, (int, float)) and np.isfinite(v) for v in values):
            missing.append(layer.get("name", "?"))
    return len(data["layers"]), missing, int(fitted)


def hook_loop_seconds(model_path: Path, data: Path, n: int, layers: list[str]) -> float:
    """The forward stage's peer: the same model's `layers` recorded by forward hooks over the
    first n images, in this process (batches of 256, inference_mode, one copy per output)."""
    import torch
    import torchvision

    model = torchvision.models.resnet18(num_classes=CLASSES)
    model.load_state_dict(torch.load(model_path))
    model.eval()
    x = np.load(data)["x"][:n]
    modules = dict(model.named_modules())
    outputs: dict[str, np.ndarray] = {}
    position = [0]

    def hook(name):
        def record(module, inputs, output):
            flat = output.reshape(len(output), -1)
            if name not in outputs:
                outputs[name] = np.empty((n, flat.shape[1]), dtype=np.float32)
            outputs[name][position[0] : position[0] + len(flat)] = flat.numpy()

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers if name in modules]
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, n, 256):
            position[0] = first
            model(torch.from_numpy(x[first : first + 256]))
    seconds = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return seconds


def run(
    command: str, model: Path, data: Path, n: int, folder: Path, timeout: float, extra: list[str]
) -> dict:
    out = folder / f"{command}-{model.stem}-{n}.json"
    stages = out.with_name("stages-" + out.name)
    argv = [
        command,
        "--model",
        str(model),
        "--arch",
        "torchvision:resnet18",
        "--num-classes",
        str(CLASSES),
        "--data",
        f"npz:{data}",
        "--n-points",
        str(n),
        "--reduction",
        "none",
        "--json",
        str(out),
        "-q",
        *extra,
    ]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(stages), "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s (--timeout)", "wall": time.perf_counter() - started}
    if proc.returncode or not stages.exists():
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last, "wall": time.perf_counter() - started}
    report = json.loads(stages.read_text())
    report["layers"], report["missing"], report["fitted"] = layers_reported(out)
    report["layer_names"] = [layer["name"] for layer in json.loads(out.read_text())["layers"]]
    return report


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[4:], sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="random init, id N=1,000, curvature N=300")
    size.add_argument("--full", action="store_true", help="both models, id N=5,000, curvature N=2,000")
    parser.add_argument("--steps", type=int, default=30, help="SGD steps of the trained model")
    parser.add_argument("--skip-curvature", action="store_true")
    parser.add_argument("--skip-id", action="store_true")
    parser.add_argument(
        "--models",
        choices=("random", "trained", "both"),
        default=None,
        help="which models (default: random with --quick, both with --full)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a run is stopped")
    parser.add_argument("--curvature-args", default="--dim twonn", help="extra options of the curvature runs")
    args = parser.parse_args()
    n_id, n_curv = (5000, 2000) if args.full else (1000, 300)
    goals = {"id": (45.0, 4.0), "curvature": (1200.0, 4.0)}
    with tempfile.TemporaryDirectory(prefix="bench-resnet18-") as tmp:
        folder = Path(tmp)
        x, y = synthetic_images(max(n_id, n_curv))
        np.savez(folder / "images.npz", x=x, y=y)
        print(
            f"ResNet-18 (torchvision, num_classes=10), synthetic 3x32x32 images, --reduction none; "
            f"id N={n_id}, curvature N={n_curv} ({args.curvature_args})",
            flush=True,
        )
        which = args.models or ("both" if args.full else "random")
        models = make_models(folder, x, y, 0 if which == "random" else args.steps)
        if which == "trained":
            models.pop("random init")
        header = ("run", "import s", "forward s", "kNN s", "fits+rest s", "total s", "peak GB", "layers")
        print(f"{header[0]:<36}" + "".join(f"{h:>12}" for h in header[1:]), flush=True)
        for label, model in models.items():
            for command, n in (("id", n_id), ("curvature", n_curv)):
                if (command == "curvature" and args.skip_curvature) or (command == "id" and args.skip_id):
                    continue
                name = f"{command} N={n}, {label}"
                print(f"{name:<36}running ...", flush=True)
                extra = args.curvature_args.split() if command == "curvature" else []
                r = run(command, model, folder / "images.npz", n, folder, args.timeout, extra)
                if "error" in r:
                    print(f"{name:<36}FAILED after {r['wall']:.0f} s: {r['error']}", flush=True)
                    continue
                s = r["seconds"]
                missing = f", no number: {', '.join(r['missing'])}" if r["missing"] else ""
                if command == "curvature":
                    missing += f" (curvature fitted in {r['fitted']})"
                print(
                    f"{name:<36}{s['import']:>12.1f}{s['forward']:>12.1f}{s['kNN']:>12.1f}"
                    f"{s['fits and the rest']:>12.1f}{s['total']:>12.1f}{r['peak_gb']:>12.2f}"
                    f"{r['layers'] - len(r['missing']):>9}/{r['layers']}{missing}",
                    flush=True,
                )
                if command == "id":
                    names = ["fc" if name == "logits" else name for name in r["layer_names"]]
                    hook = hook_loop_seconds(model, folder / "images.npz", n, names)
                    ratio = s["forward"] / hook
                    print(f"{'':<36}in-process hook loop over the same layers: {hook:.1f} s; "
                          f"forward stage / hook loop = {ratio:.2f}", flush=True)  # fmt: skip
                    report_ratio("bench_resnet18", f"id N={n} ({label}) forward / hook loop", ratio, 1.5)
                if args.full:
                    limit, memory = goals[command]
                    what = f"{command} N={n} ({label})"
                    report_ratio("bench_resnet18", f"{what} minutes", s["total"] / 60, round(limit / 60, 2))
                    report_ratio("bench_resnet18", f"{what} peak GB", r["peak_gb"], memory)


if __name__ == "__main__":
    main()
