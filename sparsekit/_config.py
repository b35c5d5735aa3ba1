"""Run-time configuration: the forced ISA, thread count, and sparsekit.info().

SPARSEKIT_ISA, SPARSEKIT_NUM_THREADS and SPARSEKIT_THREAD_BACKOFF are read
once, at import. Threads can
also be limited with threadpoolctl: sparsekit registers a controller for its
own OpenMP pool, so ``threadpool_limits(1)`` covers sparsekit's kernels too.
"""
import os
import platform

import numpy as np

from sparsekit._native import AVAILABLE as _COMPILED, IMPORT_ERROR as _CORE_ERROR
from sparsekit._native import core as _core

KERNEL_FAMILIES = ("spmm_f32", "quantize_u8", "qgemm_u8s8", "spmm_u8s8", "gelu_f32",
                   "attention_f32", "layernorm_f32", "spmv_sell_f32", "gemm_f32")
ISA_NAMES = (tuple(_core.isa_names()) if _COMPILED
             else ("scalar", "avx2", "avx512", "avx512vnni", "neon"))
_MAX_THREADS = 2**31 - 1


def set_isa(name):
    """Force every kernel family to instruction set `name` (or the best below
    it that the family has). Raises RuntimeError if this CPU lacks it.
    ``set_isa("auto")`` goes back to the default, the best ISA this CPU has.
    Names (case-insensitive): "auto", "scalar", "avx2", "avx512", "avx512vnni",
    "neon"; anything else raises ValueError, a non-str TypeError. Returns None;
    info()["kernels"] shows what each family then runs. Without the compiled
    C core it raises ImportError."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        key = _core.best_isa()
    elif key not in ISA_NAMES:
        raise ValueError(f"name: expected 'auto' or one of {list(ISA_NAMES)}, got {name!r}")
    _core.set_isa(key)


def get_isa():
    """The ISA ceiling in force: the best this CPU has unless set_isa was used."""
    return _core.get_isa()


def set_num_threads(n):
    """Use `n` threads in sparsekit's kernels (n >= 1); problems too small to
    split still run on one. Raises TypeError for a non-int (bools included),
    ValueError for n < 1, ImportError without the compiled C core. Also
    SPARSEKIT_NUM_THREADS (read at import) and threadpoolctl's limits."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected at least 1 thread, got {n}")
    if n > _MAX_THREADS:  # the C core counts threads in an int
        raise ValueError(f"n: expected at most {_MAX_THREADS} threads, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads():
    """Threads sparsekit's kernels use for problems large enough to split."""
    return _core.get_num_threads()


def set_thread_backoff(on):
    """Turn the thread backoff on (the default) or off. On: when a kernel's
    worker thread starts more than 0.5 ms late twice in a row (another process
    holds the other cores), calls run on one thread for 0.25 s (doubling up to
    2 s while later probes stay late), since the call would otherwise wait for
    the late thread. Results do not change, only the thread count. Also
    SPARSEKIT_THREAD_BACKOFF=0 (read at import). `on` must be a bool
    (TypeError otherwise); info()["thread_backoff"] shows the state."""
    if not isinstance(on, (bool, np.bool_)):
        raise TypeError(f"on: expected a bool, got {type(on).__name__}")
    _core.set_thread_backoff(bool(on))


def get_thread_backoff():
    """Whether the thread backoff (see set_thread_backoff) is on."""
    return _core.thread_backoff_state()["enabled"]


def info():
    """What was detected and chosen: CPU features, ISA per kernel family, threads.

    Returns a dict with the keys "version", "compiled", "machine", "cpu",
    "cpu_features" ({isa: bool}), "best_isa", "isa" (the ceiling in force),
    "kernels" ({family: isa it runs}), "num_threads" and "thread_backoff"
    ({"enabled", "active", "last_late_us", "seconds_since_last_late"}).
    ``compiled`` is False when the C core is missing (the Numba backend runs):
    then "core_error" says why, and the ISA, kernel and backoff entries are None."""
    if not _COMPILED:
        return {
            "version": _package_version(), "compiled": False,
            "core_error": str(_CORE_ERROR), "machine": platform.machine(),
            "cpu": _cpu_model(), "cpu_features": {}, "best_isa": None, "isa": None,
            "kernels": {family: None for family in KERNEL_FAMILIES}, "num_threads": 1,
            "thread_backoff": None,
        }
    return {
        "version": _core.VERSION,
        "compiled": True,
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_features": {name: _core.cpu_supports(name) for name in ISA_NAMES},
        "best_isa": _core.best_isa(),
        "isa": _core.get_isa(),
        "kernels": {family: _core.family_isa(family) for family in KERNEL_FAMILIES},
        "num_threads": _core.get_num_threads(),
        "thread_backoff": _thread_backoff_info(),
    }


def _thread_backoff_info():
    s = _core.thread_backoff_state()
    # last_late_us: how late the last late worker started (0.0 if none yet)
    return {"enabled": s["enabled"], "active": s["active"],
            "last_late_us": round(s["last_late_us"], 1),
            "seconds_since_last_late": (round(s["since_last_late_s"], 3)
                                        if s["since_last_late_s"] >= 0 else None)}


def _package_version():
    from sparsekit import __version__

    return __version__


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _apply_environment():
    isa = os.environ.get("SPARSEKIT_ISA", "").strip()
    if isa:
        try:
            set_isa(isa)
        except (ValueError, RuntimeError) as e:
            raise RuntimeError(f"SPARSEKIT_ISA={isa!r}: {e}") from None
    threads = os.environ.get("SPARSEKIT_NUM_THREADS", "").strip()
    if threads:
        try:
            set_num_threads(int(threads))
        except ValueError as e:
            raise RuntimeError(f"SPARSEKIT_NUM_THREADS={threads!r}: {e}") from None
    backoff = os.environ.get("SPARSEKIT_THREAD_BACKOFF", "").strip().lower()
    if backoff in ("0", "off", "false", "no"):
        set_thread_backoff(False)
    elif backoff not in ("", "1", "on", "true", "yes"):
        raise RuntimeError(f"SPARSEKIT_THREAD_BACKOFF={backoff!r}: expected 0 or 1")


def _register_threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return
    if not hasattr(threadpoolctl, "register"):
        return

    class SparsekitController(threadpoolctl.LibController):
        user_api = "openmp"
        internal_api = "sparsekit"
        filename_prefixes = ("_core",)
        check_symbols = ("sk_get_num_threads", "sk_set_num_threads")

        def get_num_threads(self):
            return self.dynlib.sk_get_num_threads()

        def set_num_threads(self, num_threads):
            self.dynlib.sk_set_num_threads(int(num_threads))

        def get_version(self):
            return _core.VERSION

        def set_additional_attributes(self):
            pass

    threadpoolctl.register(SparsekitController)


if _COMPILED:  # without the C core there is no ISA or thread pool to configure
    _apply_environment()
    _register_threadpoolctl()
