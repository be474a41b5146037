"""The demo on the built-in data: train the default model (or reuse it) and measure its layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .pipeline import DataSelection, ExtractionOptions, ModelSpec, layers_from_model
from .profiles.intrinsic_dimension import id_profile
from .report.profile_page import layer_profile_figure, write_page
from .results import Result
from .sources.models import load_model
from .training import train_and_save

ID_METRICS = ["id_twonn", "id_mle", "id_pca90", "participation_ratio"]


@dataclass(frozen=True)
class DemoOutcome:
    checkpoint: Path
    test_accuracy: float
    results: list[tuple[Result, str]]
    metrics: dict[str, list[str]]
    page: Path


def run_demo(out: str | Path, *, seed: int = 0, progress: bool = False) -> DemoOutcome:
    """Train digits-cnn into `out` (unless a checkpoint is there), profile its layers, write a page."""
    out = Path(out)
    checkpoint = out / "digits-cnn.pt"
    if not checkpoint.exists():
        train_and_save("digits-cnn", {}, out=checkpoint, seed=seed, progress=progress)
    accuracy = load_model(checkpoint).checkpoint["metrics"]["test_accuracy"]
    with layers_from_model(
        ModelSpec(str(checkpoint)),
        DataSelection("digits", "train", None, seed),
        ExtractionOptions(cache_dir=str(out / "cache")),
        seed=seed,
        progress=progress,
    ) as arrays:
        ids = id_profile(arrays, ("twonn", "mle", "pca"), bootstrap=50, seed=seed, progress=progress)
    ids.write(out / "id.json")
    page = out / "index.html"
    figure = layer_profile_figure(
        [ids], ID_METRICS, names=["digits-cnn"], title="Intrinsic dimension by layer"
    )
    write_page(page, [figure], title="mprobe demo: the built-in digits-cnn", notes=f"checkpoint {checkpoint}")
    return DemoOutcome(
        checkpoint, accuracy, [(ids, "intrinsic dimension by layer")], {"id": ID_METRICS}, page
    )
