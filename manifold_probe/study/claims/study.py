"""`run_claims`: train a study's zoo, measure it on the right points, test the claims.

Layout of a claims folder OUT (every stage resumable: a second run reuses what exists):

    OUT/zoo/             the checkpoints (`zoo_presets.train_zoo`), epoch snapshots beside them
    OUT/sweep-train/     collapse and spectra on each model's own training images: one sweep
                         per (seed, training-set size), whose seeded subset is the one the
                         model was trained on (`training.training_data`)
    OUT/sweep-test/      id and kNN curvature (CNN and ResNet finals), collapse and spectra
                         (a second design) on one shared set of test images
    OUT/sweep-perturb/   curvature with Kaufman & Azencot's perturbation neighbourhoods on
                         shared test images (CNN and ResNet finals)
    OUT/input/           the input layer's curvature on the same points (the same for every model)
    OUT/planes/          cutting planes of the MLPs Fort et al.'s claims compare and of the
                         disjoint seed pairs (`<name>[+<name>].json`), from the shared test images
    OUT/claims.json      the findings (a `manifold-probe/result@1` file, command `claims`); its
                         `source.points` states which points each quantity was measured on
    OUT/index.html       the findings page

Example
-------
>>> outcome = run_claims("claims-out", data="digits", preset="tiny")   # doctest: +SKIP
>>> [(f.claim, f.verdict) for f in outcome.findings][:2]                # doctest: +SKIP
[('ka-initial-rise', 'inconclusive'), ('ka-plateau', 'inconclusive')]
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ... import api
from ...probes.critical_dimension import default_dims
from ...progress import track
from ...results import Result, read_result
from ..sweep import SweepCheckpoint, describe_checkpoints, run_sweep
from ..zoo_presets import train_zoo
from .design import ClaimsDesign, design
from .evidence import ModelRecord, Study, record_from_checkpoint
from .inference import ALPHA, VERDICTS
from .verdicts import (
    ALTERNATIVES,
    MLP,
    PRIMARY,
    PRIMARY_CLAIMS,
    Finding,
    StudyContext,
    ensemble_pairs,
    evaluate_claims,
)

CLAIMS_FILE = "claims.json"
CLAIMS_PAGE = "index.html"


@dataclass(frozen=True)
class ClaimsOutcome:
    """What `run_claims` produced: the findings, the study they rest on, and the files written."""

    findings: list[Finding]
    study: Study
    result: Result
    json_path: Path
    page_path: Path


TRAIN_MEASURES = ("collapse", "spectra")
"""Measured on each model's own training images (Papyan, Han & Donoho; Papyan; E & Wojtowytsch)."""
TEST_MEASURES = ("id", "curvature")
"""Measured on the shared test images (kNN curvature: the second curvature design)."""
TEST_KEYS = {"id": "id", "curvature": "curvature-knn", "collapse": "collapse-test", "spectra": "spectra-test"}
"""The keys of the shared-test-point results in a record (`verdicts.Design` reads them by role)."""
CURVATURE_OPTIONS = {"n_bootstrap": 50, "n_null": 0}
"""The study's curvature runs: 50 bootstrap resamples, no matched null (its 19 Gaussian draws
cost 20 fits; the paper's raw MAPC is what the claims read, the null is for single readings)."""


def _read(folder: Path, measures, key=lambda probe: probe) -> dict[str, Result]:
    found = {}
    for probe in measures:
        path = folder / f"{probe}.json"
        if path.is_file():
            found[key(probe)] = read_result(path)
    return found


def _settings(info: SweepCheckpoint) -> dict:
    return dict((info.metadata or {}).get("training") or {})


def _is_final(info: SweepCheckpoint) -> bool:
    stem, _, suffix = Path(info.path).stem.rpartition("-epoch")
    return not (stem and suffix.isdigit())


