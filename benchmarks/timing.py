"""What every benchmark here shares: timing one call, and reporting a ratio against its goal.

`report_ratio` prints one machine-readable line per goal,
    SUMMARY<TAB>benchmark<TAB>what<TAB>measured<TAB>goal<TAB>met|missed|info
which `run_all.py` collects into the table that `make bench` ends with.
"""

from __future__ import annotations

import time


def timed(fn):
    """(fn(), seconds it took), by the wall clock."""
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def best_of(fn, repeats: int):
    """(the last fn(), the smallest wall time of `repeats` calls): the machine's other load
    only ever adds time."""
    best = float("inf")
    value = None
    for _ in range(max(1, repeats)):
        value, seconds = timed(fn)
        best = min(best, seconds)
    return value, best


def report_ratio(benchmark: str, what: str, measured: float, goal: float | None, *, lower_is_better=True):
    """Print the SUMMARY line for one measured ratio (goal None: reported, no goal)."""
    if goal is None:
        verdict = "info"
    else:
        verdict = "met" if (measured <= goal if lower_is_better else measured >= goal) else "missed"
    sign = "<=" if lower_is_better else ">="
    goal_text = "-" if goal is None else f"{sign} {goal:g}"
    print(f"SUMMARY\t{benchmark}\t{what}\t{measured:.3g}\t{goal_text}\t{verdict}", flush=True)


def time_stages(stages: dict, seconds: dict[str, float]) -> None:
    """Wrap functions so that each call adds its wall time to seconds[stage].

    stages: stage -> a function (every attribute of a loaded `manifold_probe` module that
    holds it is replaced, so `from x import f` copies are timed too) or an (owner, name)
    pair (a method: the class attribute is replaced).
    """
    import sys

    def wrap(stage, fn):
        def timed_call(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - begin

        return timed_call

    for stage, target in stages.items():
        seconds.setdefault(stage, 0.0)
        if isinstance(target, tuple):
            owner, name = target
            setattr(owner, name, wrap(stage, getattr(owner, name)))
            continue
        wrapped = wrap(stage, target)
        for module in list(sys.modules.values()):
            ours = (getattr(module, "__name__", "") or "").startswith("manifold_probe")
            if ours and getattr(module, target.__name__, None) is target:
                setattr(module, target.__name__, wrapped)
