"""The demo on the built-in data (what `make demo` runs): a model zoo, a sweep, the report.

Kaufman & Azencot (2023) relate the curvature gap between the last two layers to test
accuracy across models; the demo asks the same question of a small zoo of digits models
whose accuracy spreads from chance to ~99 %, with the other measures beside it. Curvature is
measured with the paper's protocol (`DEMO_CURVATURE_DIM`: d = each layer's rounded TwoNN),
since these layers have no manifold scale window and the default path gives them no value;
without its per-layer Gaussian null (`DEMO_CURVATURE_NULL`), to keep the demo to minutes.
Every stage is resumable: a second run reuses the checkpoints, results and cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line reads DEMO_POINTS without loading the study
    from ..results import Result
    from .sweep import SweepSummary
    from .zoo_presets import ZooEntry

DEMO_MEASURES = ("id", "curvature", "collapse")
DEMO_POINTS = 600  # a seeded stratified subset of the training split per model: minutes, not tens
DEMO_CURVATURE_DIM = "twonn"  # the curvature measure's d (`run_sweep(measure_options=...)`)
DEMO_CURVATURE_NULL = 0
"""Gaussian null draws per layer in the demo's curvature: none. The demo asks how the curvature gap
varies across models (the report gives each correlation its interval and p-value); the per-layer
null (19 draws and 19 class-conditional ones, each a full fit) took the demo from under 2 min to
about 20 on 2 cores. `mprobe curvature --dim twonn` on one model shows the null beside each layer."""


@dataclass(frozen=True)
class DemoOutcome:
    zoo: list[ZooEntry]
    sweep: SweepSummary
    report: Result
    page: Path


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    n_points: int = DEMO_POINTS,
    workers: int | None = None,
    progress: bool = False,
) -> DemoOutcome:
    """Train the `demo` zoo into out/zoo, sweep `DEMO_MEASURES` into out/sweep, report into out/report."""
    from .report import build_report, write_report_page
    from .sweep import run_sweep
    from .zoo_presets import train_zoo

    out = Path(out)
    zoo = train_zoo(out / "zoo", "demo", seed=seed, progress=progress)
    sweep = run_sweep(
        [out / "zoo"],
        DEMO_MEASURES,
        out / "sweep",
        n_points=n_points,
        seed=seed,
        measure_options={"curvature": {"dim": DEMO_CURVATURE_DIM, "n_null": DEMO_CURVATURE_NULL}},
        workers=workers,
        progress=progress,
    )
    report = build_report(out / "sweep", seed=seed, progress=progress)
    report.write(out / "report" / "report.json")
    page = write_report_page(report, out / "sweep", out / "report" / "index.html")
    return DemoOutcome(zoo, sweep, report, page)
