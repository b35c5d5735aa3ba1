"""The standalone C core: builds with CMake alone (no Python headers), passes
its C tests, and passes them again under AddressSanitizer + UBSan. The ctests
include the examples (kernels/examples) and two consumers that install the
build into a scratch prefix and build the examples against it, with
find_package(sparsekit) and with pkg-config, and one that checks the installed
library's symbols (installed_symbols: its globals are sparsekit.h's functions)."""
import os
import re
import shutil
import subprocess
import sys
import warnings
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
    for name in ("consumer_find_package", "consumer_pkg_config", "installed_symbols",
                 "example_mlp_forward"):
        assert name in t.stdout, t.stdout
    # binutils (ld, objcopy) come with the compiler: the static library is localized
    assert not re.search(r"installed_symbols\b[^\n]*Skipped", t.stdout), t.stdout
    if re.search(r"consumer_pkg_config\b[^\n]*Skipped", t.stdout):
        warnings.warn("pkg-config is not installed: the pkg-config consumer ctest was skipped")
    return t.stdout


def _header_version():
    text = (KERNELS / "include" / "sparsekit.h").read_text()
    parts = [re.search(rf"#define SK_VERSION_{p} (\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    string = re.search(r'#define SK_VERSION_STRING "([^"]+)"', text).group(1)
    assert string == ".".join(parts), "sparsekit.h: SK_VERSION_STRING and the parts differ"
    return string


def _header_functions():
    """The functions sparsekit.h declares (its comments stripped)."""
    text = re.sub(r"/\*.*?\*/", "", (KERNELS / "include" / "sparsekit.h").read_text(), flags=re.S)
    return set(re.findall(r"\b(sk_[a-z0-9_]+)\s*\(", text))


def _test_hooks():
    """The functions internal.h declares for the C tests only (SK_TEST_HOOKS)."""
    text = (KERNELS / "src" / "internal.h").read_text()
    blocks = re.findall(r"#ifdef SK_TEST_HOOKS\n(.*?)#endif", text, flags=re.S)
    return set(re.findall(r"\b(sk_[a-z0-9_]+)\s*\(", "".join(blocks)))


def _defined_symbols(lib, *nm_flags, nm="nm"):
    out = subprocess.run([nm, *nm_flags, "--defined-only", str(lib)], check=True,
                         capture_output=True, text=True).stdout
    return {f[2] for f in (line.split() for line in out.splitlines()) if len(f) == 3}


def test_c_version_matches_python_package():
    """sparsekit.h is the C core's one version source (CMake's package version
    and sparsekit.pc are made from it); pyproject.toml and __version__ repeat it."""
    if sys.version_info >= (3, 11):
        import tomllib
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    else:
        project = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(),
                            re.M).group(1)
    init = re.search(r'^__version__ = "([^"]+)"',
                     (ROOT / "sparsekit" / "__init__.py").read_text(), re.M).group(1)
    assert _header_version() == project == init


def test_no_python_header_in_kernels():
    for path in KERNELS.rglob("*"):
        if path.suffix in (".c", ".h"):
            text = path.read_text()
            assert "Python.h" not in text and "numpy" not in text.lower(), path


def test_c_core_builds_and_passes(tmp_path):
    build = tmp_path / "release"
    out = _build_and_test(build)
    assert "tests passed" in out
    version = _header_version()
    assert f'set(PACKAGE_VERSION "{version}")' in (build / "sparsekitConfigVersion.cmake").read_text()
    assert f"\nVersion: {version}\n" in (build / "sparsekit.pc").read_text()
    # A static library shares the user's symbol namespace: it defines as global
    # the header's functions only (the installed_symbols ctest checks the
    # installed copy too), and the test hooks are not in it at all.
    lib = build / "libsparsekit.a"
    assert _defined_symbols(lib, "-g") == _header_functions()
    hooks = _test_hooks()
    assert hooks and not hooks & _defined_symbols(lib)
    # The C tests' library keeps the internal functions (and the hooks) global.
    internal = _defined_symbols(build / "libsparsekit_testing.a", "-g")
    assert hooks <= internal and len(internal - _header_functions()) >= 20


def test_c_core_under_sanitizers(tmp_path):
    """Also the shared-library build (SK_SHARED): the C tests link a static copy
    of the same objects, the examples and the consumers libsparsekit.so."""
    build = tmp_path / "asan"
    out = _build_and_test(build, "-DSK_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=Debug",
                          "-DSK_SHARED=ON")
    assert "tests passed" in out
    # The shared library exports the header's functions and nothing else, and
    # has no test hook.
    assert _defined_symbols(build / "libsparsekit.so", "-D") == _header_functions()
    assert not _test_hooks() & _defined_symbols(build / "libsparsekit.so")


def test_c_core_without_objcopy_keeps_plain_static_library(tmp_path):
    """Without objcopy (or off ELF) the static library is the plain archive, as
    before: configuring says so and does not fail (configure only)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.fail("cmake is required for the C core tests (pip install cmake)")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    r = subprocess.run([cmake, "-S", str(KERNELS), "-B", str(tmp_path / "b"), *gen,
                        f"-DCMAKE_OBJCOPY={tmp_path / 'no-objcopy'}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "libsparsekit.a keeps its internal sk_* functions global" in r.stdout + r.stderr
    # localize.cmake writes its symbol list only when it localizes
    assert not (tmp_path / "b" / "CMakeFiles" / "sparsekit_localize").exists()
    assert (tmp_path / "b" / "CMakeCache.txt").exists()


def test_c_core_arm64_neon_under_qemu(tmp_path):
    """The NEON paths: cross-compiled for AArch64 and run under qemu-user.
    Needs Debian's gcc-aarch64-linux-gnu and qemu-user (.ci/run installs them)."""
    if not (shutil.which("aarch64-linux-gnu-gcc") and shutil.which("qemu-aarch64")):
        pytest.skip("no AArch64 cross compiler / qemu-aarch64 (apt-get install "
                    "gcc-aarch64-linux-gnu qemu-user)")
    toolchain = KERNELS / "cmake" / "aarch64-linux-gnu.cmake"
    build = tmp_path / "arm64"
    out = _build_and_test(build, f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
    assert "tests passed" in out
    nm = shutil.which("aarch64-linux-gnu-nm") or "nm"
    assert _defined_symbols(build / "libsparsekit.a", "-g", nm=nm) == _header_functions()
