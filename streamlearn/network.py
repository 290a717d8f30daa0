"""A columnar network's arrays, feature index and compiled kernel, and how it grows.

The kernel (``streamlearn._columnar``) only views numpy arrays owned here. Adding features
builds a new :class:`ColumnarNetwork` with wider arrays, so a network object never changes
shape: a caller can prepare a grown network, use it for a pure prediction, and adopt it later.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np

from streamlearn._columnar import VALUE_LIMIT, VALUE_LIMIT_F32, ColumnarKernel
from streamlearn.serialization import SerializationError

__all__ = ["ColumnarNetwork", "NetworkConfig", "GATES", "INACTIVE", "FROZEN", "LEARNING",
           "column_array", "empty_columns"]

GATES = ("input", "forget", "output", "candidate")
# Column modes (the kernel's ``mode`` array).
INACTIVE, FROZEN, LEARNING = 0, 1, 2
# Index of each scalar in the kernel's ``scalars`` array.
SCALARS = ("head_bias", "head_bias_v", "y_mean", "y_var", "y_count", "previous_value",
           "has_previous", "head_bias_eligibility", "y_clipped")
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
    decay: float = 0.9999
    var_floor: float = 1e-8
    forget_bias: float = 0.0          # added to every forget-gate bias at initialisation
    dtype: str = "float64"            # of the own parameters, traces, moments ("float32")

    def kernel_args(self) -> dict:
        return {"optimizer": self.optimizer, "step_size": self.step_size,
                "normalize": self.normalize, "rule": self.rule,
                "head_step_size": self.head_step_size, "gamma": self.gamma,
                "lambda_": self.lambda_, "decay": self.decay, "var_floor": self.var_floor}

    @property
    def per_stage(self) -> int:
        return self.columns_per_stage or self.n_columns

    @property
    def n_stages(self) -> int:
        return self.n_columns // self.per_stage

    @property
    def aux(self) -> bool:
        return self.rule != "regression"


# float64 networks of fewer columns keep the (n, 4, K) C order (see empty_columns).
ROWS_BELOW_COLUMNS = 16


def empty_columns(shape: tuple, key: str = "P", dtype=np.float64) -> np.ndarray:
    """A new (n, 4, K) per-parameter array (values to be filled) stored column-innermost:
    the sliced, transposed view of a C-contiguous (4, K, s) array, s = row_stride(n) >= n,
    whose padding is zero. That is the layout the kernel runs on: one parameter of every column is a
    contiguous row, so per-column work vectorises across columns. numpy keeps the order in
    copies with ``order="K"`` (without the padding); ``copy()`` (order "C") does not.

    float64 networks of fewer than ``ROWS_BELOW_COLUMNS`` columns are plain C order
    instead: the kernel then runs column by column, a column's 4 K parameters in one loop.
    Measured with ``learn_many`` (8 features): 10 columns 1.4-1.5 us per step that way,
    1.7-1.9 column-innermost (one and a quarter vectors per row); from 16 columns on,
    column-innermost is faster (16: 1.5-1.9 us against 2.0-2.9).

    Arrays of 64 KiB or more start on a page, at an offset of 1 KiB per kind (``key``: P, TH,
    TC, V, AUX), so every vector load is aligned and the rows the kernel updates together do
    not alias in the low address bits. Measured at 1,024 columns: 1.8-1.9 ns per parameter
    against 2.3-2.6 with numpy's own placement (16-byte aligned, every array at the same page
    offset). Smaller arrays are numpy's own: placing one costs about 5 us, which a service
    creating a learner per key would pay eight times per key."""
    n, gates, k = shape
    dtype = np.dtype(dtype)
    if n < ROWS_BELOW_COLUMNS and dtype == np.float64:
        return np.empty(shape)
    stride = row_stride(n, dtype.itemsize)
    nbytes = dtype.itemsize * stride * gates * k
    if nbytes < 1 << 16:  # zeros: the kernel also runs the padding lanes (row_stride)
        rows = np.zeros((gates, k, stride), dtype)
    else:
        slot = _KINDS.index("" if key == "P" else key)
        offset = (1024 * slot + 512 * (slot // 4)) % 4096
        buffer = np.zeros(nbytes + offset + 4096, np.uint8)
        start = offset + (-buffer.ctypes.data) % 4096
        rows = buffer[start:start + nbytes].view(dtype).reshape(gates, k, stride)
    return rows[:, :, :n].transpose(2, 0, 1)


def row_stride(n: int, itemsize: int) -> int:
    """Elements from one row of a column-innermost array to the next: n rounded up to a
    cache line (the kernel runs those padding lanes too, on zeros, so that a row ends on a
    whole vector), plus one line if that is a multiple of 1 KiB. With rows a multiple of 1 KiB
    apart (1,024 float64 columns: 8 KiB) the kernel's loads and stores of neighbouring rows
    alias in the low address bits and stall: 1,024 columns cost 1.76-1.91 ns per parameter
    against 1.53-1.58 for 1,016 (same build, float64)."""
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
    (name -> position), ``arrays`` (dict of numpy arrays), ``kernel``, ``x`` (input scratch).
    The kernel is built on first use: a service creating a learner per key grows its empty
    network on the first event, so the empty network's kernel would be thrown away unused.
    """

    def __init__(self, config: NetworkConfig, names: list, arrays: dict):
        self.config = config
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("feature names must be unique")
        self.arrays = arrays
        self.x = np.zeros(len(self.names))

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
        return cls(config, [], arrays)

    @functools.cached_property
    def kernel(self) -> ColumnarKernel:
        """Built on first use, then a plain attribute (no call on the per-step path)."""
        return ColumnarKernel(self.arrays, **self.config.kernel_args())

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
        return ColumnarNetwork(self.config, self.names + list(new_names), arrays)

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
        """The network part of the public state dict (DESIGN.md section 3); with
        ``copy=False`` the arrays are views of the live state (for immediate serialisation)."""
        s = self.arrays["scalars"]
        a = {k: v.copy() for k, v in self.arrays.items()} if copy else self.arrays
        scalar = {name: float(s[i]) for i, name in enumerate(SCALARS)}
        state = {
            "feature_names": list(self.names),
            "parameters": a["P"],
            "trace_h": a["TH"],
            "trace_c": a["TC"],
            "h": a["h"],
            "c": a["c"],
            "head_weights": a["w"],
            "head_bias": scalar["head_bias"],
            "optimizer": {"name": self.config.optimizer, "v": a["V"], "head_v": a["vw"],
                          "head_bias_v": scalar["head_bias_v"]},
            "normalizer": {"x_mean": a["x_mean"], "x_var": a["x_var"], "x_count": a["x_count"],
                           "x_clipped": a["x_clipped"], "y_mean": scalar["y_mean"],
                           "y_var": scalar["y_var"], "y_count": scalar["y_count"],
                           "y_clipped": scalar["y_clipped"]},
            "lateral": {"indptr": a["lat_ptr"].astype(np.int64),
                        "indices": a["lat_src"].astype(np.int64), "weights": a["LP"],
                        "trace_h": a["LTH"], "trace_c": a["LTC"], "v": a["LV"]},
            "stages": {"indptr": a["st_ptr"].astype(np.int64),
                       "mode": a["mode"].astype(np.int64), "weights": a["SP"],
                       "trace_h": a["STH"], "trace_c": a["STC"], "v": a["SV"],
                       "h_mean": a["hs_mean"], "h_var": a["hs_var"]},
        }
        if self.config.rule == "meta":
            state["meta"] = {"trace_w": a["AUX"], "lateral_trace_w": a["LAUX"],
                             "stage_trace_w": a["SAUX"]}
        if self.config.rule == "td":
            state["td"] = {"eligibility": a["AUX"], "lateral_eligibility": a["LAUX"],
                           "stage_eligibility": a["SAUX"], "head_eligibility": a["ew"],
                           "head_bias_eligibility": scalar["head_bias_eligibility"],
                           "previous_value": scalar["previous_value"],
                           "has_previous": scalar["has_previous"]}
        return state

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
        own = (n, 4, m + 2)
        get.shape("parameters", own)  # before anything is built from n
        own_limit = VALUE_LIMIT_F32 if config.dtype == "float32" else VALUE_LIMIT
        lat_ptr, lat_src = _csr(get.ints("lateral/indptr"), get.ints("lateral/indices"), n)
        nnz = len(lat_src)
        st_ptr = get.ints("stages/indptr")
        if not np.array_equal(st_ptr, stage_structure(config)):
            raise SerializationError("state entry 'stages/indptr' does not match "
                                     "columns_per_stage")
        nst = int(st_ptr[-1])
        mode = get.ints("stages/mode")
        expected = initial_modes(config)
        if steps_per_stage and config.columns_per_stage:
            stage = min(int(get.number("steps", integral=True)) // steps_per_stage,
                        config.n_stages - 1)
            expected[:stage * config.per_stage] = FROZEN
            expected[stage * config.per_stage:(stage + 1) * config.per_stage] = LEARNING
        if not np.array_equal(mode, expected):
            raise SerializationError("state entry 'stages/mode' does not match the stage "
                                     "schedule of its steps")
        moment = {"low": 0.0, "high": np.inf}
        arrays = {
            "P": get.array("parameters", own, high=own_limit),
            "TH": get.array("trace_h", own, high=own_limit),
            "TC": get.array("trace_c", own, high=own_limit),
            "V": get.array("optimizer/v", own, **moment),
            "h": get.array("h", (n,), high=1.0),
            "c": get.array("c", (n,)),
            "w": get.array("head_weights", (n,)),
            "vw": get.array("optimizer/head_v", (n,), **moment),
            "ew": np.zeros(n),
            "x_mean": get.array("normalizer/x_mean", (m,)),
            "x_var": get.array("normalizer/x_var", (m,), **moment),
            "x_count": get.array("normalizer/x_count", (m,), integral=True, **moment),
            "x_clipped": get.array("normalizer/x_clipped", (m,), integral=True,
                                   default=np.zeros(m), **moment),
            "lat_ptr": lat_ptr, "lat_src": lat_src,
            "LP": get.array("lateral/weights", (nnz, 4)),
            "LTH": get.array("lateral/trace_h", (nnz, 4)),
            "LTC": get.array("lateral/trace_c", (nnz, 4)),
            "LV": get.array("lateral/v", (nnz, 4), **moment),
            "st_ptr": st_ptr, "mode": mode,
            "SP": get.array("stages/weights", (nst, 4)),
            "STH": get.array("stages/trace_h", (nst, 4)),
            "STC": get.array("stages/trace_c", (nst, 4)),
            "SV": get.array("stages/v", (nst, 4), **moment),
            "hs_mean": get.array("stages/h_mean", (n,)),
            "hs_var": get.array("stages/h_var", (n,), **moment),
        }
        if np.any(arrays["x_clipped"] > arrays["x_count"]):
            raise SerializationError("state entry 'normalizer/x_clipped' exceeds x_count")
        y_count = get.number("normalizer/y_count", integral=True, **moment)
        scalars = {"head_bias": get.number("head_bias"),
                   "head_bias_v": get.number("optimizer/head_bias_v", **moment),
                   "y_mean": get.number("normalizer/y_mean"),
                   "y_var": get.number("normalizer/y_var", **moment), "y_count": y_count,
                   "y_clipped": get.number("normalizer/y_clipped", integral=True, low=0.0,
                                           high=y_count, default=0.0),
                   "previous_value": 0.0, "has_previous": 0.0, "head_bias_eligibility": 0.0}
        optimizer = get.value("optimizer/name", config.optimizer)
        if optimizer != config.optimizer:
            raise SerializationError(f"state was saved with optimizer {optimizer!r}, "
                                     f"not {config.optimizer!r}")
        if config.rule in ("meta", "td"):
            section, names_ = (("meta", ("trace_w", "lateral_trace_w", "stage_trace_w"))
                               if config.rule == "meta" else
                               ("td", ("eligibility", "lateral_eligibility",
                                       "stage_eligibility")))
            for key, name, shape, limit in zip(("AUX", "LAUX", "SAUX"), names_,
                                               (own, (nnz, 4), (nst, 4)),
                                               (own_limit, VALUE_LIMIT, VALUE_LIMIT)):
                arrays[key] = get.array(f"{section}/{name}", shape, high=limit)
        if config.rule == "td":
            arrays["ew"] = get.array("td/head_eligibility", (n,))
            scalars["head_bias_eligibility"] = get.number("td/head_bias_eligibility")
            scalars["previous_value"] = get.number("td/previous_value")
            scalars["has_previous"] = get.number("td/has_previous", low=0.0, high=1.0,
                                                 integral=True)
        arrays["scalars"] = np.array([scalars[k] for k in SCALARS])
        for key in _KINDS:  # the per-parameter arrays into the kernel's layout and type
            key = key or "P"
            if key in arrays:
                arrays[key] = column_array(arrays[key], key, config.dtype)
                if not np.all(np.isfinite(arrays[key])):
                    raise SerializationError(f"state entry for {key} overflows {config.dtype}")
        return cls(config, names, arrays)


