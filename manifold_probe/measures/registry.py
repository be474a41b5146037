"""The one registry of measures: what the command line, the sweep and the Python API share.

Each `Measure` names its command (the `command` field of its result JSON), the API function
that computes it, and the fixed options a sweep runs it with (None: not a sweep probe). The
sweep's probes, their order and their options come from here, and `run` is how the sweep
(and any caller that has a measure's name) computes one. Importing this module is light.

Example
-------
>>> from manifold_probe.registry import MEASURES, run
>>> [m.command for m in MEASURES.values()]
['id', 'curvature', 'collapse', 'spectra', 'cutting-planes']
>>> run("id", model, data, methods=("twonn",))
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Measure:
    """A measure: its command name, its API function (in `manifold_probe.api`), a one-line
    description, and the options a sweep uses (None when sweeps do not run it)."""

    command: str
    function: str
    description: str
    sweep_options: Mapping[str, Any] | None = field(default=None)

    def __call__(self, *args: Any, **options: Any):
        """Compute the measure (the API function with these arguments)."""
        return getattr(importlib.import_module("manifold_probe.api"), self.function)(*args, **options)


MEASURES: dict[str, Measure] = {
    m.command: m
    for m in (
        Measure("id", "intrinsic_dimension", "intrinsic dimension of every layer",
                {"methods": ("twonn", "mle", "pca"), "n_bootstrap": 0}),
        Measure("curvature", "curvature", "principal curvature of every layer", {"n_bootstrap": 200}),
        Measure("collapse", "collapse", "neural collapse of every layer", {}),
        Measure("spectra", "spectra", "class/cross-class spectra of every layer", {}),
        Measure("cutting-planes", "cutting_planes", "class-manifold dimension by random cutting planes",
                {"classes": "all", "planes": 3, "n_bootstrap": 100}),
    )
}  # fmt: skip
"""Every measure by command name, in the order the CLI's help and a sweep list them."""

SWEEP_PROBES: tuple[str, ...] = tuple(name for name, m in MEASURES.items() if m.sweep_options is not None)
"""The measures a sweep can run."""


def run(name: str, *args: Any, **options: Any):
    """Compute the measure called `name` (`MEASURES[name]`) with these arguments."""
    return MEASURES[name](*args, **options)
