"""The executors of a sweep: local processes, or a Ray cluster; both run `tasks.run_task`.

`local` runs the tasks in a process pool (spawn context; torch limited to one thread per
worker; each worker imports torch and the API once and then runs task after task, so start-up
is paid per worker, not per task (`TaskOutcome.worker_pid` says which process ran a task);
each worker exits within a second of its parent's death, even a `kill -9`) or, with one
worker, in this process; `ray` sends the same task function to a Ray cluster (the sweep
folder must be on a file system every node sees). Both give the same results.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from ..errors import InputError
from .tasks import SweepTask, TaskOutcome, failure, run_task

EXECUTORS: tuple[str, ...] = ("local", "ray")
T = TypeVar("T")


PARENT_CHECK_SECONDS = 0.5
"""How often a local worker checks that the sweep that started it is still alive."""


def _watch_parent(parent_pid: int) -> None:
    """Pool initializer: a daemon thread ends this worker as soon as its parent is gone.

    A parent killed with SIGKILL cannot stop its pool, and its workers would be re-parented
    (to PID 1) and keep computing and writing. The thread polls `os.getppid()`; when it is
    no longer `parent_pid` the worker exits at once (`os._exit`, whatever the main thread
    is doing). Its unfinished result is never written: results are renamed into place only
    when complete.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def process_map(function: Callable[..., T], jobs: Sequence[tuple], workers: int) -> Iterator[tuple[int, Any]]:
    """`function(*job)` for every job, in `workers` spawned processes (in this one when 1), as
    (index of the job, result) pairs in the order they finish. A job whose function raised, or
    whose worker died, gives (index, the exception) instead of its result (so check
    `isinstance(value, BaseException)`); the other jobs go on. Workers end with their parent
    (`_watch_parent`)."""
    if workers == 1 or len(jobs) <= 1:
        for index, job in enumerate(jobs):
            try:
                yield index, function(*job)
            except Exception as exc:
                yield index, exc
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=context, initializer=_watch_parent,
        initargs=(os.getpid(),),
    )  # fmt: skip
    try:
        futures = {pool.submit(function, *job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # the job raised, or its worker process died (BrokenProcessPool)
                yield futures[future], exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_local(tasks: list[SweepTask], workers: int) -> Iterator[TaskOutcome]:
    for index, outcome in process_map(run_task, [(task,) for task in tasks], workers):
        yield failure(tasks[index], outcome) if isinstance(outcome, BaseException) else outcome


def run_ray(tasks: list[SweepTask], workers: int | None, address: str | None) -> Iterator[TaskOutcome]:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--executor ray needs Ray: install it with pip install 'manifold-probe[ray]'."
        ) from None
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        else:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            except Exception as exc:  # unreachable, refused, or asking for a token (ConnectionError)
                reason = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                raise InputError(
                    f"could not join the Ray cluster at --address {address}: "
                    f"{type(exc).__name__}: {reason[:200]} (check the address, and that this "
                    "machine may connect: a cluster with token authentication needs its token "
                    "in RAY_AUTH_TOKEN)."
                ) from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
        pending = {remote.remote(task): task for task in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as exc:  # the task's worker died or the cluster went away
                    yield failure(task, exc)
    finally:
        if started:
            ray.shutdown()
