"""A columnar network's arrays, feature index and compiled kernel, and how it grows.

The kernel (``streamlearn._columnar``) only views numpy arrays owned here. Adding features
builds a new :class:`ColumnarNetwork` with wider arrays, so a network object never changes
shape: a caller can prepare a grown network, use it for a pure prediction, and adopt it later.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import numpy as np

from streamlearn._columnar import (COLUMN_MODES, SCALARS, VALUE_LIMIT, VALUE_LIMIT_F32,
                                   ColumnarKernel)
from streamlearn.serialization import SerializationError

__all__ = ["ColumnarNetwork", "NetworkConfig", "INACTIVE", "FROZEN", "LEARNING",
           "column_array", "empty_columns"]

# The arrays that the configuration fixes, not learned (every other array is learned state),
# by their paths in the state dict.
STRUCTURE = {"lat_ptr": "lateral/indptr", "lat_src": "lateral/indices",
             "st_ptr": "stages/indptr", "mode": "stages/mode"}
# The most classes a classification head takes: its arrays grow with them (logits x columns).
MAX_CLASSES = 10_000
# Column modes (the kernel's ``mode`` array), as pyx/_loops.h numbers them.
INACTIVE, FROZEN, LEARNING = COLUMN_MODES
# Per-parameter arrays: value, the two RTRL traces, RMSProp moment, the rule's second trace.
_KINDS = ("", "TH", "TC", "V", "AUX")
# Per-input normalisation statistics (the kernel's arrays of length m).
_INPUT_STATISTICS = ("x_mean", "x_var", "x_count", "x_clipped")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Everything that fixes a network's behaviour besides its learned state."""

    n_columns: int
    seed: int
    step_size: float
    optimizer: str
    normalize: bool
    init_scale: float
    lateral_density: float = 0.0
    rule: str = "regression"          # "regression", "meta" or "td"
    head_step_size: float = 0.0       # meta: the LMS step of the head
    gamma: float = 0.0                # td
    lambda_: float = 0.0              # td
    columns_per_stage: int = 0        # 0: one stage holding every column
    stage_lag: int = 0                # 1: stages read the earlier stages' previous states
    decay: float = 0.9999
    var_floor: float = 1e-8
    forget_bias: float = 0.0          # added to every forget-gate bias at initialisation
    dtype: str = "float64"            # of the own parameters, traces, moments ("float32")

    def kernel_args(self) -> dict:
        return {"optimizer": self.optimizer, "step_size": self.step_size,
                "normalize": self.normalize, "rule": self.rule,
                "head_step_size": self.head_step_size, "gamma": self.gamma,
                "lambda_": self.lambda_, "decay": self.decay, "var_floor": self.var_floor,
                "stage_lag": bool(self.stage_lag)}

    @property
    def per_stage(self) -> int:
        return self.columns_per_stage or self.n_columns

    @property
    def n_stages(self) -> int:
        return self.n_columns // self.per_stage

    @property
    def aux(self) -> bool:
        return self.rule in ("meta", "td")


def n_logits(n_classes: int) -> int:
    """Logits of a classification head over ``n_classes`` classes: one (logistic) for up to
    two classes, else one per class (softmax)."""
    return 1 if n_classes <= 2 else n_classes


def class_label(label):
    """``label`` as a class label a state can hold (JSON: str, int, bool or a finite float;
    numpy scalars as Python's), or TypeError."""
    if isinstance(label, np.generic):
        label = label.item()
    if not isinstance(label, (str, int, float)) or (
            isinstance(label, float) and not math.isfinite(label)):
        raise TypeError(f"a class label must be a str, int, bool or finite float, got "
                        f"{type(label).__name__}: {label!r:.80}")
    return label


# float64 networks of fewer columns keep the (n, 4, K) C order (see empty_columns).
ROWS_BELOW_COLUMNS = 16


