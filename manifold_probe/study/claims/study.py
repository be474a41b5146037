"""`run_claims`: train a study's zoo, sweep every probe over it, measure the ensembles, test the claims.

Layout of a claims folder OUT (every stage resumable: a second run reuses what exists):

    OUT/zoo/          the checkpoints (`zoo_presets.train_zoo`), epoch snapshots beside them
    OUT/sweep/        id, curvature, collapse and spectra on every checkpoint (`sweep.run_sweep`)
    OUT/planes/       cutting planes of the models Fort et al.'s claims compare, and of each
                      ensemble of baseline seeds (`<name>[+<name>...].json`)
    OUT/claims.json   the findings (a `manifold-probe/result@1` file, command `claims`)
    OUT/index.html    the findings page

Example
-------
>>> outcome = run_claims("claims-out", data="digits", preset="tiny")   # doctest: +SKIP
>>> [(f.claim, f.verdict) for f in outcome.findings][:2]                # doctest: +SKIP
[('ka-final-rise', 'supported'), ('ka-untrained-flat', 'inconclusive')]
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
from .verdicts import VERDICTS, Finding, StudyContext, ensemble_members, evaluate_claims

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


SWEEP_MEASURES = ("id", "curvature", "collapse", "spectra")
"""What the sweep measures on every checkpoint (cutting planes run only where a claim needs them)."""


def _results(folder: Path) -> dict[str, Result]:
    found = {}
    for probe in SWEEP_MEASURES:
        path = folder / f"{probe}.json"
        if path.is_file():
            found[probe] = read_result(path)
    return found


def _records(infos: list[SweepCheckpoint], results_dir: Path) -> list[ModelRecord]:
    return [
        record_from_checkpoint(Path(info.path).stem, info.metadata, _results(results_dir / info.run_id))
        for info in infos
        if info.metadata  # project checkpoints only: the claims need their training settings
    ]


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
    """The models (one each) and ensembles whose cutting planes Fort et al.'s claims read: the
    baseline seeds and their ensembles (`ensemble_members`, nested or all), every saved epoch
    of the first `plan.plane_runs` runs (lowest seeds; all runs when None), and the
    label-noise and training-size series."""
    ensembles = ensemble_members(study, nested=plan.nested_ensembles)
    runs = sorted(study.runs().values(), key=lambda members: (members[-1].seed, members[-1].name))
    needed = {m.name for members in ensembles for m in members}
    needed |= {r.name for members in runs[: plan.plane_runs] for r in members}
    needed |= {r.name for attribute in ("label_noise", "train_size") for r in study.series(attribute)}
    return [[r] for r in study.records if r.name in needed] + ensembles


def _measure_planes(
    study: Study, infos: dict[str, SweepCheckpoint], out: Path, data: str, plan: ClaimsDesign, seed: int,
    device: str, progress: bool,
) -> tuple[Study, list[tuple[int, float]]]:  # fmt: skip
    """The study with cutting-planes results on the models Fort et al.'s claims compare, and
    (size, mean class-manifold dimension) of every ensemble and of each of its members alone."""
    jobs = plane_jobs(study, plan)
    ensembles = [members for members in jobs if len(members) > 1]
    singles = {m.name for members in ensembles for m in members}
    results = {}
    pool = api.load_data(data, split="train", n_points=plan.n_points, seed=seed)  # once for every job
    for members in track(jobs, description="cutting planes", enabled=progress):
        results["+".join(m.name for m in members)] = _planes(members, infos, out, pool, plan, device)
    records = tuple(
        replace(r, results={**r.results, "cutting-planes": results[r.name]}) if r.name in results else r
        for r in study.records
    )
    sizes = [(1, results[name]) for name in sorted(singles)]
    sizes += [(len(members), results["+".join(m.name for m in members)]) for members in ensembles]
    dims = []
    for size, result in sizes:
        value = result.summary.get("mean_manifold_dim")
        dims.append((size, float(value) if value is not None else np.nan))
    return Study(records), dims


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
        source={"data": data, "preset": plan.preset, "seed": seed, "n_models": len(study.finals),
                "n_checkpoints": len(study.records)},
        params={"n_points": plan.n_points, "reduction": plan.reduction, "probes": list(SWEEP_MEASURES),
                "curvature_dim": plan.curvature_dim, "curvature_centres": plan.curvature_centres,
                "plane_classes": plan.plane_classes, "planes": plan.planes,
                "plane_dims": plan.plane_dims,
                "plane_runs": plan.plane_runs, "nested_ensembles": plan.nested_ensembles,
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
) -> ClaimsOutcome:
    """Train the preset's zoo on `data`, sweep every probe, measure the ensembles, test every claim.

    Parameters
    ----------
    out : the study's folder (see the module docstring); resumable.
    data : a data spec (`digits`, `fashion-mnist`, ...), used for training and measuring.
    preset : `tiny`, `small` or `full` (see `claims.design`).
    seed : seeds the zoo, the measured subsets, the planes and the bootstraps.
    workers : sweep worker processes (default: up to 2).

    Returns
    -------
    ClaimsOutcome with the findings (one per entry of `verdicts.CLAIMS`) and the files written.
    """
    from .page import write_findings_page

    plan = design(preset)
    root = Path(out).expanduser()
    train_zoo(root / "zoo", plan.models, seed=seed, data=data, device=device, progress=progress)
    curvature = {"dim": plan.curvature_dim, "n_centres": plan.curvature_centres}
    run_sweep(
        [root / "zoo"], SWEEP_MEASURES, root / "sweep", data=data, n_points=plan.n_points, seed=seed,
        reduction=plan.reduction, measure_options={"curvature": curvature}, device=device, workers=workers,
        progress=progress,
    )  # fmt: skip
    infos = describe_checkpoints([root / "zoo"])
    study = Study(tuple(_records(infos, root / "sweep" / "results")))
    num_classes = int(infos[0].metadata["arch_args"]["num_classes"])
    by_name = {Path(info.path).stem: info for info in infos}
    study, ensembles = _measure_planes(study, by_name, root, data, plan, seed, device, progress)
    findings = evaluate_claims(study, StudyContext(num_classes, tuple(ensembles)), seed=seed)
    result = findings_result(findings, plan, data, seed, study).with_summary(
        ensembles=[[size, dim] for size, dim in ensembles]
    )
    json_path = result.write(root / CLAIMS_FILE)
    page_path = write_findings_page(result, study, root / CLAIMS_PAGE, ensembles=ensembles)
    return ClaimsOutcome(findings, study, result, json_path, page_path)
