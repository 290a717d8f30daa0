# cython: language_level=3
"""The step path from River's calls to the kernel: a feature dict placed into the kernel's
inputs, the network grown for new features, and the learner's bookkeeping (steps taken,
pending growth, the stage schedule), each kept here alone."""
import numpy as np

from libc.math cimport fabs

from _values cimport MAX_VALUE, to_finite
from streamlearn._columnar cimport ColumnarKernel

from streamlearn._features import unknown_names


cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    int PyUnicode_KIND(object)
    void* PyUnicode_DATA(object)


cdef inline bint _same_str(object a, object b) noexcept:
    """a == b for two exact str objects: length, kind, then the bytes, compared here (str's
    own comparison goes through its ordering, and memcmp is a call: feature names are
    short)."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(a)
    cdef const char* p
    cdef const char* q
    if n != PyUnicode_GET_LENGTH(b) or PyUnicode_KIND(a) != PyUnicode_KIND(b):
        return False
    p = <const char*>PyUnicode_DATA(a)
    q = <const char*>PyUnicode_DATA(b)
    for i in range(n * PyUnicode_KIND(a)):
        if p[i] != q[i]:
            return False
    return True


cdef inline double _weight(object w) except? -1.0:
    """A sample weight: a finite number >= 0 (ValueError, TypeError otherwise)."""
    cdef double weight = to_finite("w", w)
    if weight < 0.0:
        raise ValueError(f"'w' is {w!r}: a sample weight must be >= 0")
    return weight


cdef class LearnerCore:
    """The per-step path of a columnar learner (streamlearn.learner.ColumnarLearner derives
    from it). A plain dict of known features steps with one C call into its network's
    kernel: no Python frame between River's call and the kernel. New features grow the
    network (kept for the next call and adopted by the next learn_one: a predict_one alone
    registers nothing), and a stage schedule starts each stage on time.

    Holds the network in use (``_net``), the steps taken (``_steps``), a network grown for
    new features by the last predict_one, and the key order of the dicts placed before."""
    cdef object net
    cdef dict index                # net's feature index
    cdef ColumnarKernel kernel     # net's kernel while it holds it (see _kernel), or None
    cdef object grown              # (new feature names, grown network) of a pending step
    cdef long long stage_every     # steps per stage of a stage schedule, 0 without one
    cdef public long long _steps
    # _place: the inputs, and the keys of the dicts placed before by ``placed_for``
    cdef dict placed_for           # the index the keys were looked up in
    cdef double[::1] x_next        # (m,) the placed inputs
    cdef list keys                 # (m,) str keys of the dicts placed before, in their order
    cdef Py_ssize_t[::1] key_pos   # (m,) the position of each

    @property
    def _net(self):
        return self.net

    @_net.setter
    def _net(self, net):
        self.net = net
        self.index = net.index
        self.kernel = None
        self.grown = None

    def _hold(self, net, long long steps, long long steps_per_stage):
        """Make ``net`` the learner's network, ``steps`` steps into the stream; when it has
        stages, the next one starts every ``steps_per_stage`` steps."""
        self._net = net
        self._steps = steps
        self.stage_every = steps_per_stage if net.config.columns_per_stage else 0

    cdef inline ColumnarKernel _kernel(self):
        """The network's kernel, kept here while the network keeps it (it drops and
        rebuilds it on reset_state and set_stage: the dropped one is ``detached``): two
        attribute lookups fewer per call. Only for a network with features: an empty one
        builds its kernel for nothing (a service's new learner grows on its first event)."""
        if self.kernel is None or self.kernel.detached:
            self.kernel = self.net.kernel
        return self.kernel

    # ---- River's calls ----------------------------------------------------------------------

    def predict_one(self, x):
        """Prediction for the state after x; changes nothing."""
        cdef ColumnarKernel kernel
        if type(x) is dict and self.index:
            if not self._place(x, self.index):
                kernel = self._kernel()
                return kernel.forward_checked(self._inputs())
        return self._forward(x)[1]

    def learn_one(self, x, y, w=1.0):
        """Advance the state with x, then take a gradient step on 1/2 (y - prediction)^2
        (ColumnarTD learns from its TD error instead), scaled by the sample weight w >= 0."""
        if self._step_known(x, y, True, w) is None:
            self._step_general(x, y, True, w)

    def _step(self, x, y, bint learn, w=1.0):
        """One state transition with x (learning from y if ``learn``, its gradient scaled by
        the sample weight w; y and w are validated here); returns the prediction and the
        error delta it learned from, or None when it took no learning step (observe_one;
        ColumnarTD at an episode's first step)."""
        y_pred = self._step_known(x, y, learn, w)
        if y_pred is None:
            return self._step_general(x, y, learn, w)
        return y_pred, self.kernel.delta if self.kernel.learned else None

    def _pending(self, x):
        """The network (the learner's, or one grown for x's new features) whose kernel holds
        the forward step on x, pending; changes nothing."""
        return self._forward(x)[0]

    def reset_state(self):
        """Start a new sequence: column states and traces back to 0; parameters are kept."""
        self.net.reset_state()
        self.grown = None

    def _stepped(self, net, long long steps):
        """The bookkeeping after ``steps`` steps on ``net``: it becomes the learner's network,
        the steps are counted, and the next stage starts when they reached its first step."""
        cdef long long stage
        if net is not self.net:
            self._net = net
        self.grown = None
        self._steps += steps
        if steps and self.stage_every and self._steps % self.stage_every == 0:
            stage = self._steps // self.stage_every
            if stage < net.config.n_stages:
                net.set_stage(stage)

    # ---- the two paths ----------------------------------------------------------------------

    cdef object _step_known(self, x, y, bint learn, w):
        """The step of a plain dict of known features without a stage schedule: validate y,
        place x, reuse a pending forward step on the same inputs, commit. Returns the
        prediction, or None (having changed nothing) where it does not apply."""
        cdef ColumnarKernel kernel
        cdef double target, weight, y_pred
        if type(x) is not dict or self.stage_every or not self.index:
            return None
        target = to_finite("y", y)
        weight = _weight(w)
        if self._place(x, self.index):
            return None
        kernel = self._kernel()
        y_pred = kernel.forward_checked(self._inputs())
        kernel.commit_checked(target, learn, weight)
        self.grown = None
        self._steps += 1
        return y_pred

    cdef tuple _step_general(self, x, y, bint learn, w):
        """``_step`` for any x (new features: the learner grows) and with a stage schedule,
        which it advances."""
        cdef ColumnarKernel kernel
        cdef double target = to_finite("y", y), weight = _weight(w)
        net, y_pred = self._forward(x)
        kernel = net.kernel
        delta = kernel.commit_checked(target, learn, weight)
        if not kernel.learned:  # read before set_stage drops the kernel
            delta = None
        self._stepped(net, 1)
        return y_pred, delta

    cdef tuple _forward(self, x):
        """The network that steps on ``x`` with its forward step pending, and the prediction.
        The kernel reuses the pending step of a predict_one with the same x. When x has new
        features, the step runs on a grown network, kept for the next call."""
        cdef ColumnarKernel kernel
        if not isinstance(x, dict):
            raise TypeError(f"x must be a dict of feature values, got {type(x).__name__}")
        if type(x) is not dict:  # the placement reads exact dicts (OrderedDict, subclasses)
            x = dict(x)
        net = self.net
        # an empty network knows no feature: its kernel would only report that
        if (self.index or not x) and not self._place(x, self.index):
            kernel = net.kernel
            return net, kernel.forward_checked(self._inputs())
        new = unknown_names(x, self.index)  # validates every value
        if self.grown is None or self.grown[0] != new:
            self.grown = (new, net.grow(new))
        net = self.grown[1]
        self._place(x, net.index)
        kernel = net.kernel
        return net, kernel.forward_checked(self._inputs())

    # ---- placing a dict ---------------------------------------------------------------------

    cdef inline const double* _inputs(self):
        """The inputs _place wrote (NULL for a network without inputs)."""
        return &self.x_next[0] if self.x_next.shape[0] else NULL

    cdef bint _place(self, dict x, dict index) except -1:
        """x into ``x_next`` by ``index`` (name -> position; absent features read 0),
        validated value by value (TypeError, ValueError); True when x names a feature
        ``index`` lacks (``x_next`` is then incomplete: nothing may run on it).

        A stream's dicts mostly list the same str keys in the same order: the i-th key is
        first compared with the i-th str key placed before (``keys``), by identity or by
        its bytes, and only looked up in ``index`` when it differs (a dict lookup of a key
        that is equal but not the same object hashes and compares it)."""
        cdef Py_ssize_t i = 0, j, m = len(index)
        cdef double v
        cdef double* nxt
        cdef list keys
        cdef object key
        if index is not self.placed_for:  # keys looked up in another index: start over
            self.placed_for = index
            self.x_next = np.zeros(m)
            self.keys = [None] * m
            self.key_pos = np.zeros(m, np.intp)
        keys = self.keys
        nxt = &self.x_next[0] if m else NULL
        for j in range(m):
            nxt[j] = 0.0
        for name, value in x.items():
            if type(value) is float and fabs(<double>value) <= MAX_VALUE:  # to_finite's common
                v = <double>value                                          # case (NaN: False)
            else:
                v = to_finite(name, value)
            key = keys[i] if i < m else None
            if key is not None and (name is key or (type(name) is str
                                                    and _same_str(name, key))):
                j = self.key_pos[i]
            else:
                position = index.get(name)
                if position is None:
                    return True
                j = position
                if not 0 <= j < m:
                    raise IndexError(f"feature {name!r} has position {j} outside 0..{m - 1}")
                if i < m and type(name) is str:
                    keys[i] = name
                    self.key_pos[i] = j
            nxt[j] = v
            i += 1
        return False
