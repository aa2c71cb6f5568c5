"""The array-backend seam: one namespace per call, resolved from the data, and one FFT.

Kernels call :func:`array_namespace` on their inputs and use the returned array-API
namespace (numpy, cupy, array_api_strict, ...). FFTs go through :func:`fft2`/:func:`ifft2`
(new arrays) or :class:`FFTPlan` (in-place, the multislice hot path):

* numpy arrays use pyFFTW with FFTW_MEASURE plans (0.2 s at 256², ~9 s at 4096², once per
  shape and thread count). FFTW may time a different algorithm as fastest in another run,
  which changes the last bits of results (~1e-7), so the measured choices ("wisdom") are
  kept in a cache file (:func:`wisdom_path`) and loaded by every later run: the same inputs
  then give bit-identical results from run to run. ``ExecutionSettings(fft_planning=
  "estimate")`` picks algorithms by rule instead (FFTW_ESTIMATE: no timing, no cache, but up
  to 10× slower per FFT at 256² and 512², measured);
* cupy arrays use cuFFT through ``cupyx.scipy.fft`` (in place, plan cache of cupy);
* any other namespace uses its own ``xp.fft``.

Nothing here stores a namespace on an object that outlives a call except an
:class:`FFTPlan`, which is tied to one buffer.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import platform
from typing import Any

import array_api_compat
import numpy as np

from temsim.errors import InputError

__all__ = [
    "array_namespace",
    "is_numpy_namespace",
    "is_cupy_namespace",
    "to_numpy",
    "fft2",
    "ifft2",
    "fftfreq",
    "FFTPlan",
    "default_threads",
    "fft_threads",
    "fft_planning",
    "wisdom_path",
    "get_namespace",
]


#: Seconds FFTW may spend measuring plans for one transform (it keeps the best found so far).
#: Measuring is slow on a loaded machine (seconds even for small 2-thread plans), and FFTW
#: keeps its wisdom, so a repeated shape plans instantly either way.
PLANNING_TIME_LIMIT = 2.0


#: FFT threads chosen by the running calculation's execution settings (None: not set).
_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar("temsim_fft_threads", default=None)


@contextlib.contextmanager
def fft_threads(threads: int | None):
    """Use ``threads`` FFT threads inside the ``with`` block (``None`` keeps the current choice).

    Scoped to the calling context (a :class:`contextvars.ContextVar`), so concurrent
    calculations with different settings do not see each other's choice.
    """
    if threads is None:
        yield
        return
    token = _THREADS.set(int(threads))
    try:
        yield
    finally:
        _THREADS.reset(token)


#: FFTW planner flag chosen by the running calculation's execution settings.
_PLANNING: contextvars.ContextVar[str] = contextvars.ContextVar("temsim_fft_planning", default="measure")

PLANNING_FLAGS = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE"}


@contextlib.contextmanager
def fft_planning(effort: str | None):
    """Plan the FFTs made inside the ``with`` block with ``effort`` (``"estimate"`` or ``"measure"``)."""
    if effort is None:
        yield
        return
    if effort not in PLANNING_FLAGS:
        raise InputError(f"fft_planning must be one of {', '.join(map(repr, PLANNING_FLAGS))}, got {effort!r}")
    token = _PLANNING.set(effort)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def default_threads() -> int:
    """Number of FFT threads: the active execution settings', ``TEMSIM_NUM_THREADS``, or all CPUs."""
    active = _THREADS.get()
    if active is not None:
        return active
    env = os.environ.get("TEMSIM_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def array_namespace(*arrays: Any):
    """Array-API namespace shared by ``arrays`` (python scalars and ``None`` are ignored).

    Raises
    ------
    InputError
        If the arrays come from different libraries (numpy and cupy, say); the message names
        both so the caller knows which input to move.
    """
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (int, float, complex)))
    if not arrays:
        return array_api_compat.array_namespace(np.empty(0))
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as err:
        names = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise InputError(
            f"arrays from different libraries were mixed ({', '.join(names)}); move them all to one "
            "device first (e.g. cupy.asarray(...) for the GPU or temsim.backend.to_numpy(...))"
        ) from err


