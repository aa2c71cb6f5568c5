"""Memory estimates and limits: one place that every solver and the planner asks.

A run estimates what it will hold before it allocates, compares that with the limit (the
user's ``memory_limit`` or what the machine has available) and refuses with the estimate and
the setting that would fit (:func:`require`).
"""

from __future__ import annotations

from temsim.errors import MemoryLimitError

__all__ = [
    "available_memory",
    "estimate_batch_size",
    "cache_batch_size",
    "require",
    "format_bytes",
    "BYTES_PER_PROBE_PIXEL",
]

#: Bytes of working memory per probe and grid point in a STEM batch (complex64 wave, float32
#: intensity, temporaries of the detector reductions).
BYTES_PER_PROBE_PIXEL = 32

#: Default working memory of one batch: a quarter of the available memory, at most this.
DEFAULT_BATCH_MEMORY = 2 * 1024**3

#: Bytes of waves per multislice batch that stay in a core's caches. Measured on a 2-core AMD
#: EPYC (1 MiB L2 per core, 32 MiB L3), SrTiO3 STEM on a 320² grid (0.8 MB per complex64 wave):
#: 0.62 ms per probe-slice in batches of 2–4 probes against 0.79 ms in one batch of 169 (one
#: thread), 0.38 against 0.50 ms (two threads); larger batches fall out of cache.
CACHE_BATCH_BYTES = 3 * 1024**2


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _cgroup_available() -> int | None:
    """Memory left under a cgroup v2 limit (containers, batch jobs), if there is one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


def _rlimit_available() -> int | None:
    """Address space left under ``RLIMIT_AS`` (``ulimit -v``), if one is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        return max(0, soft - used)
    except (ImportError, OSError, ValueError):  # pragma: no cover - not Linux
        return None


def available_memory() -> int:
    """Bytes of memory this process may still use.

    The smallest of the system's ``MemAvailable``, what a cgroup (container) limit leaves and
    what an address-space limit (``ulimit -v``) leaves; 8 GiB where none can be read.
    """
    limits = [v for v in (_meminfo_available(), _cgroup_available(), _rlimit_available()) if v is not None]
    return min(limits) if limits else 8 * 1024**3


def format_bytes(nbytes: float) -> str:
    """``nbytes`` in GiB (or MiB below 0.1 GiB) for messages.

    >>> format_bytes(3 * 1024**3)
    '3.00 GiB'
    >>> format_bytes(5 * 1024**2)
    '5.0 MiB'
    """
    if nbytes < 0.1 * 1024**3:
        return f"{nbytes / 1024**2:.1f} MiB"
    return f"{nbytes / 1024**3:.2f} GiB"


def estimate_batch_size(gpts, memory_limit: int, cap: int = 256) -> int:
    """Largest number of probes whose working arrays fit in ``memory_limit`` bytes (≥ 1, ≤ ``cap``).

    >>> estimate_batch_size((256, 256), 64 * 1024**2)
    32
    """
    per_probe = BYTES_PER_PROBE_PIXEL * int(gpts[0]) * int(gpts[1])
    return int(max(1, min(int(cap), int(memory_limit) // per_probe)))


def cache_batch_size(gpts, itemsize: int = 8) -> int:
    """Waves per batch that fit :data:`CACHE_BATCH_BYTES` (at least 1).

    >>> cache_batch_size((320, 320))
    3
    >>> cache_batch_size((64, 64))
    96
    """
    return max(1, CACHE_BATCH_BYTES // (int(itemsize) * int(gpts[0]) * int(gpts[1])))


def require(nbytes: float, limit: float, what: str, fix: str) -> None:
    """Refuse (:class:`~temsim.errors.MemoryLimitError`) when ``nbytes`` exceeds ``limit``.

    The message states the estimate, the limit and ``fix``, the setting that would fit.

    >>> require(1024, 2048, "a batch", "use fewer probes")
    >>> require(3 * 1024**3, 1024**3, "the S-matrix", "raise f")
    Traceback (most recent call last):
    ...
    temsim.errors.MemoryLimitError: the S-matrix needs 3.00 GiB, more than the 1.00 GiB allowed; raise f
    """
    if nbytes > limit:
        raise MemoryLimitError(
            f"{what} needs {format_bytes(nbytes)}, more than the {format_bytes(limit)} allowed; {fix}"
        )
