"""The five papers' claims re-tested on a zoo: `run_claims` (what `mprobe claims` runs).

- `design`: the zoo each preset trains (baseline, seeds, untrained and mixup twins, label
  noise, training-set sizes, saved epochs, one-hidden-layer MLPs);
- `evidence`: one record per checkpoint and the comparisons found from its settings;
- `verdicts`: each claim as a statistic, a 95 % interval and a verdict;
- `study`: the orchestration (zoo, sweep, ensembles, findings) and `page`: the findings page.

See docs/claims.md for each claim's statistic and the verdict rules.
"""

import importlib

__all__ = ["CLAIMS", "ClaimsOutcome", "Finding", "run_claims"]
_HOMES = {"CLAIMS": "verdicts", "Finding": "verdicts", "ClaimsOutcome": "study", "run_claims": "study"}


def __getattr__(name: str):
    """Import lazily, so that listing the presets (`mprobe claims --help`) loads no torch."""
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
