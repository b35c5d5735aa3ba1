# cython: language_level=3
"""Thin typed bindings to the C core (kernels/). Private: use sparsekit.*.

Data flow::

    numpy arrays --(formats.py validates once, freezes arrays)--> format object
    sparsekit.linear(x, w) --(ops.py checks x, allocates y)--> _core.<kernel>
    _core: O(1) shape/dtype checks, GIL released, C kernel (dispatch.c picks ISA)

The O(1) checks here are the last line of defence: whatever Python passes,
the C side is never asked to read or write outside the arrays it is given.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t

from sparsekit._kernels cimport *

cnp.import_array()

VERSION = SK_VERSION_STRING.decode()


class KernelError(RuntimeError):
    """The C core reported an error it should never see from validated input."""


cdef int check(int rc) except -1:
    if rc == SK_OK:
        return 0
    if rc == SK_ERR_NOMEM:
        raise MemoryError("sparsekit: kernel scratch allocation failed")
    raise KernelError(f"sparsekit C core returned error {rc}")


include "_core_dispatch.pxi"
include "_core_spmm_f32.pxi"
include "_core_sell_f32.pxi"
include "_core_gemm_f32.pxi"
include "_core_qgemm.pxi"
include "_core_spint8.pxi"
include "_core_attention.pxi"
include "_core_quant_lookup.pxi"
include "_core_quant_norm.pxi"
include "_core_minmax.pxi"