def get_namespace(device: str = "cpu"):
    """Namespace for a user-facing ``device`` string: ``"cpu"`` (numpy) or ``"gpu"`` (cupy).

    Only public entry points parse device strings; kernels receive arrays.
    """
    if device == "cpu":
        return array_api_compat.array_namespace(np.empty(0))
    if device == "gpu":
        try:
            import cupy  # noqa: F401
        except ImportError as err:
            raise InputError("device='gpu' needs cupy: install temsim with `pip install temsim[gpu]`") from err
        import array_api_compat.cupy as cp_compat

        return cp_compat
    raise InputError(f"device must be 'cpu' or 'gpu', got {device!r}")


def is_numpy_namespace(xp) -> bool:
    """True for numpy (plain or the array-api-compat wrapper)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cupy_namespace(xp) -> bool:
    """True for cupy (plain or the array-api-compat wrapper)."""
    return array_api_compat.is_cupy_namespace(xp)


def to_numpy(array) -> np.ndarray:
    """Copy (or view) any supported array as a numpy array on the host."""
    if isinstance(array, np.ndarray):
        return array
    if array_api_compat.is_cupy_array(array):
        return array.get()
    if np.isscalar(array):
        return np.asarray(array)
    try:
        return np.from_dlpack(array)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return np.asarray(array)


def _pyfftw():
    import pyfftw

    _load_wisdom(pyfftw)
    return pyfftw


_WISDOM_SEPARATOR = b"\n;; temsim wisdom part ;;\n"
_WISDOM_LOADED = False  # process-wide: FFTW's own wisdom is process-wide too


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor()


def wisdom_path() -> str:
    """The file that keeps FFTW's measured plan choices for this machine and pyFFTW version.

    In ``$TEMSIM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/temsim`` or ``~/.cache/temsim``.
    Deleting it is harmless: plans are measured again (and the last bits of results may
    change once).
    """
    import pyfftw

    root = os.environ.get("TEMSIM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "temsim"
    )
    tag = hashlib.sha256(f"{platform.machine()}|{_cpu_model()}|{pyfftw.__version__}".encode()).hexdigest()[:12]
    return os.path.join(root, f"fftw-wisdom-{tag}.txt")


def _load_wisdom(pyfftw) -> None:
    global _WISDOM_LOADED
    if _WISDOM_LOADED:
        return
    _WISDOM_LOADED = True
    try:
        with open(wisdom_path(), "rb") as f:
            parts = tuple(f.read().split(_WISDOM_SEPARATOR))
    except OSError:
        return
    if len(parts) == 3:
        pyfftw.import_wisdom(parts)


def _save_wisdom(pyfftw) -> None:
    """Merge this process's wisdom into the cache file (atomically; skipped if not writable)."""
    path = wisdom_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(_WISDOM_SEPARATOR.join(pyfftw.export_wisdom()))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: plans are measured again next time, nothing else changes


_FFTW_READY = False


def _ensure_fftw_cache() -> None:
    global _FFTW_READY  # process-wide pyFFTW interface cache (wisdom), never numbers
    if not _FFTW_READY:
        pyfftw = _pyfftw()
        pyfftw.interfaces.cache.enable()
        pyfftw.interfaces.cache.set_keepalive_time(60.0)
        _FFTW_READY = True


#: Transforms planned in this process (in-place plans and the pyFFTW interfaces' transforms);
#: the first plan of each may add measured wisdom, which is then saved to the cache file.
_PLANNED: set = set()


def _interface_fft(array, inverse: bool, threads: int | None):
    from pyfftw.interfaces import scipy_fft

    _ensure_fftw_cache()
    workers = threads or default_threads()
    effort = PLANNING_FLAGS[_PLANNING.get()]
    key = (inverse, array.shape, str(array.dtype), workers, effort)
    transform = scipy_fft.ifftn if inverse else scipy_fft.fftn
    out = transform(array, axes=(-2, -1), workers=workers, planner_effort=effort)
    if key not in _PLANNED:
        _PLANNED.add(key)
        if effort == "FFTW_MEASURE":
            _save_wisdom(_pyfftw())
    return out


def fft2(array, *, threads: int | None = None):
    """Forward 2-D FFT over the last two axes, returned as a new array (unnormalized)."""
    xp = array_namespace(array)
    if is_numpy_namespace(xp):
        return _interface_fft(array, False, threads)
    return xp.fft.fftn(array, axes=(-2, -1))


def ifft2(array, *, threads: int | None = None):
    """Inverse 2-D FFT over the last two axes, normalized by 1/N (numpy convention)."""
    xp = array_namespace(array)
    if is_numpy_namespace(xp):
        return _interface_fft(array, True, threads)
    return xp.fft.ifftn(array, axes=(-2, -1))


