"""A columnar network's arrays, feature index and compiled kernel, and how it grows.

The kernel (``streamlearn._columnar``) only views numpy arrays owned here. Adding features
builds a new :class:`ColumnarNetwork` with wider arrays, so a network object never changes
shape: a caller can prepare a grown network, use it for a pure prediction, and adopt it later.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from streamlearn._columnar import ColumnarKernel

__all__ = ["ColumnarNetwork", "NetworkConfig", "GATES"]

GATES = ("input", "forget", "output", "candidate")
# Arrays with one entry per parameter, shape (n, 4, m + 2), and their lateral counterparts
# (nnz, 4); the meta-gradient trace TW/LTW exists only in meta mode.
PARAMETER_ARRAYS = ("P", "TH", "TC", "V")
LATERAL_ARRAYS = ("LP", "LTH", "LTC", "LV")
# Index of each scalar in the kernel's ``scalars`` array.
SCALARS = ("head_bias", "head_bias_v", "y_mean", "y_var", "y_count")


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
    meta: bool = False
    head_step_size: float = 0.0

    def kernel_args(self) -> dict:
        return {"optimizer": self.optimizer, "step_size": self.step_size,
                "normalize": self.normalize, "meta": self.meta,
                "head_step_size": self.head_step_size}


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
    """Self-recurrent weights and biases (n, 4, 2), U(-s, s) from the seed."""
    rng = np.random.default_rng([config.seed, 0])
    return rng.uniform(-config.init_scale, config.init_scale, size=(config.n_columns, 4, 2))


def initial_laterals(config: NetworkConfig) -> tuple:
    """Sparse connections: each ordered pair (j -> i), j != i, is present with probability
    ``lateral_density``, drawn once from the seed; weights U(-s, s). Returns CSR arrays
    (indptr (n + 1,), indices (nnz,)) by receiving column and the weights (nnz, 4)."""
    n, density = config.n_columns, config.lateral_density
    rng = np.random.default_rng([config.seed, 2])
    mask = rng.random((n, n)) < density
    np.fill_diagonal(mask, False)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.intp)
    indices = np.nonzero(mask)[1].astype(np.intp)
    weights = rng.uniform(-config.init_scale, config.init_scale, size=(len(indices), 4))
    return indptr, indices, weights


class ColumnarNetwork:
    """Arrays of one columnar LSTM network plus the kernel bound to them.

    Attributes: ``config``, ``names`` (feature names in input order), ``index``
    (name -> position), ``arrays`` (dict of numpy arrays), ``kernel``, ``x`` (input scratch).
    """

    def __init__(self, config: NetworkConfig, names: list, arrays: dict):
        self.config = config
        self.names = list(names)
        self.index = {name: j for j, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("feature names must be unique")
        self.arrays = arrays
        self.kernel = ColumnarKernel(arrays, **config.kernel_args())
        self.x = np.zeros(len(self.names))

    @classmethod
    def new(cls, config: NetworkConfig) -> "ColumnarNetwork":
        """A network with no input features yet."""
        n = config.n_columns
        arrays = {key: np.zeros((n, 4, 2)) for key in PARAMETER_ARRAYS}
        arrays["P"][:] = initial_column_parameters(config)
        if config.optimizer == "rmsprop":
            arrays["V"][:] = 1.0
        arrays.update(h=np.zeros(n), c=np.zeros(n), w=np.zeros(n), vw=np.ones(n),
                      scalars=np.zeros(len(SCALARS)), x_mean=np.zeros(0), x_var=np.zeros(0),
                      x_count=np.zeros(0))
        arrays["scalars"][SCALARS.index("head_bias_v")] = 1.0
        indptr, indices, weights = initial_laterals(config)
        arrays.update(lat_ptr=indptr, lat_src=indices)
        for key in LATERAL_ARRAYS:
            arrays[key] = np.zeros_like(weights)
        arrays["LP"][:] = weights
        if config.optimizer == "rmsprop":
            arrays["LV"][:] = 1.0
        if config.meta:
            arrays["TW"] = np.zeros((n, 4, 2))
            arrays["LTW"] = np.zeros_like(weights)
        return cls(config, [], arrays)

    @property
    def n_inputs(self) -> int:
        return len(self.names)

    def grow(self, new_names: list) -> "ColumnarNetwork":
        """A new network with ``new_names`` appended to the inputs; this one is unchanged.

        New weights are drawn from the seed and the name; their traces start at 0, which is
        exact: a feature that was absent read as 0, so its weights had no influence yet.
        """
        m, k = self.n_inputs, len(new_names)
        arrays = {}
        for key in PARAMETER_ARRAYS + (("TW",) if self.config.meta else ()):
            old = self.arrays[key]
            new = np.empty((old.shape[0], 4, m + k + 2))
            new[:, :, :m] = old[:, :, :m]
            new[:, :, m + k:] = old[:, :, m:]
            new[:, :, m:m + k] = 1.0 if (key == "V" and self.config.optimizer == "rmsprop") else 0.0
            arrays[key] = new
        for j, name in enumerate(new_names):
            arrays["P"][:, :, m + j] = initial_input_weights(self.config, name)
        for key in ("x_mean", "x_var", "x_count"):
            arrays[key] = np.concatenate([self.arrays[key], np.zeros(k)])
        for key in ("h", "c", "w", "vw", "scalars", "lat_ptr", "lat_src", *LATERAL_ARRAYS) \
                + (("LTW",) if self.config.meta else ()):
            arrays[key] = self.arrays[key].copy()
        return ColumnarNetwork(self.config, self.names + list(new_names), arrays)

    def reset_state(self) -> None:
        """Start a new episode: zero states and traces (h_0 = c_0 = 0 do not depend on any
        parameter). Rebinding the kernel drops any pending forward step."""
        for key in ("h", "c", "TH", "TC", "LTH", "LTC"):
            self.arrays[key][...] = 0.0
        self.kernel = ColumnarKernel(self.arrays, **self.config.kernel_args())

    def state(self, copy: bool = True) -> dict:
        """The network part of the public state dict (DESIGN.md section 3); with
        ``copy=False`` the arrays are views of the live state (for immediate serialisation)."""
        s = self.arrays["scalars"]
        a = {k: v.copy() for k, v in self.arrays.items()} if copy else self.arrays
        state = {
            "feature_names": list(self.names),
            "parameters": a["P"],
            "trace_h": a["TH"],
            "trace_c": a["TC"],
            "h": a["h"],
            "c": a["c"],
            "head_weights": a["w"],
            "head_bias": float(s[SCALARS.index("head_bias")]),
            "optimizer": {
                "name": self.config.optimizer,
                "v": a["V"],
                "head_v": a["vw"],
                "head_bias_v": float(s[SCALARS.index("head_bias_v")]),
            },
            "normalizer": {
                "x_mean": a["x_mean"],
                "x_var": a["x_var"],
                "x_count": a["x_count"],
                "y_mean": float(s[SCALARS.index("y_mean")]),
                "y_var": float(s[SCALARS.index("y_var")]),
                "y_count": float(s[SCALARS.index("y_count")]),
            },
            "lateral": {
                "indptr": a["lat_ptr"].astype(np.int64),
                "indices": a["lat_src"].astype(np.int64),
                "weights": a["LP"],
                "trace_h": a["LTH"],
                "trace_c": a["LTC"],
                "v": a["LV"],
            },
        }
        if self.config.meta:
            state["meta"] = {"trace_w": a["TW"], "lateral_trace_w": a["LTW"]}
        return state

    @classmethod
    def from_state(cls, config: NetworkConfig, state: dict) -> "ColumnarNetwork":
        """Rebuild a network from :meth:`state` output, checking shapes and values."""
        try:
            names = list(state["feature_names"])
            opt, norm = state["optimizer"], state["normalizer"]
            n, m = config.n_columns, len(names)
            arrays = {
                "P": _array(state["parameters"], "parameters", (n, 4, m + 2)),
                "TH": _array(state["trace_h"], "trace_h", (n, 4, m + 2)),
                "TC": _array(state["trace_c"], "trace_c", (n, 4, m + 2)),
                "V": _array(opt["v"], "optimizer/v", (n, 4, m + 2)),
                "h": _array(state["h"], "h", (n,)),
                "c": _array(state["c"], "c", (n,)),
                "w": _array(state["head_weights"], "head_weights", (n,)),
                "vw": _array(opt["head_v"], "optimizer/head_v", (n,)),
                "x_mean": _array(norm["x_mean"], "normalizer/x_mean", (m,)),
                "x_var": _array(norm["x_var"], "normalizer/x_var", (m,)),
                "x_count": _array(norm["x_count"], "normalizer/x_count", (m,)),
            }
            scalars = {"head_bias": state["head_bias"], "head_bias_v": opt["head_bias_v"],
                       "y_mean": norm["y_mean"], "y_var": norm["y_var"],
                       "y_count": norm["y_count"]}
            lat = state["lateral"]
            indptr, indices = _csr(lat["indptr"], lat["indices"], n)
            nnz = len(indices)
            arrays.update(lat_ptr=indptr, lat_src=indices,
                          LP=_array(lat["weights"], "lateral/weights", (nnz, 4)),
                          LTH=_array(lat["trace_h"], "lateral/trace_h", (nnz, 4)),
                          LTC=_array(lat["trace_c"], "lateral/trace_c", (nnz, 4)),
                          LV=_array(lat["v"], "lateral/v", (nnz, 4)))
            if config.meta:
                arrays["TW"] = _array(state["meta"]["trace_w"], "meta/trace_w", (n, 4, m + 2))
                arrays["LTW"] = _array(state["meta"]["lateral_trace_w"],
                                       "meta/lateral_trace_w", (nnz, 4))
        except KeyError as exc:
            raise ValueError(f"state dict is missing {exc}") from None
        arrays["scalars"] = _array([scalars[k] for k in SCALARS], "scalars", (len(SCALARS),))
        if opt.get("name", config.optimizer) != config.optimizer:
            raise ValueError(f"state was saved with optimizer {opt['name']!r}, "
                             f"not {config.optimizer!r}")
        return cls(config, names, arrays)


def _csr(indptr, indices, n: int) -> tuple:
    """Validated CSR structure of lateral connections (no self-connections)."""
    try:
        indptr = np.array(indptr, dtype=np.intp)
        indices = np.array(indices, dtype=np.intp)
    except (TypeError, ValueError):
        raise ValueError("lateral indptr/indices must be integer arrays") from None
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