def _sweeps(infos: list[SweepCheckpoint], root: Path, data: str, plan: ClaimsDesign, seed: int, device: str,
            workers: int | None, progress: bool) -> dict[str, dict[str, Result]]:  # fmt: skip
    """Run the study's sweeps (module docstring) and return each checkpoint's results by key:
    collapse, spectra (own training images); id, curvature-knn, collapse-test, spectra-test (shared
    test images); curvature (perturbation neighbourhoods)."""
    common = {"data": data, "reduction": "none", "device": device, "workers": workers, "progress": progress}
    conv = [i for i in infos if i.metadata and i.metadata.get("arch") != "digits-mlp"]
    conv_finals = [i for i in conv if _is_final(i)]
    train_set = [i for i in infos if i.metadata and (_is_final(i) or i.metadata.get("arch") == "digits-cnn")]
    groups: dict[tuple, list[SweepCheckpoint]] = {}
    for info in train_set:
        groups.setdefault((_settings(info).get("seed", 0), _settings(info).get("train_size")), []).append(
            info
        )
    for (model_seed, size), members in sorted(groups.items(), key=lambda item: str(item[0])):
        run_sweep([m.path for m in members], TRAIN_MEASURES, root / "sweep-train" / f"s{model_seed}-n{size}",
                  split="train", n_points=size, seed=model_seed, **common)  # fmt: skip
    knn = {"curvature": {"dim": plan.curvature_dim, "n_centres": plan.curvature_centres, **CURVATURE_OPTIONS}}
    test = {"split": "test", "seed": seed, **common}
    run_sweep([i.path for i in conv_finals], TEST_MEASURES, root / "sweep-test", n_points=plan.n_points,
              measure_options=knn, **test)  # fmt: skip
    if plan.test_point_design:
        run_sweep([i.path for i in train_set], TRAIN_MEASURES, root / "sweep-test", n_points=plan.n_points,
                  **test)  # fmt: skip
    # only options the perturb result records (it has no null; n_copies only when set), so a finished
    # result is recognised and reused on the next run
    copies = {"n_copies": plan.perturb_copies} if plan.perturb_copies else {}
    perturb = {"curvature": {"neighbourhood": "perturb", "dim": plan.curvature_dim,
                             "n_bootstrap": CURVATURE_OPTIONS["n_bootstrap"], **copies}}  # fmt: skip
    run_sweep([i.path for i in conv_finals], ("curvature",), root / "sweep-perturb",
              n_points=plan.perturb_images,
              measure_options=perturb, **test)  # fmt: skip
    results = {}
    for info in infos:
        size = _settings(info).get("train_size")
        own = root / "sweep-train" / f"s{_settings(info).get('seed', 0)}-n{size}" / "results" / info.run_id
        found = _read(own, TRAIN_MEASURES)
        found |= _read(root / "sweep-test" / "results" / info.run_id, (*TEST_MEASURES, *TRAIN_MEASURES),
                       key=TEST_KEYS.get)  # fmt: skip
        found |= _read(root / "sweep-perturb" / "results" / info.run_id, ("curvature",))
        results[Path(info.path).stem] = found
    return results


def input_curvature(root: Path, data: str, plan: ClaimsDesign, seed: int) -> tuple[tuple[str, float], ...]:
    """Raw MAPC of the input layer on the study's shared test points, with each design's
    neighbourhoods: kNN on the pixels (`curvature-knn`), and the perturbation neighbourhoods
    (`curvature`) through an identity map (a Linear layer with the identity as weights, so the
    copies' activations are their pixels). Written to OUT/input/ and read back when there."""
    import torch
    from torch import nn

    found = []
    for key in ("curvature-knn", "curvature"):
        path = root / "input" / f"{key}.json"
        if not path.is_file():
            if key == "curvature":
                images = api.load_data(data, split="test", n_points=plan.perturb_images, seed=seed)
                width = int(np.prod(images.inputs().shape[1:]))
                identity = nn.Linear(width, width, bias=False)
                with torch.no_grad():
                    identity.weight.copy_(torch.eye(width))
                model = nn.Sequential(nn.Flatten(), identity)
                result = api.curvature(model, images, neighbourhood="perturb", dim=plan.curvature_dim,
                                       n_copies=plan.perturb_copies, seed=seed,
                                       **CURVATURE_OPTIONS)  # fmt: skip
            else:
                points = api.load_data(data, split="test", n_points=plan.n_points, seed=seed)
                pixels = points.inputs().reshape(points.n_points, -1)
                result = api.curvature(pixels, dim=plan.curvature_dim, n_centres=plan.curvature_centres,
                                       seed=seed,
                                       **CURVATURE_OPTIONS)  # fmt: skip
            result.write(path)
        layer = read_result(path).layers[-1]
        value = layer.metrics.get("mapc")
        found.append((key, float(value) if isinstance(value, (int, float)) else float("nan")))
    return tuple(found)


