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

from streamlearn._columnar import ColumnarKernel

__all__ = ["ColumnarNetwork", "NetworkConfig", "GATES", "INACTIVE", "FROZEN", "LEARNING",
           "column_array", "empty_columns"]

GATES = ("input", "forget", "output", "candidate")
# Column modes (the kernel's ``mode`` array).
INACTIVE, FROZEN, LEARNING = 0, 1, 2
# Index of each scalar in the kernel's ``scalars`` array.
SCALARS = ("head_bias", "head_bias_v", "y_mean", "y_var", "y_count", "previous_value",
           "has_previous", "head_bias_eligibility")
# Per-parameter arrays: value, the two RTRL traces, RMSProp moment, the rule's second trace.
_KINDS = ("", "TH", "TC", "V", "AUX")


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
                      x_var=np.zeros(0), x_count=np.zeros(0))
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
        for key in ("x_mean", "x_var", "x_count"):
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
                           "y_mean": scalar["y_mean"], "y_var": scalar["y_var"],
                           "y_count": scalar["y_count"]},
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
    def from_state(cls, config: NetworkConfig, state: dict) -> "ColumnarNetwork":
        """Rebuild a network from :meth:`state` output, checking shapes and values."""
        n = config.n_columns
        try:
            names = list(state["feature_names"])
            m = len(names)
            opt, norm, lat, st = (state["optimizer"], state["normalizer"], state["lateral"],
                                  state["stages"])
            lat_ptr, lat_src = _csr(lat["indptr"], lat["indices"], n)
            nnz = len(lat_src)
            st_ptr = _int_array(st["indptr"], "stages/indptr")
            if not np.array_equal(st_ptr, stage_structure(config)):
                raise ValueError("stages/indptr does not match columns_per_stage")
            nst = int(st_ptr[-1])
            mode = _int_array(st["mode"], "stages/mode")
            if mode.shape != (n,) or not np.all(np.isin(mode, (INACTIVE, FROZEN, LEARNING))):
                raise ValueError("stages/mode must hold one mode (0, 1, 2) per column")
            arrays = {
                "P": _array(state["parameters"], "parameters", (n, 4, m + 2)),
                "TH": _array(state["trace_h"], "trace_h", (n, 4, m + 2)),
                "TC": _array(state["trace_c"], "trace_c", (n, 4, m + 2)),
                "V": _array(opt["v"], "optimizer/v", (n, 4, m + 2)),
                "h": _array(state["h"], "h", (n,)),
                "c": _array(state["c"], "c", (n,)),
                "w": _array(state["head_weights"], "head_weights", (n,)),
                "vw": _array(opt["head_v"], "optimizer/head_v", (n,)),
                "ew": np.zeros(n),
                "x_mean": _array(norm["x_mean"], "normalizer/x_mean", (m,)),
                "x_var": _array(norm["x_var"], "normalizer/x_var", (m,)),
                "x_count": _array(norm["x_count"], "normalizer/x_count", (m,)),
                "lat_ptr": lat_ptr, "lat_src": lat_src,
                "LP": _array(lat["weights"], "lateral/weights", (nnz, 4)),
                "LTH": _array(lat["trace_h"], "lateral/trace_h", (nnz, 4)),
                "LTC": _array(lat["trace_c"], "lateral/trace_c", (nnz, 4)),
                "LV": _array(lat["v"], "lateral/v", (nnz, 4)),
                "st_ptr": st_ptr, "mode": mode,
                "SP": _array(st["weights"], "stages/weights", (nst, 4)),
                "STH": _array(st["trace_h"], "stages/trace_h", (nst, 4)),
                "STC": _array(st["trace_c"], "stages/trace_c", (nst, 4)),
                "SV": _array(st["v"], "stages/v", (nst, 4)),
                "hs_mean": _array(st["h_mean"], "stages/h_mean", (n,)),
                "hs_var": _array(st["h_var"], "stages/h_var", (n,)),
            }
            scalars = {"head_bias": state["head_bias"], "head_bias_v": opt["head_bias_v"],
                       "y_mean": norm["y_mean"], "y_var": norm["y_var"],
                       "y_count": norm["y_count"], "previous_value": 0.0, "has_previous": 0.0,
                       "head_bias_eligibility": 0.0}
            if config.rule == "meta":
                meta = state["meta"]
                arrays["AUX"] = _array(meta["trace_w"], "meta/trace_w", (n, 4, m + 2))
                arrays["LAUX"] = _array(meta["lateral_trace_w"], "meta/lateral_trace_w",
                                        (nnz, 4))
                arrays["SAUX"] = _array(meta["stage_trace_w"], "meta/stage_trace_w", (nst, 4))
            if config.rule == "td":
                td = state["td"]
                arrays["AUX"] = _array(td["eligibility"], "td/eligibility", (n, 4, m + 2))
                arrays["LAUX"] = _array(td["lateral_eligibility"], "td/lateral_eligibility",
                                        (nnz, 4))
                arrays["SAUX"] = _array(td["stage_eligibility"], "td/stage_eligibility",
                                        (nst, 4))
                arrays["ew"] = _array(td["head_eligibility"], "td/head_eligibility", (n,))
                for key in ("previous_value", "has_previous", "head_bias_eligibility"):
                    scalars[key] = td[key]
        except KeyError as exc:
            raise ValueError(f"state dict is missing {exc}") from None
        arrays["scalars"] = _array([scalars[k] for k in SCALARS], "scalars", (len(SCALARS),))
        if opt.get("name", config.optimizer) != config.optimizer:
            raise ValueError(f"state was saved with optimizer {opt['name']!r}, "
                             f"not {config.optimizer!r}")
        for key in _KINDS:  # the per-parameter arrays into the kernel's layout and type
            key = key or "P"
            if key in arrays:
                arrays[key] = column_array(arrays[key], key, config.dtype)
                if not np.all(np.isfinite(arrays[key])):
                    raise ValueError(f"state entry for {key} overflows {config.dtype}")
        return cls(config, names, arrays)


def _int_array(value, name: str) -> np.ndarray:
    try:
        out = np.array(value)
    except (TypeError, ValueError):
        raise ValueError(f"state entry {name!r} is not an integer array") from None
    if out.dtype.kind not in "iu":
        raise ValueError(f"state entry {name!r} is not an integer array")
    return out.astype(np.intp)


def _csr(indptr, indices, n: int) -> tuple:
    """Validated CSR structure of lateral connections (no self-connections)."""
    indptr = _int_array(indptr, "lateral/indptr")
    indices = _int_array(indices, "lateral/indices")
    if indptr.shape != (n + 1,) or indptr[0] != 0 or np.any(np.diff(indptr) < 0) \
            or indices.ndim != 1 or indptr[-1] != len(indices):
        raise ValueError("lateral indptr/indices are not a valid CSR structure")
    receivers = np.repeat(np.arange(n), np.diff(indptr))
    if np.any(indices < 0) or np.any(indices >= n) or np.any(indices == receivers):
        raise ValueError("lateral indices must name other columns")
    return indptr, indices


def _array(value, name: str, shape: tuple) -> np.ndarray:
    """A fresh, writable, finite float64 copy of ``value`` with the expected shape."""
    try:
        out = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise ValueError(f"state entry {name!r} is not numeric") from None
    if out.shape != shape:
        raise ValueError(f"state entry {name!r} has shape {out.shape}, expected {shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"state entry {name!r} holds non-finite values")
    return out
