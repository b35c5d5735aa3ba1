"""Describe the machine a result came from: CPU, ISA chosen, threads, versions,
load, and environment variables that change what the peers do."""
import datetime
import os
import platform
import sys
from importlib import metadata

VERSIONED = ("sparsekit", "numpy", "scipy", "torch", "onnxruntime", "onnx", "threadpoolctl",
             "matplotlib")

# read by OpenBLAS when NumPy loads it: they change NumPy's kernels and blocking
OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
OPENBLAS_NOTE = ("{vars} set in the environment: OpenBLAS (NumPy's BLAS) reads it at import "
                 "and may run other kernels than a user gets. For a fair NumPy baseline run "
                 "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE sparsekit bench ...` "
                 "(or bench-model)")


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        mod = sys.modules.get(dist)
        return getattr(mod, "__version__", None)


def environment_warnings():
    present = [v for v in OPENBLAS_ENV if os.environ.get(v)]
    if not present:
        return []
    desc = ", ".join(f"{v}={os.environ[v]}" for v in present)
    return [OPENBLAS_NOTE.format(vars=desc)]


def load_warnings(machine):
    """A note when other processes were already busy: timings will be noisy."""
    load, cpus = machine.get("loadavg"), machine.get("usable_cpus") or 1
    if not load or load[0] < max(1.0, cpus / 2):
        return []
    return [f"the machine was busy before this run (1-minute load average {load[0]:.2f} on "
            f"{cpus} CPUs): other processes compete for the cores, so expect wide spreads; "
            "compare the min column too, or rerun with a larger --repeat when it is quieter"]


def describe_machine():
    import sparsekit

    info = sparsekit.info()
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_usable = os.cpu_count()
    versions = {d: _version(d) for d in VERSIONED}
    versions["sparsekit"] = getattr(sparsekit, "__version__", info.get("version"))
    return {
        "cpu": info["cpu"],
        "arch": info["machine"],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": cpus_usable,
        "cpu_features": [k for k, v in info["cpu_features"].items() if v],
        "isa": info["isa"],
        "kernels": info["kernels"],
        "default_threads": info["num_threads"],
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "env": {v: os.environ.get(v) for v in OPENBLAS_ENV + (
            "OMP_NUM_THREADS", "SPARSEKIT_ISA", "SPARSEKIT_NUM_THREADS")},
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