def _planes(
    members: list[ModelRecord], infos: dict[str, SweepCheckpoint], out: Path, data, plan: ClaimsDesign,
    device: str,
) -> Result:  # fmt: skip
    """The cutting-planes result of one model or one ensemble on `data` (read back when it exists
    and was measured with the same classes, dimensions and options; measured again otherwise)."""
    names = [m.name for m in members]
    target = out / "planes" / ("+".join(names) + ".json")
    classes = plan.plane_classes if isinstance(plan.plane_classes, str) else list(plan.plane_classes)
    dims = default_dims(infos[names[0]].input_dim, plan.plane_dims)
    wanted = {"classes": classes, "dims": dims, **plan.planes}
    if target.is_file():
        found = read_result(target)
        if all(found.params.get(key) == value for key, value in wanted.items()):
            return found
    models = [api.load_model(infos[name].path, device=device) for name in names]
    result = api.cutting_planes(models, data, **wanted)
    result.write(target)
    return read_result(target)


def plane_jobs(study: Study, plan: ClaimsDesign) -> list[list[ModelRecord]]:
    """The MLPs (one each) and ensembles whose cutting planes Fort et al.'s claims read: every
    trained deep MLP final (baselines of every width, label-noise and training-size series),
    every saved epoch of the first `plan.plane_runs` deep MLP runs (lowest seeds), and the
    disjoint seed pairs of `verdicts.ensemble_pairs`."""
    ensembles = ensemble_pairs(study)
    deep = [r for r in study.finals if r.arch == MLP and (r.depth or 0) >= 2 and r.trained]
    runs = sorted(
        (m for m in study.runs().values() if m[-1].arch == MLP), key=lambda m: (m[-1].seed, m[-1].name)
    )
    needed = {r.name for r in deep} | {m.name for members in ensembles for m in members}
    needed |= {r.name for members in runs[: plan.plane_runs] for r in members}
    return [[r] for r in study.records if r.name in needed] + ensembles


def _measure_planes(
    study: Study, infos: dict[str, SweepCheckpoint], out: Path, data: str, plan: ClaimsDesign, seed: int,
    device: str, progress: bool,
) -> tuple[Study, tuple[tuple[str, float], ...]]:  # fmt: skip
    """The study with cutting-planes results on the models Fort et al.'s claims compare, and
    each ensemble's gain (its mean class-manifold dimension minus its members' mean)."""
    jobs = plane_jobs(study, plan)
    results = {}
    pool = api.load_data(data, split="test", n_points=plan.n_points, seed=seed)  # the shared test points
    for members in track(jobs, description="cutting planes", enabled=progress):
        results["+".join(m.name for m in members)] = _planes(members, infos, out, pool, plan, device)
    records = tuple(
        replace(r, results={**r.results, "cutting-planes": results[r.name]}) if r.name in results else r
        for r in study.records
    )

    def dim(name: str) -> float:
        value = results[name].summary.get("mean_manifold_dim")
        return float(value) if isinstance(value, (int, float)) else float("nan")

    gains = []
    for members in (m for m in jobs if len(m) > 1):
        name = "+".join(m.name for m in members)
        gains.append((name, dim(name) - float(np.mean([dim(m.name) for m in members]))))
    return Study(records), tuple(gains)


def points_statement(plan: ClaimsDesign, seed: int) -> dict[str, str]:
    """Which points each quantity of the study is measured on (`source.points` of claims.json)."""
    shared = f"the same {plan.n_points} test images for every model (stratified, seed {seed})"
    return {
        "collapse, spectra": "each model's own training images: its whole training subset (the seeded "
        "subset it was trained on, clean labels)",
        "id, curvature-knn, collapse-test, spectra-test": shared,
        "curvature": f"the same {plan.perturb_images} test images for every model (seed {seed}), each with "
        + (
            f"{plan.perturb_copies} of its perturbed copies"
            if plan.perturb_copies
            else "all its perturbed copies "
            "(1,023 on 28x28 images; fewer singular values to switch on smaller ones)"
        )
        + " (Kaufman & Azencot's neighbourhoods)",
        "input layer": "the same points as each curvature design, through no model",
        "cutting-planes": f"start points from {shared}",
    }


