# cython: language_level=3
"""Validated conversion of River feature dicts into dense vectors, by feature name."""
from _values cimport to_finite


cpdef double as_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if not finite.

    Bools count as 0/1 (River's convention). ``name`` only labels the error message.
    """
    return to_finite(name, value)


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
        v = to_finite(name, value)
        position = index.get(name)
        if position is None:
            if unknown is None:
                unknown = []
            unknown.append(name)
        else:
            j = position
            out[j] = v
    return unknown
