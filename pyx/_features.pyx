# cython: language_level=3
"""Validated conversion of River feature dicts into dense vectors, by feature name."""
from numbers import Real

from libc.math cimport isfinite


cpdef double as_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if not finite.

    Bools count as 0/1 (River's convention). ``name`` only labels the error message.
    """
    cdef double v
    if type(value) is float:
        v = <double>value
    elif isinstance(value, Real):
        try:
            v = float(value)
        except OverflowError:
            raise ValueError(f"{name!r} is {value!r}, too large for a float") from None
    else:
        raise TypeError(
            f"{name!r} must be a real number (int or float), got {type(value).__name__}: "
            f"{value!r:.80}")
    if not isfinite(v):
        raise ValueError(f"{name!r} is {value!r}: values must be finite")
    return v


def vectorize(dict x, dict index, double[::1] out):
    """Write x into ``out`` by ``index`` (name -> position); absent features read 0.

    Every value is validated before returning; names missing from ``index`` are returned in
    the order of ``x`` (None when there are none), and their values are not written.
    """
    cdef Py_ssize_t j
    cdef double v
    cdef list unknown = None
    out[:] = 0.0
    for name, value in x.items():
        v = as_finite(name, value)
        position = index.get(name)
        if position is None:
            if unknown is None:
                unknown = []
            unknown.append(name)
        else:
            j = position
            out[j] = v
    return unknown


def equal(const double[::1] a, const double[::1] b):
    """Whether two vectors hold the same values (same length, entries equal as floats)."""
    cdef Py_ssize_t j
    if a.shape[0] != b.shape[0]:
        return False
    for j in range(a.shape[0]):
        if a[j] != b[j]:
            return False
    return True
