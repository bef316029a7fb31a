"""Numba kernels: only ``@njit`` code lives in this package.

Kernels take C-contiguous arrays and scalars, validate nothing, log nothing
and allocate nothing in hot loops. The API modules one level up validate
input, pick a kernel, loop over blocks and drive progress.
"""
