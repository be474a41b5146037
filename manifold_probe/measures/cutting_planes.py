"""Class-manifold dimensions of a model (or an ensemble) on a data set: the result of
`mprobe cutting-planes` (Fort et al. 2022).

From what the user names (checkpoints, a data selection, which classes) to a `Result`
whose `classes[]` holds one entry per target (see `probes.cutting_planes.ClassManifold.
to_dict`): the success curve (planes and hits per cutting dimension d), the critical
dimension d* with its bootstrap interval and the class-manifold dimension D - d*.

- Targets. `classes="all"` measures every class of the model separately; a list of
  classes measures each of them separately; with `as_set=True` the list is one target set
  Y (the low-confidence boundary between its classes: the soft target 1/|Y| each).
- Pool. The offsets x0 of the planes are points of the chosen split of the data whose
  label is outside the target (or noise with the pool's statistics, `offset="noise"`).
- Ensembles. Several models probe the intersection of their class manifolds: the
  criterion (loss and hit) is the members' averaged probability.
- Seeds. Each target gets its own planes, seeded from (seed, target classes): a class
  gets the same planes, hence the same entry, whether it is measured alone or with
  others, and different classes never share plane bases.
- Dims. Default `default_dims(D)`: about 14 log-spaced values from 1 to D.

The models run in eval mode, and inputs on the planes are not clipped to the data range
(both as documented in `probes.cutting_planes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import InputError
from ..extraction.hooks import eval_mode
from ..probes.critical_dimension import SuccessCurve, default_dims
from ..probes.cutting_planes import HIT_LEVEL, ClassManifold, measure_class_manifold
from ..progress import track
from ..results import Result
from ..sources.data import LabelledData
from ..sources.models import LoadedModel
from ..validation import as_labels, check_dims, check_positive, select_targets
from .pipeline import model_source

OFFSETS = ("data", "noise")

HIT_DEFINITION = (
    f"a plane hits when the target's probability reaches {HIT_LEVEL} somewhere on its optimisation "
    "trajectory (for a set Y: every class of Y reaches at least half its share 1/|Y|); with several "
    "models the probability is the members' average"
)
CAVEATS = (
    "models run in eval mode (the reference used batch statistics); inputs on the planes are not "
    "clipped to the data range; run-to-run variation of d* can be large (Fort et al. report up to 2x)"
)
ENSEMBLE_LIMITATION = (
    "the ensemble criterion is the averaged probability: a point deep in one member's class "
    "(probability near 1) reaches 0.5 on average even where the other member disagrees, so this "
    "probes a superset of the strict intersection of the members' class manifolds"
)


@dataclass(frozen=True)
class CuttingPlaneOptions:
    """The sweep: cutting dimensions (None: `default_dims(D)`), planes per d, and the optimiser.

    See `probes.cutting_planes.measure_class_manifold` for the meaning of each field.
    """

    dims: tuple[int, ...] | None = None
    planes: int = 5
    steps: int = 3000
    lr: float = 0.05
    patience: int = 20
    tol: float = 1e-6
    batch: int = 512
    orthonormal: bool = False
    stop_at_hit: bool = False
    offset: str = "data"
    n_bootstrap: int = 200
    confidence: float = 0.95

    def __post_init__(self) -> None:
        check_positive(self.planes, name="planes", integer=True)
        check_positive(self.steps, name="steps", integer=True)
        check_positive(self.lr, name="lr")
        check_positive(self.patience, name="patience", integer=True)
        check_positive(self.tol, name="tol", allow_zero=True)
        check_positive(self.batch, name="batch", integer=True)
        check_positive(self.n_bootstrap, name="bootstrap", integer=True, allow_zero=True)
        if self.offset not in OFFSETS:
            raise InputError(f"unknown offset {self.offset!r}: use data or noise.")
        if not 0.0 < self.confidence < 1.0:
            raise InputError(f"confidence must lie strictly between 0 and 1, got {self.confidence}.")
        if self.dims is not None:
            object.__setattr__(self, "dims", tuple(check_dims(self.dims)))


def target_seed(seed: int, targets: Sequence[int]) -> int:
    """The seed of one target's planes, from the run's seed and the target classes."""
    state = np.random.SeedSequence([int(seed), len(targets), *(int(c) for c in targets)])
    return int(state.generate_state(1, dtype=np.uint64)[0] % (2**63))


def output_classes(models: Sequence[nn.Module], example: torch.Tensor) -> int:
    """The number of classes the models agree on, from one forward pass on `example`
    (each in eval mode for the pass; their training flags are restored afterwards).

    An InputError when a model rejects inputs of the example's shape, returns something
    other than (batch, classes) logits, or the members disagree.
    """
    counts = []
    shape = tuple(example.shape[1:])
    with torch.no_grad():
        for number, model in enumerate(models, start=1):
            try:
                with eval_mode(model):
                    out = model(example)
            except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
                raise InputError(
                    f"model {number} does not accept the data's inputs of shape {shape}: "
                    f"{(str(exc).splitlines() or [type(exc).__name__])[0]}"
                ) from None
            if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != example.shape[0]:
                raise InputError(
                    f"model {number} must return logits of shape (batch, classes) for inputs of shape "
                    f"(batch, {', '.join(map(str, shape))})."
                )
            counts.append(int(out.shape[1]))
    if len(set(counts)) > 1:
        raise InputError(f"the ensemble's models disagree on the number of classes: {counts}.")
    return counts[0]


def class_manifolds(
    models: nn.Module | Sequence[nn.Module],
    pool_inputs,
    pool_labels,
    targets: Sequence[Sequence[int]],
    options: CuttingPlaneOptions = CuttingPlaneOptions(),
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> list[ClassManifold]:
    """One `ClassManifold` per target (a class or a set), each with its own seeded planes.

    With several targets the progress bar counts targets; with one, the probe's own bar
    counts optimisation steps.
    """
    pool = torch.as_tensor(pool_inputs)
    input_dim = int(np.prod(pool.shape[1:]))
    dims = check_dims(options.dims, input_dim) if options.dims is not None else default_dims(input_dim)
    check_positive(seed, name="seed", integer=True, allow_zero=True)
    labels = as_labels(pool_labels, len(pool), name="pool labels")
    several = len(targets) > 1
    results = []
    for target in track(list(targets), description="cutting planes, targets", enabled=progress and several):
        results.append(
            measure_class_manifold(
                models, pool, labels, tuple(target), dims, options.planes,
                steps=options.steps, lr=options.lr, patience=options.patience, tol=options.tol,
                batch=options.batch, orthonormal=options.orthonormal, stop_at_hit=options.stop_at_hit,
                offset=options.offset,
                seed=target_seed(seed, target), n_bootstrap=options.n_bootstrap,
                confidence=options.confidence, device=device, progress=progress and not several,
            )
        )  # fmt: skip
    return results


def class_entry(manifold: ClassManifold) -> dict[str, Any]:
    """The `classes[]` entry: the probe's record plus the hit fraction and steps of each d."""
    entry = manifold.to_dict()
    for record, success in zip(entry["success"], manifold.success, strict=True):
        record["hit_fraction"] = success.hit_fraction
        record["steps"] = list(success.steps)
    return entry


