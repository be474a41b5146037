"""The demo on the built-in data (what `make demo` runs): a model zoo, a sweep, the report.

Kaufman & Azencot (2023) relate the curvature gap between the last two layers to test
accuracy across models; the demo asks the same question of a small zoo of digits models
whose accuracy spreads from chance to ~99 %, with the other measures beside it. Curvature is
measured with the paper's protocol (`DEMO_CURVATURE_DIM`: d = each layer's rounded TwoNN),
since these layers show no clear local spectral gap and the default rule gives them no value.
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
        measure_options={"curvature": {"dim": DEMO_CURVATURE_DIM}},
        workers=workers,
        progress=progress,
    )
    report = build_report(out / "sweep", seed=seed, progress=progress)
    report.write(out / "report" / "report.json")
    page = write_report_page(report, out / "sweep", out / "report" / "index.html")
    return DemoOutcome(zoo, sweep, report, page)