def findings_result(
    findings: list[Finding], plan: ClaimsDesign, data: str, seed: int, study: Study
) -> Result:
    """The findings as a result file: `summary.findings` lists each claim's test."""
    counts = {verdict: sum(f.verdict == verdict for f in findings) for verdict in VERDICTS}
    models = [
        {
            "name": r.name, "arch": r.arch, "width": r.width, "depth": r.depth, "seed": r.seed,
            "epoch": r.epoch, "epochs": r.epochs, "train_size": r.train_size, "mixup": r.mixup,
            "label_noise": r.label_noise, "train_accuracy": r.train_accuracy,
            "test_accuracy": r.test_accuracy,
            "probes": sorted(r.results),
        }
        for r in study.records
    ]  # fmt: skip
    return Result(
        command="claims",
        source={"data": data, "preset": plan.preset, "purpose": plan.purpose, "seed": seed,
                "n_models": len(study.finals), "n_checkpoints": len(study.records),
                "points": points_statement(plan, seed)},
        params={"n_points": plan.n_points, "perturb_images": plan.perturb_images,
                "perturb_copies": plan.perturb_copies, "reduction": "none",
                "curvature_dim": plan.curvature_dim, "curvature_centres": plan.curvature_centres,
                "curvature_options": CURVATURE_OPTIONS, "plane_classes": plan.plane_classes,
                "planes": plan.planes, "plane_dims": plan.plane_dims, "plane_runs": plan.plane_runs,
                "alpha": ALPHA, "multiplicity": "Holm within each family (primary: the pre-registered "
                f"{', '.join(PRIMARY_CLAIMS)}; secondary: the others) over its claims with a p-value",
                "designs": [PRIMARY.name, *(d.name for d in ALTERNATIVES)],
                "models": [asdict(m) for m in plan.models]},
        summary={"verdicts": counts, "findings": [f.to_dict() for f in findings], "models": models},
    )  # fmt: skip


def run_claims(
    out: str | os.PathLike,
    *,
    data: str = "digits",
    preset: str = "tiny",
    seed: int = 0,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    plan: ClaimsDesign | None = None,
) -> ClaimsOutcome:
    """Train the preset's zoo on `data`, measure every model on its points, test every claim.

    Parameters
    ----------
    out : the study's folder (see the module docstring); resumable.
    data : a data spec (`digits`, `fashion-mnist`, ...), used for training and measuring.
    preset : `tiny`, `small` or `full` (see `claims.design`).
    seed : seeds the zoo, the shared test points, the planes and the permutations.
    workers : training and sweep worker processes (default: up to 2). They are spawned, so a
        script that calls `run_claims` with workers > 1 needs `if __name__ == "__main__":` around
        the call (without it each worker runs the script again and the pool breaks with
        `BrokenProcessPool`); or pass `workers=1`.
    plan : a design of your own (`design.ClaimsDesign`, e.g. a preset's with fewer models) instead
        of the preset's; its `preset` names it in the result.

    Returns
    -------
    ClaimsOutcome with the findings (one per entry of `verdicts.CLAIMS`) and the files written.
    """
    from .page import write_findings_page

    plan = plan or design(preset)
    root = Path(out).expanduser()
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    train_zoo(
        root / "zoo", plan.models, seed=seed, data=data, device=device, workers=workers, progress=progress
    )
    infos = [info for info in describe_checkpoints([root / "zoo"]) if info.metadata]
    results = _sweeps(infos, root, data, plan, seed, device, workers, progress)
    study = Study(tuple(record_from_checkpoint(Path(i.path).stem, i.metadata, results[Path(i.path).stem])
                        for i in infos))  # fmt: skip
    num_classes = int(infos[0].metadata["arch_args"]["num_classes"])
    by_name = {Path(info.path).stem: info for info in infos}
    study, gains = _measure_planes(study, by_name, root, data, plan, seed, device, progress)
    context = StudyContext(num_classes, input_curvature(root, data, plan, seed), gains)
    findings = evaluate_claims(study, context, seed=seed)
    result = findings_result(findings, plan, data, seed, study).with_summary(
        input_mapc=dict(context.input_mapc), ensemble_gains=dict(gains)
    )
    json_path = result.write(root / CLAIMS_FILE)
    page_path = write_findings_page(result, study, root / CLAIMS_PAGE)
    return ClaimsOutcome(findings, study, result, json_path, page_path)
