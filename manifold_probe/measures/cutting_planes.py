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
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from ..device import model_device, resolve_device
from ..errors import InputError
from ..extraction.hooks import eval_mode
from ..probes.critical_dimension import SuccessCurve
from ..probes.cutting_planes import HIT_LEVEL, ClassManifold, CuttingPlaneOptions, measure_class_manifold
from ..progress import track
from ..results import ClassResult, Result, SuccessRecord
from ..sources.data import LabelledData
from ..sources.models import LoadedModel, model_info, on_device
from ..validation import as_labels, check_seed, select_targets
from .pipeline import model_source

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
    options.dims_for(int(np.prod(pool.shape[1:])))  # dims beyond the input stop here, before any target
    seed = check_seed(seed)
    labels = as_labels(pool_labels, len(pool), name="pool labels")
    several = len(targets) > 1
    return [
        measure_class_manifold(
            models,
            pool,
            labels,
            tuple(target),
            options,
            seed=target_seed(seed, target),
            device=device,
            progress=progress and not several,
        )  # fmt: skip
        for target in track(
            list(targets), description="cutting planes, targets", enabled=progress and several
        )
    ]


def class_result(manifold: ClassManifold) -> ClassResult:
    """The `ClassResult` of one probed target: its reading and its success curve."""
    critical, curve = manifold.critical, manifold.critical.curve
    targets = tuple(manifold.target_classes)
    return ClassResult(
        target=targets[0] if len(targets) == 1 else targets,
        input_dim=manifold.input_dim,
        critical_dim=critical.critical_dim,
        critical_dim_interval=tuple(critical.interval),
        critical_dim_empirical=critical.empirical_dim,
        status=critical.status,
        manifold_dim=critical.manifold_dim,
        manifold_dim_interval=tuple(critical.manifold_dim_interval),
        confidence=critical.confidence,
        fit=None
        if curve is None
        else {
            "lower": curve.lower,
            "height": curve.height,
            "centre": curve.centre,
            "width": curve.width,
        },  # fmt: skip
        unconverged_planes=sum(s.unconverged for s in manifold.success),
        success=tuple(
            SuccessRecord(
                dim=s.dim,
                planes=s.planes,
                hits=s.hits,
                unconverged=s.unconverged,
                mean_max_prob=s.mean_max_prob,
                max_probs=s.max_probs,
                hit_fraction=s.hit_fraction,
                steps=s.steps,
            )  # fmt: skip
            for s in manifold.success
        ),
    )


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


