# cython: language_level=3
"""Validated conversion of River feature dicts into dense vectors, by feature name."""
from _values cimport MAX_VALUE as _MAX_VALUE, to_finite

# Largest magnitude of an accepted value (the service rejects larger ones as out_of_range).
MAX_VALUE = _MAX_VALUE


cpdef double as_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if it is
    not finite or beyond +-MAX_VALUE. Bools count as 0/1 (River's convention), numpy's too.
    ``name`` only labels the error message.
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
