"""Numba implementations: the portable backend (no compiled extension needed
beyond Numba's JIT) and a cross-check of the C kernels in the tests."""