def cutting_planes(
    source: nn.Module | LoadedModel | Sequence[nn.Module],
    data: LabelledData,
    *,
    classes: str | int | Sequence[int] = "all",
    as_set: bool = False,
    dims: Sequence[int] | None = None,
    n_dims: int = CuttingPlaneOptions.n_dims,
    planes: int = CuttingPlaneOptions.planes,
    steps: int = CuttingPlaneOptions.steps,
    lr: float = CuttingPlaneOptions.lr,
    patience: int = CuttingPlaneOptions.patience,
    tol: float = CuttingPlaneOptions.tol,
    batch: int = CuttingPlaneOptions.batch,
    orthonormal: bool = CuttingPlaneOptions.orthonormal,
    stop_at_hit: bool = CuttingPlaneOptions.stop_at_hit,
    offset: str = CuttingPlaneOptions.offset,
    n_bootstrap: int = CuttingPlaneOptions.n_bootstrap,
    confidence: float = CuttingPlaneOptions.confidence,
    seed: int | None = None,
    device: str | None = None,
    max_memory: int | None = None,
    progress: bool = False,
) -> Result:
    """Class-manifold dimension by random affine cutting planes (Fort et al. 2022;
    docs/methods.md#cutting-planes).

    Parameters
    ----------
    source : a model (`nn.Module`), or several: one ensemble (their averaged probability).
    data : `load_data(...)`: its points of other classes are the planes' offsets.
    classes : `all`, one class, or a list (each separately, or one set with `as_set`).
    dims : cutting dimensions d (None: `n_dims` log-spaced values from 1 to D).
    planes, steps, lr, patience, tol, batch, orthonormal, offset : the sweep and the optimiser
        (`probes.cutting_planes.CuttingPlaneOptions`).
    stop_at_hit : stop each plane at its first hit (the same readings, fewer steps; each hit
        plane's recorded max_prob is then its first score >= 0.5).
    n_bootstrap, confidence : the bootstrap interval of d*.
    seed : seeds the planes and the bootstrap (None: the data's seed).
    device : where the models run (None: where the first one is; others run a copy).
    max_memory : accepted for the common signature; the planes are bounded by their batch.
    progress : show progress bars.

    Returns
    -------
    A `Result` whose `classes` hold one `ClassResult` per target; `metrics["class 3"]` has
    `critical_dim` and `manifold_dim` (D - d*), `intervals` their bootstrap intervals.

    Example
    -------
    >>> r = mp.cutting_planes(model, data, classes=[1, 3], dims=(2, 8, 32), planes=3, steps=100)
    >>> r.to_frame()[["layer", "metric"]].values.tolist()[:2]
    [['class 1', 'critical_dim'], ['class 1', 'manifold_dim']]
    """
    if not isinstance(data, LabelledData):
        raise InputError("needs labelled data from load_data(...) (its points are the offsets).",
                         parameter="data")  # fmt: skip
    models = [source] if isinstance(source, (nn.Module, LoadedModel)) else list(source)
    if not models or not all(isinstance(m, (nn.Module, LoadedModel)) for m in models):
        raise InputError("give a model, or a non-empty list of models.", parameter="source")
    modules = [m.module if isinstance(m, LoadedModel) else m for m in models]
    first_device = device if device is not None else model_device(modules[0])
    moved = [on_device(m, first_device)[0] for m in modules]
    options = CuttingPlaneOptions(
        dims=None if dims is None else tuple(dims), n_dims=n_dims, planes=planes, steps=steps, lr=lr,
        patience=patience, tol=tol, batch=batch, orthonormal=orthonormal, stop_at_hit=stop_at_hit,
        offset=offset, n_bootstrap=n_bootstrap, confidence=confidence,
    )  # fmt: skip
    return cutting_planes_profile(
        [model_info(m) for m in moved], data, classes=classes, as_set=as_set, options=options,
        seed=data.seed if seed is None else check_seed(seed), device=model_device(moved[0]),
        progress=progress,
    )  # fmt: skip


def cutting_planes_profile(
    models: LoadedModel | Sequence[LoadedModel],
    data: LabelledData,
    *,
    classes: str | int | Sequence[int] = "all",
    as_set: bool = False,
    options: CuttingPlaneOptions = CuttingPlaneOptions(),
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Result:
    """Measure every target of the loaded models on `data` (its inputs are the pool of plane
    offsets), with the planes and bootstraps seeded from `seed` (`target_seed`). Several
    models are one ensemble (averaged probabilities)."""
    loaded = [models] if isinstance(models, LoadedModel) else list(models)
    if not loaded:
        raise InputError("give at least one model.", parameter="source")
    dev = resolve_device(device)
    pool = data.inputs()
    input_dim = int(np.prod(pool.shape[1:]))
    dims = options.dims_for(input_dim)
    modules = [m.module for m in loaded]
    num_classes = output_classes(modules, pool[:2].to(dev))
    targets = select_targets(classes, num_classes, as_set=as_set)
    manifolds = class_manifolds(modules, pool, data.labels, targets, options, seed=seed, device=dev,
                                progress=progress)  # fmt: skip
    params = {**asdict(options), "dims": dims}
    params.pop("n_dims")
    params.update(
        {
            "classes": classes if isinstance(classes, str) else [int(c) for c in np.ravel(classes)],
            "set": as_set,
            "seed": seed,
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
    summary = {**summarise(manifolds, input_dim), "ensemble_size": len(loaded)}
    if len(loaded) > 1:
        summary["ensemble_limitation"] = ENSEMBLE_LIMITATION
    return Result(command="cutting-planes", source=source, params=params,
                  classes=tuple(class_result(m) for m in manifolds), summary=summary)  # fmt: skip


def success_curve_points(entry: ClassResult, n: int = 200) -> tuple[list[float], list[float]]:
    """The fitted sigmoid of a target (`SuccessCurve`) sampled on a log grid over its swept
    dims (empty lists when there is no fit)."""
    fit = entry.fit
    dims = [record.dim for record in entry.success]
    if not fit or not dims:
        return [], []
    grid = np.geomspace(min(dims), max(dims), n) if max(dims) > min(dims) else np.array([float(dims[0])])
    return grid.tolist(), SuccessCurve(**dict(fit))(grid).tolist()
