# cython: language_level=3
"""Validation of River feature values, and the feature names a network does not know."""
from _values cimport MAX_VALUE as _MAX_VALUE, to_finite

# Largest magnitude of an accepted value (the service rejects larger ones as out_of_range).
MAX_VALUE = _MAX_VALUE


cpdef double as_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if it is
    not finite or beyond +-MAX_VALUE. Bools count as 0/1 (River's convention), numpy's too.
    ``name`` only labels the error message.
    """
    return to_finite(name, value)


def unknown_names(dict x, dict index):
    """The names of ``x`` missing from ``index``, in the order of ``x`` (None when there are
    none), after validating every value (as_finite's errors)."""
    cdef list unknown = None
    for name, value in x.items():
        to_finite(name, value)
        if name not in index:
            if unknown is None:
                unknown = []
            unknown.append(name)
    return unknown
