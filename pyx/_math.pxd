# cython: language_level=3
"""Header-only math helpers shared by the kernels."""
from libc.math cimport exp


cdef inline double sigmoid(double z) noexcept nogil:
    """Logistic function without overflow for large |z|."""
    cdef double e
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)
