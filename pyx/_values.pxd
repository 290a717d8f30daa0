# cython: language_level=3
"""Header-only validation of a feature value, shared by the kernels (no runtime import)."""
from libc.math cimport isfinite


cdef inline double to_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if not finite.

    Bools count as 0/1 (River's convention). ``name`` only labels the error message.
    """
    cdef double v
    if type(value) is float:
        v = <double>value
    else:
        from numbers import Real
        if not isinstance(value, Real):
            raise TypeError(
                f"{name!r} must be a real number (int or float), got {type(value).__name__}: "
                f"{value!r:.80}")
        try:
            v = float(value)
        except OverflowError:
            raise ValueError(f"{name!r} is {value!r}, too large for a float") from None
    if not isfinite(v):
        raise ValueError(f"{name!r} is {value!r}: values must be finite")
    return v