class _Entries:
    """Checked access to a state dict's entries by path ("optimizer/v"); every error is a
    SerializationError that names the entry. Values must be real numbers (bool, complex,
    str and object values are refused, not coerced); floating values finite and, unless
    told otherwise, within the kernel's limit on stored values."""

    def __init__(self, state):
        if not isinstance(state, dict):
            raise SerializationError(f"state must be a dict, got {type(state).__name__}")
        self.state = state

    def value(self, path: str, default=None):
        node = self.state
        for part in path.split("/"):
            if not isinstance(node, dict):
                raise SerializationError(f"state entry {path!r}: its parent is a "
                                         f"{type(node).__name__}, not a dict")
            if part not in node:
                if default is not None:
                    return default
                raise SerializationError(f"state entry {path!r} is missing")
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

    def _numeric(self, path: str, value) -> np.ndarray:
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

    def array(self, path: str, shape: tuple, low: float = -VALUE_LIMIT,
              high: float = VALUE_LIMIT, integral: bool = False, default=None) -> np.ndarray:
        """A fresh, writable float64 copy; ``low`` = -``high`` unless given."""
        out = self._numeric(path, self.value(path, default))
        if out.shape != shape:
            raise SerializationError(f"state entry {path!r} has shape {out.shape}, expected "
                                     f"{shape}")
        out = out.astype(np.float64)  # a copy, always
        low = -high if low == -VALUE_LIMIT else low
        if not np.all(np.isfinite(out)):
            raise SerializationError(f"state entry {path!r} holds non-finite values")
        if np.any(out < low) or np.any(out > high):
            raise SerializationError(f"state entry {path!r} holds values outside "
                                     f"[{low:g}, {high:g}]")
        if integral and np.any(out != np.floor(out)):
            raise SerializationError(f"state entry {path!r} must hold whole numbers")
        return out

    def number(self, path: str, low: float = -VALUE_LIMIT, high: float = VALUE_LIMIT,
               integral: bool = False, default=None) -> float:
        value = self.value(path, default)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float,
                                                                          np.number)):
            raise SerializationError(f"state entry {path!r} must be a number, got "
                                     f"{type(value).__name__}")
        return float(self.array(path, (), low, high, integral, default))

    def ints(self, path: str) -> np.ndarray:
        out = self._numeric(path, self.value(path))
        if out.dtype.kind not in "iu" or out.ndim != 1:
            raise SerializationError(f"state entry {path!r} must be a 1-D integer array")
        return out.astype(np.intp)


def _csr(indptr, indices, n: int) -> tuple:
    """Validated CSR structure of lateral connections (no self-connections)."""
    if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0) \
            or indptr[-1] != len(indices):
        raise SerializationError("state entries 'lateral/indptr' and 'lateral/indices' are "
                                 "not a valid CSR structure")
    receivers = np.repeat(np.arange(n), np.diff(indptr))
    if np.any(indices < 0) or np.any(indices >= n) or np.any(indices == receivers):
        raise SerializationError("state entry 'lateral/indices' must name other columns")
    return indptr, indices
