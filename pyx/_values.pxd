# cython: language_level=3
"""Header-only validation of a feature value, shared by the kernels (no runtime import)."""
from libc.math cimport fabs, isfinite

cdef extern from *:
    """
    /* Largest magnitude of an accepted input or target: its square, and the products the
       statistics and traces form from it, stay far below the kernel's limit on stored
       values (1e150), so no accepted value can make a state infinite. */
    #define SL_MAX_VALUE 1e50
    """
    double MAX_VALUE "SL_MAX_VALUE"


cdef inline double to_finite(object name, object value) except? -1.0:
    """``value`` as a C double; TypeError if it is not a real number, ValueError if it is
    not finite or beyond +-MAX_VALUE (the message then says "out of range").

    Bools count as 0/1 (River's convention), numpy's too. ``name`` only labels the error
    message.
    """
    cdef double v
    if type(value) is float:
        v = <double>value
    else:
        from numbers import Real
        if not isinstance(value, Real):
            from numpy import bool_
            if not isinstance(value, bool_):
                raise TypeError(
                    f"{name!r} must be a real number (int or float), got "
                    f"{type(value).__name__}: {value!r:.80}")
        try:
            v = float(value)
        except OverflowError:
            raise ValueError(f"{name!r} is {value!r:.80}: out of range (too large for a "
                             "float)") from None
    if not isfinite(v):
        raise ValueError(f"{name!r} is {value!r}: values must be finite")
    if fabs(v) > MAX_VALUE:
        raise ValueError(f"{name!r} is {v!r}: out of range (values must be within "
                         f"+-{MAX_VALUE:g})")
    return v
