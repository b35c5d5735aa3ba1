"""fp32 CSR x dense with Numba: y[m, n] = act(sum_p data[p] * x[m, indices[p]] + b[n]).

Rows of W are spread over threads with prange; each row's nonzeros are
applied to all M activation rows, so the weight is read once."""
import numba
import numpy as np


@numba.njit(parallel=True, nogil=True, fastmath=False)
def _linear_csr(indptr, indices, data, x, bias, has_bias, relu, out):
    m = x.shape[0]
    n_rows = indptr.shape[0] - 1
    for n in numba.prange(n_rows):
        acc = np.zeros(m, dtype=np.float32)
        for p in range(indptr[n], indptr[n + 1]):
            v = data[p]
            c = indices[p]
            for i in range(m):
                acc[i] += v * x[i, c]
        for i in range(m):
            y = acc[i]
            if has_bias:
                y += bias[n]
            if relu and y < 0:
                y = np.float32(0.0)
            out[i, n] = y
    return out


def linear_csr(indptr, indices, data, n, x, bias, act):
    out = np.empty((x.shape[0], n), dtype=np.float32)
    b = bias if bias is not None else np.zeros(0, dtype=np.float32)
    return _linear_csr(indptr, indices, data, x, b, bias is not None, act == 1, out)