def summarise(manifolds: Sequence[ClassManifold], input_dim: int) -> dict[str, Any]:
    """Mean class-manifold dimension over the targets whose curve crossed 0.5, and the counts."""
    crossed = [m for m in manifolds if m.critical.status == "crossed"]
    statuses: dict[str, int] = {}
    for m in manifolds:
        statuses[m.critical.status] = statuses.get(m.critical.status, 0) + 1
    mean_manifold = float(np.mean([m.manifold_dim for m in crossed])) if crossed else None
    mean_critical = float(np.mean([m.critical_dim for m in crossed])) if crossed else None
    return {
        "input_dim": int(input_dim),
        "n_targets": len(manifolds),
        "n_crossed": len(crossed),
        "statuses": statuses,
        "mean_manifold_dim": mean_manifold,
        "mean_critical_dim": mean_critical,
        "mean_over": "targets whose success curve crossed 0.5 inside the swept dims (status crossed)",
        "hit_definition": HIT_DEFINITION,
        "caveats": CAVEATS,
    }


def cutting_planes_profile(
    models: LoadedModel | Sequence[LoadedModel],
    data: LabelledData,
    *,
    classes: str | int | Sequence[int] = "all",
    as_set: bool = False,
    options: CuttingPlaneOptions = CuttingPlaneOptions(),
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Result:
    """Result of `mprobe cutting-planes`: measure every target of the loaded models on `data`
    (its inputs are the pool of plane offsets).

    The data's seed also seeds the planes (`target_seed`) and the bootstraps. Several
    models are one ensemble (averaged probabilities).
    """
    loaded = [models] if isinstance(models, LoadedModel) else list(models)
    if not loaded:
        raise InputError("give at least one model.")
    dev = resolve_device(device)
    pool = data.inputs()
    input_dim = int(np.prod(pool.shape[1:]))
    if options.dims is not None:
        check_dims(options.dims, input_dim)
    modules = [m.module for m in loaded]
    num_classes = output_classes(modules, pool[:2].to(dev))
    targets = select_targets(classes, num_classes, as_set=as_set)
    manifolds = class_manifolds(
        modules, pool, data.labels, targets, options, seed=data.seed, device=dev, progress=progress
    )
    dims = list(options.dims) if options.dims is not None else default_dims(input_dim)
    params = {**asdict(options), "dims": dims}
    params.update(
        {
            "classes": classes if isinstance(classes, str) else [int(c) for c in np.ravel(classes)],
            "set": as_set,
            "seed": data.seed,
            "hit_level": HIT_LEVEL,
            "criterion": "probability" if len(loaded) == 1 else "ensemble averaged probability",
        }
    )
    sources = [model_source(m) for m in loaded]
    source = {
        "model": " + ".join(s["model"] for s in sources),
        "models": sources,
        "data": data.spec,
        "split": data.split,
        "n_points": data.n_points,
        "seed": data.seed,
        "input_shape": list(pool.shape[1:]),
        "num_classes": num_classes,
    }
    if data.preprocessing:
        source["preprocessing"] = data.preprocessing
    if data.class_names:
        source["class_names"] = list(data.class_names)
    result = Result(command="cutting-planes", source=source, params=params)
    result.classes.extend(class_entry(m) for m in manifolds)
    result.summary.update(summarise(manifolds, input_dim))
    result.summary["ensemble_size"] = len(loaded)
    if len(loaded) > 1:
        result.summary["ensemble_limitation"] = ENSEMBLE_LIMITATION
    return result


def success_curve_points(entry: dict[str, Any], n: int = 200) -> tuple[list[float], list[float]]:
    """The fitted sigmoid of a `classes[]` entry (`SuccessCurve`) sampled on a log grid over its
    swept dims (empty lists when there is no fit)."""
    fit = entry.get("fit")
    dims = [record["dim"] for record in entry["success"]]
    if not fit or not dims:
        return [], []
    grid = np.geomspace(min(dims), max(dims), n) if max(dims) > min(dims) else np.array([float(dims[0])])
    return grid.tolist(), SuccessCurve(**fit)(grid).tolist()
