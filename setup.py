"""Build the C kernels in kernels/ and the Cython bindings in sparsekit/.

Every kernels/src/<op>/<isa>.c is compiled with that ISA's flags only (no
-march=native): the library runs on any CPU of the architecture and picks the
best path at run time (kernels/src/dispatch.c).
"""
import os
import platform
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
ARM64 = platform.machine().lower() in ("aarch64", "arm64")

ISA_FLAGS = {
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl",
               "-mavx512dq"],
}
ISA_FLAGS["avx512vnni"] = ISA_FLAGS["avx512"] + ["-mavx512vnni"]
# -ffp-contract=off: no fma fused from a*b + c (clang does so even with -std=c11),
# so every compiler gives the scalar reference's bits
COMMON_FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fopenmp", "-Wall",
                "-Wno-unused-parameter", "-Wno-unused-function"]


def kernel_sources():
    """C sources for this machine: generic files plus the ISA files it can build."""
    out = []
    for path in sorted(glob(os.path.join("kernels", "src", "**", "*.c"), recursive=True)):
        isa = os.path.splitext(os.path.basename(path))[0]
        if isa in ISA_FLAGS and not X86:
            continue
        if isa == "neon" and not ARM64:
            continue
        out.append(path)
    return out


class BuildExt(build_ext):
    """Compile each kernel file with its own ISA flags, then link them in."""

    def build_extension(self, ext):
        objects = []
        for src in kernel_sources():
            isa = os.path.splitext(os.path.basename(src))[0]
            flags = COMMON_FLAGS + ISA_FLAGS.get(isa, [])
            objects += self.compiler.compile(
                [src], output_dir=self.build_temp,
                include_dirs=["kernels/include", "kernels/src"], extra_postargs=flags)
        ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)


core = Extension(
    "sparsekit._core",
    sources=["sparsekit/_core.pyx"],
    # relink when any kernel source or header changes, not only the .pyx
    depends=kernel_sources() + glob(os.path.join("kernels", "**", "*.h"), recursive=True)
    + glob(os.path.join("sparsekit", "*.pxi")) + glob(os.path.join("sparsekit", "*.pxd")),
    include_dirs=[numpy.get_include(), "kernels/include"],
    extra_compile_args=["-O3", "-fopenmp", "-Wno-unused-function", "-ffp-contract=off"],
    extra_link_args=["-fopenmp"],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
)

setup(
    ext_modules=cythonize([core], language_level=3,
                          compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