def fftfreq(n: int, d: float, xp=np):
    """Sample frequencies (1/Å) of an ``n``-point FFT with spacing ``d`` (Å), float64."""
    return xp.asarray(np.fft.fftfreq(n, d))


class FFTPlan:
    """In-place forward/backward 2-D FFTs over the last two axes of one buffer.

    The wave lives in :attr:`buffer` during a multislice run; :meth:`forward` and
    :meth:`backward` transform it in place. The backward transform is *unnormalized*
    (numpy's ``norm="forward"`` convention for the inverse): fold ``1/N`` into the
    propagator.

    Parameters
    ----------
    shape : tuple of int
        Buffer shape ``(..., nx, ny)``.
    xp : namespace
        Array namespace of the data the plan will hold.
    dtype : str
        ``"complex64"`` (default) or ``"complex128"``.
    threads : int, optional
        FFT threads for pyFFTW (default :func:`default_threads`).

    Notes
    -----
    For numpy, the pyFFTW plan is made into a fresh aligned buffer (measuring overwrites the
    buffer, so it is done before any data goes in), with FFTW_MEASURE or, inside
    ``fft_planning("estimate")``, FFTW_ESTIMATE. Measured choices are kept as wisdom for the
    process and in the cache file (:func:`wisdom_path`), so a second plan of the same shape is
    instant and chooses the same algorithm in every later run.
    """

    def __init__(self, shape, xp, dtype: str = "complex64", threads: int | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.xp = xp
        self._kind = "numpy" if is_numpy_namespace(xp) else ("cupy" if is_cupy_namespace(xp) else "generic")
        if dtype not in ("complex64", "complex128"):
            raise InputError(f"FFT dtype must be 'complex64' or 'complex128', got {dtype!r}")
        if self._kind == "numpy":
            pyfftw = _pyfftw()
            threads = threads or default_threads()
            effort = _PLANNING.get()
            flags = (PLANNING_FLAGS[effort],)
            self.buffer = pyfftw.empty_aligned(self.shape, dtype=dtype)
            axes = (-2, -1)
            self._forward = pyfftw.FFTW(
                self.buffer,
                self.buffer,
                axes=axes,
                direction="FFTW_FORWARD",
                flags=flags,
                threads=threads,
                planning_timelimit=PLANNING_TIME_LIMIT,
            )
            self._backward = pyfftw.FFTW(
                self.buffer,
                self.buffer,
                axes=axes,
                direction="FFTW_BACKWARD",
                flags=flags,
                threads=threads,
                normalise_idft=False,
                planning_timelimit=PLANNING_TIME_LIMIT,
            )
            self.buffer[...] = 0
            key = ("plan", self.shape, dtype, threads, effort)
            if effort == "measure" and key not in _PLANNED:
                _PLANNED.add(key)
                _save_wisdom(pyfftw)
        else:
            self.buffer = xp.zeros(self.shape, dtype=getattr(xp, dtype))

    def forward(self) -> None:
        """Forward FFT of :attr:`buffer`, in place."""
        if self._kind == "numpy":
            self._forward.execute()
        elif self._kind == "cupy":
            import cupyx.scipy.fft as cufft

            self.buffer = cufft.fftn(self.buffer, axes=(-2, -1), overwrite_x=True)
        else:
            self.buffer = self.xp.fft.fftn(self.buffer, axes=(-2, -1))

    def backward(self) -> None:
        """Unnormalized inverse FFT of :attr:`buffer`, in place."""
        if self._kind == "numpy":
            self._backward.execute()
        elif self._kind == "cupy":
            import cupyx.scipy.fft as cufft

            self.buffer = cufft.ifftn(self.buffer, axes=(-2, -1), overwrite_x=True, norm="forward")
        else:
            self.buffer = self.xp.fft.ifftn(self.buffer, axes=(-2, -1), norm="forward")

    def load(self, array) -> None:
        """Copy ``array`` (broadcastable to the buffer's shape) into the buffer."""
        if self._kind == "numpy":
            self.buffer[...] = array
        else:
            self.buffer = self.xp.asarray(
                self.xp.broadcast_to(self.xp.asarray(array, dtype=self.buffer.dtype), self.shape),
                copy=True,
            )
