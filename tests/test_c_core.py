"""The standalone C core: builds with CMake alone (no Python headers), passes
its C tests, and passes them again under AddressSanitizer + UBSan."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"


def _build_and_test(build_dir, *extra):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is required for the C core tests (pip install cmake)")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([cmake, "-S", str(KERNELS), "-B", str(build_dir), *gen, *extra],
                   check=True, capture_output=True, text=True)
    b = subprocess.run([cmake, "--build", str(build_dir), "-j", "2"], capture_output=True,
                       text=True)
    assert b.returncode == 0, b.stdout + b.stderr
    env = dict(os.environ, OMP_NUM_THREADS="2")
    t = subprocess.run(["ctest", "--test-dir", str(build_dir), "--output-on-failure"],
                       capture_output=True, text=True, env=env)
    assert t.returncode == 0, t.stdout + t.stderr
    return t.stdout


def test_no_python_header_in_kernels():
    for path in KERNELS.rglob("*"):
        if path.suffix in (".c", ".h"):
            text = path.read_text()
            assert "Python.h" not in text and "numpy" not in text.lower(), path


def test_c_core_builds_and_passes(tmp_path):
    out = _build_and_test(tmp_path / "release")
    assert "tests passed" in out


def test_c_core_under_sanitizers(tmp_path):
    out = _build_and_test(tmp_path / "asan", "-DSK_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug")
    assert "tests passed" in out


def test_c_core_arm64_neon_under_qemu(tmp_path):
    """The NEON paths: cross-compiled for AArch64 and run under qemu-user.
    Needs Debian's gcc-aarch64-linux-gnu and qemu-user (.ci/run installs them)."""
    if not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")):
        pytest.skip("no AArch64 cross compiler / qemu-aarch64 (apt-get install "
                    "gcc-aarch64-linux-gnu qemu-user)")
    toolchain = KERNELS / "cmake" / "aarch64-linux-gnu.cmake"
    out = _build_and_test(tmp_path / "arm64", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
    assert "tests passed" in out
