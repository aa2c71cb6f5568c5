"""Execution settings: how a calculation runs, never what it computes.

One frozen :class:`ExecutionSettings` is accepted by every solver (``multislice``, ``scan``,
PRISM, Bloch) and by the planner. Physics parameters (energy, sampling, aberrations, …)
never carry these, and these never change a number beyond floating-point rounding: the
device, precision, batch size, memory limit, FFT threads and progress bars.

>>> settings = ExecutionSettings(threads=1, progress=False)
>>> settings.replace(batch_size=64).batch_size
64
>>> ExecutionSettings(dtype="float32")
Traceback (most recent call last):
...
temsim.errors.InputError: dtype must be one of 'complex64', 'complex128', got 'float32'
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Literal

from temsim.backend import fft_planning, fft_threads, get_namespace
from temsim.checks import as_choice, as_number
from temsim.errors import InputError
from temsim.memory import DEFAULT_BATCH_MEMORY, available_memory

__all__ = ["ExecutionSettings", "resolve_settings"]

Device = Literal["cpu", "gpu"]
Precision = Literal["complex64", "complex128"]


@dataclass(frozen=True)
class ExecutionSettings:
    """How to run a calculation (see the module docstring).

    Parameters
    ----------
    device : {"cpu", "gpu"}
        ``"gpu"`` runs on CuPy arrays (``pip install temsim[gpu]``). Default ``"cpu"``.
    dtype : {"complex64", "complex128"}
        Precision of waves (intensities are float32 / float64 to match). Default complex64.
    batch_size : int, optional
        Probes (STEM) propagated together. Default: as many as fit in ``memory_limit``.
    memory_limit : int, optional
        Bytes of working memory a run may use. Default: a quarter of the available memory,
        at most 2 GiB, for a STEM batch; half the available memory for a PRISM S-matrix.
    threads : int, optional
        FFT threads. Default: every CPU this process may use.
    progress : bool, optional
        Progress bars. Default: shown for runs of more than one batch.
    fft_planning : {"measure", "estimate"}
        How FFTW chooses its algorithms. ``"measure"`` (default) times candidates once per
        shape and thread count (seconds for large grids) and keeps the choices in a cache file
        (:func:`temsim.backend.wisdom_path`) that later runs load, so the same inputs and seeds
        give bit-identical numbers from run to run on one machine. ``"estimate"`` picks them
        by rule: no timing and no cache file, equally reproducible, but up to 10× slower per
        FFT on some grids (measured at 256² and 512²).
    scheduler : {None, "threads", "local"} or str, optional
        Where the work units of scans run (:mod:`temsim.compute`): ``None`` (default) in this
        process — for the multislice engine on the CPU as one single-threaded probe stream per
        FFT thread (as ``"threads"``; measured 1.2–1.4× faster than threaded FFTs on 2 cores),
        otherwise one unit after the other with ``threads`` FFT threads (also when
        ``batch_size`` is given); ``"threads"`` in this process, ``workers`` units at a time
        (default one per core), each on one core; ``"local"`` a dask.distributed LocalCluster
        started for the run; a scheduler
        address (``"tcp://host:8786"``) an existing cluster. Results equal a serial run to
        float32 rounding. A single plane wave (``multislice``) always runs in this process.
    workers : int, optional
        Worker processes of ``scheduler="local"`` or worker threads of ``scheduler="threads"``
        (default: one per core; the cores are shared out as FFT threads).
    """

    device: Device = "cpu"
    dtype: Precision = "complex64"
    batch_size: int | None = None
    memory_limit: int | None = None
    threads: int | None = None
    progress: bool | None = None
    fft_planning: Literal["measure", "estimate"] = "measure"
    scheduler: str | None = None
    workers: int | None = None

    def __post_init__(self):
        as_choice("device", self.device, ("cpu", "gpu"))
        as_choice("fft_planning", self.fft_planning, ("measure", "estimate"))
        as_choice("dtype", self.dtype, ("complex64", "complex128"))
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size", as_number("batch_size", self.batch_size, integer=True, minimum=1))
        if self.memory_limit is not None:
            object.__setattr__(
                self, "memory_limit", as_number("memory_limit", self.memory_limit, "bytes", integer=True, minimum=1)
            )
        if self.threads is not None:
            object.__setattr__(self, "threads", as_number("threads", self.threads, integer=True, minimum=1))
        if self.scheduler is not None and (
            not isinstance(self.scheduler, str)
            or not (self.scheduler in ("local", "threads") or "://" in self.scheduler)
        ):
            raise InputError(
                f"scheduler must be None, 'threads', 'local' or a dask scheduler address such as 'tcp://host:8786', "
                f"got {self.scheduler!r}"
            )
        if self.workers is not None:
            object.__setattr__(self, "workers", as_number("workers", self.workers, integer=True, minimum=1))
            if self.scheduler not in ("local", "threads"):
                raise InputError(
                    "workers applies to scheduler='local' or 'threads' (an existing cluster has its own workers)"
                )
        if self.progress is not None and not isinstance(self.progress, bool):
            raise InputError(f"progress must be True, False or None, got {self.progress!r}")

    def replace(self, **changes) -> ExecutionSettings:
        """A copy with ``changes`` (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InputError(
                f"unknown execution setting(s) {sorted(unknown)}; valid ones are "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def xp(self):
        """Array namespace of the device (numpy or cupy)."""
        return get_namespace(self.device)

    def batch_memory(self) -> int:
        """Bytes a STEM batch may use: ``memory_limit`` or min(2 GiB, available / 4)."""
        if self.memory_limit is not None:
            return int(self.memory_limit)
        return int(min(DEFAULT_BATCH_MEMORY, available_memory() // 4))

    def show_progress(self, units: int) -> bool:
        """Whether to show a progress bar for a run of ``units`` batches or simulations."""
        return bool(self.progress) if self.progress is not None else units > 1

    @contextlib.contextmanager
    def activate(self):
        """Apply the thread count and FFT planning to the FFTs run inside the ``with`` block."""
        with fft_threads(self.threads), fft_planning(self.fft_planning):
            yield self


def resolve_settings(settings: ExecutionSettings | None = None, **legacy) -> ExecutionSettings:
    """``settings`` (default :class:`ExecutionSettings`) with the old keyword spellings folded in.

    Functions used to take ``device``, ``dtype``, ``batch_size``, ``memory_limit`` and
    ``progress`` one by one; those keywords keep working: a value that is not ``None`` replaces
    the setting. Giving both ``settings`` and a conflicting keyword is refused.
    """
    base = ExecutionSettings() if settings is None else settings
    if not isinstance(base, ExecutionSettings):
        raise InputError(f"settings must be a temsim.ExecutionSettings, got {type(settings).__name__}")
    changes = {k: v for k, v in legacy.items() if v is not None}
    if settings is not None:
        clash = sorted(k for k, v in changes.items() if getattr(settings, k) != v)
        if clash:
            raise InputError(f"{', '.join(clash)} given both as keyword and, differently, in settings=; give each once")
    return base.replace(**changes) if changes else base