def empty_columns(shape: tuple, key: str = "P", dtype=np.float64) -> np.ndarray:
    """A new (n, 4, K) per-parameter array (values to be filled) stored column-innermost:
    the sliced, transposed view of a C-contiguous (4, K, s) array, s = row_stride(n) >= n,
    whose padding is zero. That is the layout the kernel runs on: one parameter of every column is a
    contiguous row, so per-column work vectorises across columns. numpy keeps the order in
    copies with ``order="K"`` (without the padding); ``copy()`` (order "C") does not.

    float64 networks of fewer than ``ROWS_BELOW_COLUMNS`` columns are plain C order
    instead: the kernel then runs column by column, a column's 4 K parameters in one loop,
    which is faster while a row of columns is about one vector (10 columns: one and a
    quarter vectors per row); from 16 columns on, column-innermost is faster.

    Arrays of 64 KiB or more start on a page, at an offset of 1 KiB per kind (``key``: P, TH,
    TC, V, AUX), so every vector load is aligned and the rows the kernel updates together do
    not alias in the low address bits (numpy's own placement is 16-byte aligned, every
    array at the same page offset). Smaller arrays are numpy's own: placing one costs more
    than it saves, and a service creating a learner per key would pay it eight times per
    key."""
    dtype = np.dtype(dtype)
    storage = column_storage(shape, dtype)
    nbytes = dtype.itemsize * math.prod(storage)
    if storage == shape or nbytes < 1 << 16:  # zeros: the kernel runs the padding lanes too
        return column_view(np.zeros(storage, dtype), shape)
    slot = _KINDS.index("" if key == "P" else key)
    offset = (1024 * slot + 512 * (slot // 4)) % 4096
    buffer = np.zeros(nbytes + offset + 4096, np.uint8)
    start = offset + (-buffer.ctypes.data) % 4096
    return column_view(buffer[start:start + nbytes].view(dtype).reshape(storage), shape)


def column_storage(shape: tuple, dtype) -> tuple:
    """The shape of the C-contiguous storage behind an (n, 4, K) per-parameter array in
    the kernel's layout (see :func:`empty_columns`): (n, 4, K) itself, or (4, K, s)."""
    n, gates, k = shape
    if n < ROWS_BELOW_COLUMNS and np.dtype(dtype) == np.float64:
        return tuple(shape)
    return gates, k, row_stride(n, np.dtype(dtype).itemsize)


def column_view(storage: np.ndarray, shape: tuple) -> np.ndarray:
    """The ``shape`` (n, 4, K) array that ``storage`` of :func:`column_storage` holds."""
    if storage.shape == tuple(shape):
        return storage
    return storage[:, :, :shape[0]].transpose(2, 0, 1)


def row_stride(n: int, itemsize: int) -> int:
    """Elements from one row of a column-innermost array to the next: n rounded up to a
    cache line (the kernel runs those padding lanes too, on zeros, so that a row ends on a
    whole vector), plus one line if that is a multiple of 1 KiB. With rows a multiple of 1 KiB
    apart (1,024 float64 columns: 8 KiB) the kernel's loads and stores of neighbouring rows
    alias in the low address bits and stall."""
    per_line = 64 // itemsize
    stride = -(-n // per_line) * per_line
    return stride + per_line if (stride * itemsize) % 1024 == 0 else stride


def column_array(values: np.ndarray, key: str = "P", dtype=np.float64) -> np.ndarray:
    """A column-innermost copy of an (n, 4, K) array (see :func:`empty_columns`)."""
    out = empty_columns(values.shape, key, dtype)
    out[...] = values
    return out


def _name_key(name) -> int:
    """A stable 64-bit integer for a feature name (independent of process and hash seed)."""
    if isinstance(name, str):
        raw = b"s" + name.encode("utf-8", "surrogatepass")
    else:
        raw = b"r" + repr(name).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def initial_input_weights(config: NetworkConfig, name) -> np.ndarray:
    """Weights (n, 4) of a new feature: U(-s, s) drawn from the seed and the feature name only,
    so they do not depend on when or in which order features appear."""
    rng = np.random.default_rng([config.seed, 1, _name_key(name)])
    return rng.uniform(-config.init_scale, config.init_scale, size=(config.n_columns, 4))


def initial_column_parameters(config: NetworkConfig) -> np.ndarray:
    """Self-recurrent weights and biases (n, 4, 2), U(-s, s) from the seed; the forget
    gates' biases shifted by ``forget_bias``."""
    rng = np.random.default_rng([config.seed, 0])
    params = rng.uniform(-config.init_scale, config.init_scale, size=(config.n_columns, 4, 2))
    params[:, 1, 1] += config.forget_bias  # gate 1 is the forget gate; index 1 its bias
    return params


def initial_laterals(config: NetworkConfig) -> tuple:
    """Sparse connections: each ordered pair (j -> i), j != i, is present with probability
    ``lateral_density``, drawn once from the seed (per column: a binomial count of sources,
    then the sources without replacement, so the cost is O(connections), not O(n^2));
    weights U(-s, s). Returns CSR arrays (indptr (n + 1,), indices (nnz,)) by receiving
    column and the weights (nnz, 4)."""
    n, density = config.n_columns, config.lateral_density
    if density == 0:  # nothing to draw (building a generator costs more than a small step)
        return np.zeros(n + 1, np.intp), np.zeros(0, np.intp), np.zeros((0, 4))
    rng = np.random.default_rng([config.seed, 2])
    counts = rng.binomial(n - 1, density, size=n)
    sources = [np.zeros(0, np.int64)]
    for i in np.flatnonzero(counts):
        others = np.sort(rng.choice(n - 1, size=counts[i], replace=False))
        sources.append(others + (others >= i))  # skip the column itself
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
    indices = np.concatenate(sources).astype(np.intp)
    weights = rng.uniform(-config.init_scale, config.init_scale, size=(len(indices), 4))
    return indptr, indices, weights


def stage_structure(config: NetworkConfig) -> np.ndarray:
    """indptr (n + 1,) of the stage connections: column i of stage s reads the s * k
    columns of the earlier stages (k columns per stage)."""
    stage = np.arange(config.n_columns) // config.per_stage
    return np.concatenate([[0], np.cumsum(stage * config.per_stage)]).astype(np.intp)


def initial_modes(config: NetworkConfig) -> np.ndarray:
    """The first stage learns; later stages are not added yet."""
    mode = np.full(config.n_columns, INACTIVE, dtype=np.intp)
    mode[:config.per_stage] = LEARNING
    return mode


def _group(prefix: str, values: np.ndarray, config: NetworkConfig) -> dict:
    """The value array of one parameter group and its traces, moments, second trace."""
    out = {}
    for kind in _KINDS:
        if kind == "AUX" and not config.aux:
            continue
        key = prefix + (kind or "P")
        if values.ndim == 3:  # a column's own parameters: column-innermost
            out[key] = empty_columns(values.shape, key, config.dtype)
            out[key][...] = 0.0 if kind else values
        else:
            out[key] = values.copy() if not kind else np.zeros_like(values)
    out[prefix + "V"][...] = 1.0 if config.optimizer == "rmsprop" else 0.0
    return out


class ColumnarNetwork:
    """Arrays of one columnar LSTM network plus the kernel bound to them.

    Attributes: ``config``, ``names`` (feature names in input order), ``index``
    (name -> position), ``arrays`` (dict of numpy arrays), ``kernel``; with the
    classification rule, ``classes`` (labels in the order they appeared) and
    ``class_index`` (label -> index).
    The kernel is built on first use: a service creating a learner per key grows its empty
    network on the first event, so the empty network's kernel would be thrown away unused.
    """

    def __init__(self, config: NetworkConfig, names: list, arrays: dict, classes: tuple = ()):
        self.config = config
        self.classes = tuple(classes)
        self.class_index = {label: j for j, label in enumerate(self.classes)}
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("feature names must be unique")
        self.arrays = arrays

    @classmethod
    def new(cls, config: NetworkConfig) -> "ColumnarNetwork":
        """A network with no input features yet."""
        n = config.n_columns
        arrays = _group("", initial_column_parameters(config), config)
        indptr, indices, weights = initial_laterals(config)
        arrays.update(_group("L", weights, config), lat_ptr=indptr, lat_src=indices)
        st_ptr = stage_structure(config)
        stage_weights = np.random.default_rng([config.seed, 3]).uniform(
            -config.init_scale, config.init_scale, size=(st_ptr[-1], 4)) if st_ptr[-1] \
            else np.zeros((0, 4))
        arrays.update(_group("S", stage_weights, config), st_ptr=st_ptr,
                      mode=initial_modes(config), hs_mean=np.zeros(n), hs_var=np.ones(n))
        arrays.update(h=np.zeros(n), c=np.zeros(n), w=np.zeros(n), vw=np.ones(n),
                      ew=np.zeros(n), scalars=np.zeros(len(SCALARS)), x_mean=np.zeros(0),
                      x_var=np.zeros(0), x_count=np.zeros(0), x_clipped=np.zeros(0))
        arrays["scalars"][SCALARS.index("head_bias_v")] = 1.0
        if config.rule == "classification":
            arrays.update(W=np.zeros((1, n)), WV=np.ones((1, n)), b=np.zeros(1), bv=np.ones(1))
        return cls(config, [], arrays)

    @functools.cached_property
    def kernel(self) -> ColumnarKernel:
        """Built on first use, then a plain attribute (no call on the per-step path)."""
        return ColumnarKernel(**self.arrays, **self.config.kernel_args())

    def _drop_kernel(self) -> None:
        """Forget the kernel (and any pending forward step); the next use rebuilds it."""
        kernel = self.__dict__.pop("kernel", None)
        if kernel is not None:
            kernel.detach()

    @property
    def n_inputs(self) -> int:
        return len(self.names)

    def grow(self, new_names: list) -> "ColumnarNetwork":
        """A new network with ``new_names`` appended to the inputs; this one is unchanged.

        New weights are drawn from the seed and the name; their traces start at 0, which is
        exact: a feature that was absent read as 0, so its weights had no influence yet.
        """
        m, k = self.n_inputs, len(new_names)
        arrays = {key: value.copy() for key, value in self.arrays.items() if value.ndim != 3}
        for key, value in self.arrays.items():
            if value.ndim == 3:
                new = empty_columns((value.shape[0], 4, m + k + 2), key, value.dtype)
                new[:, :, :m] = value[:, :, :m]
                new[:, :, m + k:] = value[:, :, m:]
                new[:, :, m:m + k] = 1.0 if (key == "V" and self.config.optimizer == "rmsprop") \
                    else 0.0
                arrays[key] = new
        for j, name in enumerate(new_names):
            arrays["P"][:, :, m + j] = initial_input_weights(self.config, name)
        for key in _INPUT_STATISTICS:
            arrays[key] = np.concatenate([self.arrays[key], np.zeros(k)])
        return ColumnarNetwork(self.config, self.names + list(new_names), arrays, self.classes)

    def copy(self) -> "ColumnarNetwork":
        """An independent copy: every array copied, in the kernel's layout."""
        arrays = {key: column_array(value, key, value.dtype) if value.ndim == 3 else value.copy()
                  for key, value in self.arrays.items()}
        return ColumnarNetwork(self.config, self.names, arrays, self.classes)

    def __deepcopy__(self, memo) -> "ColumnarNetwork":
        return self.copy()  # not the kernel: it views the arrays it was built on

    def with_class(self, label) -> "ColumnarNetwork":
        """A new network whose classification head also knows class ``label``; this one is
        unchanged. From two classes to three, the one logit z becomes the second class's
        and the first's is 0 (logistic(z) = softmax(0, z)); a new class's logit starts at 0
        (weights and bias 0, second moments 1). The columns are not touched: their traces
        dh/dp do not depend on the head."""
        before, after = n_logits(len(self.classes)), n_logits(len(self.classes) + 1)
        arrays = self.copy().arrays
        if after > before:
            rows = slice(1, 2) if before == 1 else slice(0, before)
            for key, fill in (("W", 0.0), ("WV", 1.0), ("b", 0.0), ("bv", 1.0)):
                grown = np.full((after,) + self.arrays[key].shape[1:], fill)
                grown[rows] = self.arrays[key]
                arrays[key] = grown
        return ColumnarNetwork(self.config, self.names, arrays, self.classes + (label,))

    def in_arena(self) -> tuple:
        """(a copy of this network whose learned arrays all live in one buffer, that uint8
        buffer). Each array starts on a 64-byte boundary in the kernel's layout, its padding
        zero; the structure arrays (:data:`STRUCTURE`) are shared. Copying another such
        network's bytes into the buffer then swaps the whole learned state in one copy, and
        ``kernel.reload()`` takes it up (see :mod:`streamlearn.table`)."""
        places, size = {}, 0
        for key, value in self.arrays.items():
            if key not in STRUCTURE:
                shape = column_storage(value.shape, value.dtype) if value.ndim == 3 \
                    else value.shape
                places[key] = (size, shape)
                size += -(-value.dtype.itemsize * math.prod(shape) // 64) * 64
        block = np.zeros(size + 64, np.uint8)
        start = (-block.ctypes.data) % 64
        arena = block[start:start + size]
        arrays = {}
        for key, value in self.arrays.items():
            if key in STRUCTURE:
                arrays[key] = value
                continue
            offset, shape = places[key]
            storage = arena[offset:offset + value.dtype.itemsize * math.prod(shape)] \
                .view(value.dtype).reshape(shape)
            arrays[key] = column_view(storage, value.shape) if value.ndim == 3 else storage
            arrays[key][...] = value
        return ColumnarNetwork(self.config, self.names, arrays, self.classes), arena

    def reset_state(self) -> None:
        """Start a new episode: zero states, traces and eligibilities (h_0 = c_0 = 0 do not
        depend on any parameter). Dropping the kernel drops any pending forward step."""
        for key in ("h", "c", "TH", "TC", "LTH", "LTC", "STH", "STC", "ew"):
            self.arrays[key][...] = 0.0
        if self.config.rule == "td":
            for key in ("AUX", "LAUX", "SAUX"):
                self.arrays[key][...] = 0.0
            for key in ("previous_value", "has_previous", "head_bias_eligibility"):
                self.arrays["scalars"][SCALARS.index(key)] = 0.0
        self._drop_kernel()

    def set_stage(self, stage: int) -> None:
        """Make ``stage`` the learning stage: earlier stages frozen, later ones not added."""
        per = self.config.per_stage
        mode = self.arrays["mode"]
        mode[:stage * per] = FROZEN
        mode[stage * per:(stage + 1) * per] = LEARNING
        mode[(stage + 1) * per:] = INACTIVE
        self._drop_kernel()  # rebuilt on use, with exact maxima for the new stage

    def state(self, copy: bool = True) -> dict:
        """The network part of the public state dict (DESIGN.md section 3), laid out by
        :data:`STATE_ENTRIES`; with ``copy=False`` the arrays are views of the live state
        (for immediate serialisation)."""
        a = {k: v.copy() for k, v in self.arrays.items()} if copy else self.arrays
        scalars = a["scalars"]
        state = {"feature_names": list(self.names),
                 "optimizer": {"name": self.config.optimizer}}
        if self.config.rule == "classification":
            state["classes"] = list(self.classes)
        entries = [(path.split("/"), a[key].astype(np.int64, copy=False))
                   for key, path in STRUCTURE.items()]
        entries += [(parts, a[key] if key in a else float(scalars[SCALARS.index(key)]))
                    for parts, key, _, _ in _entries(self.config.rule)]
        for parts, value in entries:
            node = state
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return state

    def scalar_paths(self) -> tuple:
        """(state path, index in the ``scalars`` array) of the state's scalar entries."""
        return tuple(("/".join(parts), SCALARS.index(key))
                     for parts, key, size, _ in _entries(self.config.rule) if size == _SCALAR)

    @classmethod
    def from_state(cls, config: NetworkConfig, state: dict, steps_per_stage: int = 0
                   ) -> "ColumnarNetwork":
        """Rebuild a network from :meth:`state` output. Every entry is checked before it is
        used (shape, type, the invariants the kernel keeps: finite values within its limit,
        moments and counts >= 0, |h| <= 1, the stage schedule of ``steps_per_stage``), and
        nothing is allocated beyond the size of the arrays given; any failure raises
        :class:`SerializationError` naming the entry."""
        n = config.n_columns
        get = _Entries(state)
        names = get.names()
        m = len(names)
        get.shape("parameters", (n, 4, m + 2))  # before anything is built from n
        lat_ptr, lat_src = _csr(get.ints(STRUCTURE["lat_ptr"]),
                                get.ints(STRUCTURE["lat_src"]), n)
        st_ptr = get.ints(STRUCTURE["st_ptr"])
        if not np.array_equal(st_ptr, stage_structure(config)):
            raise SerializationError(f"state entry '{STRUCTURE['st_ptr']}' does not match "
                                     "columns_per_stage")
        mode = get.ints(STRUCTURE["mode"])
        expected = initial_modes(config)
        if steps_per_stage and config.columns_per_stage:
            stage = min(int(get.number("steps", integral=True)) // steps_per_stage,
                        config.n_stages - 1)
            expected[:stage * config.per_stage] = FROZEN
            expected[stage * config.per_stage:(stage + 1) * config.per_stage] = LEARNING
        if not np.array_equal(mode, expected):
            raise SerializationError(f"state entry '{STRUCTURE['mode']}' does not match the "
                                     "stage schedule of its steps")
        optimizer = get.value("optimizer/name", config.optimizer)
        if optimizer != config.optimizer:
            raise SerializationError(f"state was saved with optimizer {optimizer!r}, "
                                     f"not {config.optimizer!r}")
        classes = get.classes() if config.rule == "classification" else ()
        logits = n_logits(len(classes))
        sizes = {_OWN: (n, 4, m + 2), _N: (n,), _M: (m,), _NNZ: (len(lat_src), 4),
                 _NST: (int(st_ptr[-1]), 4), _SCALAR: (), _LN: (logits, n), _L: (logits,)}
        values = get.checked([(parts, key, sizes[size], bounds, whole)
                              for parts, key, size, bounds, whole in entry_checks(config)])
        check_counts(values)
        arrays = {key: value for key, value in values.items() if key not in SCALARS}
        arrays.setdefault("ew", np.zeros(n))
        arrays.update(lat_ptr=lat_ptr, lat_src=lat_src, st_ptr=st_ptr, mode=mode,
                      scalars=np.array([float(values.get(k, 0.0)) for k in SCALARS]))
        for key in _KINDS:  # the per-parameter arrays into the kernel's layout and type
            key = key or "P"
            if key in arrays:
                arrays[key] = column_array(arrays[key], key, config.dtype)
                if not np.all(np.isfinite(arrays[key])):
                    raise SerializationError(f"state entry for {key} overflows {config.dtype}")
        return cls(config, names, arrays, classes)


# Sizes of the state's numeric entries: a column's own parameters (n, 4, m + 2), one per
# column, one per input, per lateral or stage connection (k, 4), a scalar, one per logit
# and column (logits, n) or one per logit.
_OWN, _N, _M, _NNZ, _NST, _SCALAR, _LN, _L = "own", "n", "m", "nnz", "nst", "scalar", "ln", "l"
_LARGEST = float(np.finfo(np.float64).max)  # "any finite value" as a bound
# What a rule allows: (lowest, highest); "own" is the kernel's limit for the own parameters'
# dtype (set per network).
_LIMITS = {"value": (-VALUE_LIMIT, VALUE_LIMIT), "unit": (-1.0, 1.0), "moment": (0.0, _LARGEST),
           "count": (0.0, _LARGEST), "flag": (0.0, 1.0)}
# The numeric entries of the state dict: (path, the kernel's array or scalar, size, rule).
# Both ColumnarNetwork.state and from_state are driven by this table.
STATE_ENTRIES = (
    ("parameters", "P", _OWN, "own"),
    ("trace_h", "TH", _OWN, "own"),
    ("trace_c", "TC", _OWN, "own"),
    ("h", "h", _N, "unit"),
    ("c", "c", _N, "value"),
    ("head_weights", "w", _N, "value"),
    ("head_bias", "head_bias", _SCALAR, "value"),
    ("optimizer/v", "V", _OWN, "moment"),
    ("optimizer/head_v", "vw", _N, "moment"),
    ("optimizer/head_bias_v", "head_bias_v", _SCALAR, "moment"),
    ("normalizer/x_mean", "x_mean", _M, "value"),
    ("normalizer/x_var", "x_var", _M, "moment"),
    ("normalizer/x_count", "x_count", _M, "count"),
    ("normalizer/x_clipped", "x_clipped", _M, "count"),
    ("normalizer/y_mean", "y_mean", _SCALAR, "value"),
    ("normalizer/y_var", "y_var", _SCALAR, "moment"),
    ("normalizer/y_count", "y_count", _SCALAR, "count"),
    ("normalizer/y_clipped", "y_clipped", _SCALAR, "count"),
    ("lateral/weights", "LP", _NNZ, "value"),
    ("lateral/trace_h", "LTH", _NNZ, "value"),
    ("lateral/trace_c", "LTC", _NNZ, "value"),
    ("lateral/v", "LV", _NNZ, "moment"),
    ("stages/weights", "SP", _NST, "value"),
    ("stages/trace_h", "STH", _NST, "value"),
    ("stages/trace_c", "STC", _NST, "value"),
    ("stages/v", "SV", _NST, "moment"),
    ("stages/h_mean", "hs_mean", _N, "value"),
    ("stages/h_var", "hs_var", _N, "moment"),
)
# Entries only the meta-gradient, TD and classification rules keep.
RULE_ENTRIES = {
    "regression": (),
    "classification": (("class_head/weights", "W", _LN, "value"),
                       ("class_head/bias", "b", _L, "value"),
                       ("class_head/v", "WV", _LN, "moment"),
                       ("class_head/bias_v", "bv", _L, "moment")),
    "meta": (("meta/trace_w", "AUX", _OWN, "own"),
             ("meta/lateral_trace_w", "LAUX", _NNZ, "value"),
             ("meta/stage_trace_w", "SAUX", _NST, "value")),
    "td": (("td/eligibility", "AUX", _OWN, "own"),
           ("td/lateral_eligibility", "LAUX", _NNZ, "value"),
           ("td/stage_eligibility", "SAUX", _NST, "value"),
           ("td/head_eligibility", "ew", _N, "value"),
           ("td/head_bias_eligibility", "head_bias_eligibility", _SCALAR, "value"),
           ("td/previous_value", "previous_value", _SCALAR, "value"),
           ("td/has_previous", "has_previous", _SCALAR, "flag")),
}
# Entries that states saved before they existed lack: read as 0.
_DEFAULT_ZERO = {"normalizer/x_clipped", "normalizer/y_clipped"}


@functools.lru_cache(maxsize=None)
def _entries(rule: str) -> tuple:
    """STATE_ENTRIES plus the rule's own, each path split into its parts."""
    return tuple((tuple(path.split("/")), key, size, check)
                 for path, key, size, check in STATE_ENTRIES + RULE_ENTRIES[rule])


def entry_checks(config: NetworkConfig) -> tuple:
    """(path parts, key, size, (lowest, highest), whole) of each numeric state entry: the
    bounds every value of a loaded state must keep, from :data:`_LIMITS`."""
    own = VALUE_LIMIT_F32 if config.dtype == "float32" else VALUE_LIMIT
    limits = dict(_LIMITS, own=(-own, own))
    return tuple((parts, key, size, limits[rule], rule in ("count", "flag"))
                 for parts, key, size, rule in _entries(config.rule))


# (count, clipped) entries of the normaliser: nothing is clipped more often than it is seen.
COUNTS = (("x_count", "x_clipped"), ("y_count", "y_clipped"))


def check_counts(values) -> None:
    """The invariant between entries of :data:`COUNTS`; ``values``: key -> array or number."""
    for count, clipped in COUNTS:
        if any(k > c for k, c in zip(_listed(values[clipped]), _listed(values[count]))):
            raise SerializationError(f"state entry 'normalizer/{clipped}' exceeds {count}")


def _listed(values) -> list:
    return values if type(values) is list else np.ravel(values).tolist()


class _Entries:
    """Checked access to a state dict's entries by path ("optimizer/v"); every error is a
    SerializationError that names the entry. Values must be real numbers (bool, complex,
    str and object values are refused, not coerced); floating values finite and, unless
    told otherwise, within the kernel's limit on stored values."""

    def __init__(self, state):
        if not isinstance(state, dict):
            raise SerializationError(f"state must be a dict, got {type(state).__name__}")
        self.state = state

    def value(self, path, default=None):
        """The entry at ``path`` (a "a/b" string or a tuple of parts)."""
        parts = path.split("/") if isinstance(path, str) else path
        node = self.state
        for part in parts:
            if not isinstance(node, dict):
                raise SerializationError(f"state entry {'/'.join(parts)!r}: its parent is a "
                                         f"{type(node).__name__}, not a dict")
            if part not in node:
                if default is not None:
                    return default
                raise SerializationError(f"state entry {'/'.join(parts)!r} is missing")
            node = node[part]
        return node

    def names(self) -> list:
        names = self.value("feature_names")
        if not isinstance(names, (list, tuple)):
            raise SerializationError("state entry 'feature_names' must be a list, got a "
                                     f"{type(names).__name__}")
        for name in names:
            if isinstance(name, bool) or not isinstance(name, (str, int)):
                raise SerializationError("state entry 'feature_names' must hold str or int "
                                         f"names, got {name!r:.60}")
        if len(set(names)) != len(names):
            raise SerializationError("state entry 'feature_names' repeats a name")
        return list(names)

    def classes(self) -> tuple:
        labels = self.value("classes")
        if not isinstance(labels, (list, tuple)):
            raise SerializationError("state entry 'classes' must be a list, got a "
                                     f"{type(labels).__name__}")
        try:
            labels = tuple(class_label(label) for label in labels)
        except TypeError as exc:
            raise SerializationError(f"state entry 'classes': {exc}") from None
        if len(set(labels)) != len(labels) or len(labels) > MAX_CLASSES:
            raise SerializationError("state entry 'classes' repeats a label or holds more than "
                                     f"{MAX_CLASSES}")
        return labels

    def _numeric(self, path: str, value) -> np.ndarray:
        if isinstance(value, (bool, np.bool_)):
            raise SerializationError(f"state entry {path!r} must be a number, got a bool")
        try:
            out = np.asarray(value)
        except (TypeError, ValueError, RecursionError, OverflowError):
            raise SerializationError(f"state entry {path!r} is not numeric") from None
        if out.dtype.kind not in "fiu":
            raise SerializationError(f"state entry {path!r} must hold real numbers, got "
                                     f"dtype {out.dtype}")
        return out

    def shape(self, path: str, shape: tuple) -> None:
        got = np.shape(self._numeric(path, self.value(path)))
        if got != shape:
            raise SerializationError(f"state entry {path!r} has shape {got}, expected {shape}")

    def checked(self, entries) -> dict:
        """key -> a float64 copy of each entry (parts, key, shape, (low, high), whole),
        each of the right shape and type, with every value within its bounds (and whole
        where asked): checked a group of entries at a time, one entry at a time only to
        name the one at fault."""
        out, groups = {}, {}
        for parts, key, shape, bounds, whole in entries:
            path = "/".join(parts)
            value = self._numeric(path, self.value(
                parts, 0.0 if path in _DEFAULT_ZERO else None))
            if path in _DEFAULT_ZERO and value.shape == () and shape != ():
                value = np.zeros(shape)
            if value.shape != shape:
                raise SerializationError(f"state entry {path!r} has shape {value.shape}, "
                                         f"expected {shape}")
            out[key] = value = value.astype(np.float64)  # a copy, always
            groups.setdefault((bounds, whole), []).append((path, value))
        for (bounds, whole), items in groups.items():
            flat = np.concatenate([value.reshape(-1) for _, value in items])
            if not _within(flat, bounds, whole):
                path = next(p for p, value in items if not _within(value, bounds, whole))
                raise SerializationError(
                    f"state entry {path!r} holds non-finite values or values outside "
                    f"[{bounds[0]:g}, {bounds[1]:g}]{' or not whole' if whole else ''}")
        return out

    def number(self, path: str, integral: bool = False) -> float:
        value = self.value(path)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float,
                                                                          np.number)):
            raise SerializationError(f"state entry {path!r} must be a number, got "
                                     f"{type(value).__name__}")
        if not _within(np.float64(value), _LIMITS["value"], integral):
            raise SerializationError(f"state entry {path!r} is out of range")
        return float(value)

    def ints(self, path: str) -> np.ndarray:
        out = self._numeric(path, self.value(path))
        if out.dtype.kind not in "iu" or out.ndim != 1:
            raise SerializationError(f"state entry {path!r} must be a 1-D integer array")
        return out.astype(np.intp)


def _within(values: np.ndarray, bounds: tuple, whole: bool) -> bool:
    """All values within bounds (NaN and +-inf are not: the bounds are finite), and whole
    if asked."""
    if not values.size:
        return True
    if not (values.min() >= bounds[0] and values.max() <= bounds[1]):
        return False
    return not whole or bool(np.all(values == np.floor(values)))


def _csr(indptr, indices, n: int) -> tuple:
    """Validated CSR structure of lateral connections (no self-connections)."""
    if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0) \
            or indptr[-1] != len(indices):
        raise SerializationError(f"state entries '{STRUCTURE['lat_ptr']}' and "
                                 f"'{STRUCTURE['lat_src']}' are not a valid CSR structure")
    receivers = np.repeat(np.arange(n), np.diff(indptr))
    if np.any(indices < 0) or np.any(indices >= n) or np.any(indices == receivers):
        raise SerializationError(f"state entry '{STRUCTURE['lat_src']}' must name other "
                                 "columns")
    return indptr, indices
