"""Running work units: in this process, or as tasks on a dask.distributed cluster.

A long calculation is cut into *work units* (a batch of probe positions under one or all
frozen-phonon configurations, see :mod:`temsim.solvers.driver`); :func:`execute` runs the
units that a sink does not hold yet and hands each result to the sink as it completes. The
sink reduces the units in a fixed order, so the result does not depend on where or in which
order they ran.

Where they run is an execution setting (:class:`~temsim.settings.ExecutionSettings`):

* ``scheduler=None`` (default): one after the other in this process;
* ``scheduler="local"``: a dask.distributed ``LocalCluster`` of ``workers`` processes
  (default: one per core, each with ``cores / workers`` FFT threads), started for the run
  and closed after it;
* ``scheduler="tcp://host:8786"`` (any dask scheduler address): an existing cluster — a
  workstation's, or one started on a batch system with dask-jobqueue (see
  ``docs/running-big-studies.md``).

The task object (engine, compiled detectors, positions) is sent to every worker once
(``scatter(broadcast=True)``); each worker keeps its copy, so caches an engine builds
(transmission functions, a PRISM S-matrix) serve every unit that worker runs. Units that
share such state (PRISM: one configuration's S-matrix) are sent as one task. An error in a
worker reaches the caller as a :class:`UnitError` naming the unit, with the worker's
traceback.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Callable, Sequence

from temsim.errors import TemsimError

__all__ = ["execute", "session", "UnitError", "local_cluster_layout"]


class UnitError(TemsimError, RuntimeError):
    """A work unit failed in a worker (the message names the unit and holds the worker's traceback)."""


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def local_cluster_layout(workers: int | None, threads: int | None) -> tuple[int, int]:
    """``(worker processes, FFT threads per worker)`` of a local cluster on this machine.

    By default one worker per core with one thread each; with ``workers`` given, the cores are
    shared among them (at least one thread each); ``threads`` overrides the per-worker count.
    """
    cores = _cores()
    n = int(workers) if workers is not None else cores
    return n, int(threads) if threads is not None else max(1, cores // n)


def _run_group(task: Callable, units: Sequence, settings, wrap: bool = True) -> list:
    """Run ``units`` with ``task`` in a worker; with ``wrap`` (a dask worker) failures become
    :class:`UnitError` with the unit and the worker's traceback, else they keep their own type."""
    out = []
    with settings.activate():
        for unit in units:
            try:
                out.append((unit, task(unit)))
            except Exception as err:  # any failure is re-raised with the unit and the worker's traceback
                if not wrap:
                    raise
                raise UnitError(
                    f"work unit {unit} failed in a worker: {type(err).__name__}: {err}\n"
                    f"worker traceback:\n{traceback.format_exc()}"
                ) from None
    return out


def _deliver(results: Sequence, sink, bar) -> None:
    """Hand finished ``(unit, values)`` pairs to the sink and advance the bar by their positions."""
    for unit, values in results:
        sink.write(unit, values)
        bar.update(unit.stop - unit.start)


def _groups(units: Sequence, group: Callable | None) -> list[list]:
    if group is None:
        return [[unit] for unit in units]
    grouped: dict = {}
    for unit in units:
        grouped.setdefault(group(unit), []).append(unit)
    return list(grouped.values())


def execute(units: Sequence, task: Callable, sink, settings, bar, *, group: Callable | None = None) -> None:
    """Run the ``units`` the ``sink`` does not hold and write each result to it.

    Parameters
    ----------
    units : sequence of WorkUnit
        Every unit of the run (those already in the sink are skipped).
    task : callable
        ``task(unit) -> values``; must pickle (it is sent to each worker once).
    sink : MemorySink or StoreSink
        Receives ``sink.write(unit, values)`` as units complete.
    settings : ExecutionSettings
        ``scheduler``, ``workers``, ``threads`` choose where the units run.
    bar : progress bar
        Advanced by the positions of each finished unit.
    group : callable, optional
        ``group(unit) -> key``: units with the same key run as one task, in order, on one
        worker (for engines whose state serves several units).
    """
    done = sink.completed()
    todo = [unit for unit in units if unit.index not in done]
    if not todo:
        return
    if settings.scheduler is None:
        with settings.activate():
            for unit in todo:
                sink.write(unit, task(unit))
                bar.update(unit.stop - unit.start)
        return
    if settings.scheduler == "threads":
        _execute_threads(todo, task, sink, settings, bar, group)
        return
    from distributed import as_completed

    with _client(settings) as (client, worker_settings):
        shared = client.scatter(task, broadcast=True, hash=False)
        futures = [
            client.submit(_run_group, shared, units, worker_settings, pure=False) for units in _groups(todo, group)
        ]
        for future in as_completed(futures):
            _deliver(future.result(), sink, bar)


def _execute_threads(todo: Sequence, task: Callable, sink, settings, bar, group) -> None:
    """``scheduler="threads"``: ``workers`` threads of this process, each running whole groups
    with its share of the cores as FFT threads (FFTs and array arithmetic release the GIL).

    The engine must be safe to share between threads (its caches are locked and its FFT buffers
    are per thread); results reach the sink in this thread as they complete.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    n, threads = local_cluster_layout(settings.workers, settings.threads)
    worker_settings = settings.replace(scheduler=None, workers=None, threads=threads, progress=False)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="temsim-unit") as pool:
        # in this process an error keeps its own type and traceback (no UnitError wrapping)
        pending = {pool.submit(_run_group, task, units, worker_settings, False) for units in _groups(todo, group)}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    _deliver(future.result(), sink, bar)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


@contextlib.contextmanager
def session(settings):
    """Share one local cluster among several runs (a plan's simulations, a sweep).

    With ``scheduler="local"`` the cluster is started once and the block gets settings that
    point at its address (and the per-worker FFT threads); with any other scheduler the
    settings pass through unchanged. The cluster is closed when the block ends.
    """
    if settings is None or settings.scheduler != "local":
        yield settings
        return
    cluster, threads = _local_cluster(settings)
    with cluster:
        yield settings.replace(scheduler=cluster.scheduler_address, workers=None, threads=threads)


def _local_cluster(settings):
    """A LocalCluster for ``scheduler="local"`` (one single-threaded process per worker) and the
    FFT threads each worker should use."""
    from distributed import LocalCluster

    n, threads = local_cluster_layout(settings.workers, settings.threads)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40)
    return cluster, threads


class _client:
    """Context manager: a dask client for the settings (a local cluster is closed afterwards)."""

    def __init__(self, settings):
        self.settings = settings
        self.cluster = None
        self.client = None

    def __enter__(self):
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - dask is a dependency of the cluster extra
            raise TemsimError(
                "scheduler= needs dask.distributed: pip install 'temsim[cluster]' (or dask[distributed])"
            ) from None
        settings = self.settings
        if settings.scheduler == "local":
            self.cluster, threads = _local_cluster(settings)
            self.client = Client(self.cluster)
        else:
            threads = settings.threads
            self.client = Client(settings.scheduler, timeout="30s")
        worker_settings = settings.replace(scheduler=None, workers=None, threads=threads, progress=False)
        return self.client, worker_settings

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False
