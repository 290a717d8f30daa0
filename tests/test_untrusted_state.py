"""Untrusted states (``from_bytes``, ``from_state_dict``, ``load_state_dict``): everything
is checked before anything is built, every failure is one SerializationError naming what is
wrong, and a hostile blob costs no more memory than its own size."""

import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from streamlearn import ColumnarRegressor, ColumnarTD
from streamlearn.serialization import MAGIC, SerializationError


@pytest.fixture
def model():
    model = ColumnarRegressor(n_columns=3, seed=1)
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = {"a": float(rng.normal()), "b": float(rng.normal())}
        model.learn_one(x, x["a"])
    return model


def _split(blob: bytes) -> tuple:
    n_head = struct.unpack("<Q", blob[len(MAGIC):len(MAGIC) + 8])[0]
    start = len(MAGIC) + 8
    return json.loads(blob[start:start + n_head]), blob[start + n_head:-4]


def _join(header, data: bytes, raw_header: bytes | None = None) -> bytes:
    """A blob with a valid checksum around ``header`` (or ``raw_header`` as it is)."""
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    body = MAGIC + struct.pack("<Q", len(head)) + head + data
    return body + struct.pack("<I", zlib.crc32(body))


def _edit(blob: bytes, change) -> bytes:
    header, data = _split(blob)
    change(header["tree"])
    return _join(header, data)


def _peak_bytes(action) -> int:
    tracemalloc.start()
    try:
        action()
    except SerializationError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("claim", [3_000_000, 100_000_000, 10**12])
def test_a_blob_claiming_a_huge_network_costs_no_more_than_its_size(model, claim):
    blob = model.to_bytes()
    hostile = _edit(blob, lambda tree: tree["params"].update(n_columns=claim))
    with pytest.raises(SerializationError, match="parameters"):
        ColumnarRegressor.from_bytes(hostile)
    honest = _peak_bytes(lambda: ColumnarRegressor.from_bytes(blob))
    assert _peak_bytes(lambda: ColumnarRegressor.from_bytes(hostile)) <= max(honest, 8 * len(blob))


def test_a_huge_lateral_density_claim_builds_nothing_extra():
    """Laterals come from the state's own arrays, not drawn again from the params."""
    model = ColumnarRegressor(n_columns=300, seed=1)
    model.learn_one({"a": 1.0}, 1.0)
    blob = model.to_bytes()
    hostile = _edit(blob, lambda tree: tree["params"].update(lateral_density=1.0))
    assert _peak_bytes(lambda: ColumnarRegressor.from_bytes(hostile)) < 8 * len(blob)


def _drop(path):
    def change(tree):
        *parents, last = path.split("/")
        for part in parents:
            tree = tree[part]
        del tree[last]
    return change


def _set(path, value):
    def change(tree):
        *parents, last = path.split("/")
        for part in parents:
            tree = tree[part]
        tree[last] = value
    return change


def _nested(depth):
    value = 1.0
    for _ in range(depth):
        value = [value]
    return value


MALFORMED = [
    (_drop("normalizer"), "normalizer"),
    (_drop("optimizer/v"), "optimizer/v"),
    (_drop("params"), "params"),
    (_drop("feature_names"), "feature_names"),
    (_set("optimizer", [1, 2]), "optimizer"),
    (_set("params", [1, 2]), "params"),
    (_set("params", {"n_columns": 3}), "params"),
    (_set("feature_names", "ab"), "feature_names"),
    (_set("feature_names", ["a", "a"]), "feature_names"),
    (_set("feature_names", [["a"], "b"]), "feature_names"),
    (_set("format_version", "1"), "format_version"),
    (_set("steps", 10**30), "steps"),
    (_set("steps", -1), "steps"),
    (_set("steps", 1.5), "steps"),
    (_set("seed", 2**70), "seed"),
    (_set("seed", "x"), "seed"),
    (_set("head_bias", "x"), "head_bias"),
    (_set("head_bias", _nested(50)), "head_bias"),
    (_set("normalizer/y_count", None), "normalizer/y_count"),
    (_set("lateral", 7), "lateral"),
    (_set("class", None), "class"),
    (_set("params", {"n_columns": "3"}), "params"),
]


@pytest.mark.parametrize("change, entry", MALFORMED)
def test_every_malformed_entry_is_one_documented_error_naming_it(model, change, entry):
    with pytest.raises(SerializationError, match=entry.split("/")[-1]):
        ColumnarRegressor.from_bytes(_edit(model.to_bytes(), change))


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,                       # deep nesting
    b'{"arrays": [], "tree": ' + b'{"a":' * 5_000 + b"1" + b"}" * 5_001,
    b'{"arrays": [{"path": "p", "dtype": "<f8", "shape": [1.5]}], "tree": {}}',
    b'{"arrays": [{"path": "p", "dtype": "<f8", "shape": [true]}], "tree": {}}',
    b'{"arrays": [{"path": "p", "dtype": "|O", "shape": [1]}], "tree": {}}',
    b'{"arrays": [{"path": 3, "dtype": "<f8", "shape": [1]}], "tree": {}}',
    b'{"arrays": [7], "tree": {}}',
    b'{"arrays": {}, "tree": {}}',
    b'{"arrays": [], "tree": {"x": {"__array__": "nowhere"}}}',
    b'{"arrays": [{"path": "p", "dtype": "<f8", "shape": [1000000000000]}], "tree": {}}',
    b'"just a string"',
    b"\xff\xfe",
    b"1e999999",
])
def test_malformed_headers_with_a_valid_checksum_are_one_documented_error(raw):
    with pytest.raises(SerializationError):
        ColumnarRegressor.from_bytes(_join(None, b"", raw_header=raw))


def test_a_header_length_beyond_the_blob_is_refused():
    body = MAGIC + struct.pack("<Q", 2**60) + b"{}"
    with pytest.raises(SerializationError, match="truncated"):
        ColumnarRegressor.from_bytes(body + struct.pack("<I", zlib.crc32(body)))


def _with(state, path, value):
    *parents, last = path.split("/")
    node = state
    for part in parents:
        node = node[part]
    node[last] = value(node[last]) if callable(value) else value
    return state


def _scaled(index, value):
    def change(array):
        array = np.array(array)
        array[index] = value
        return array
    return change


INCONSISTENT = [
    ("parameters", _scaled((0, 0, 0), 1e151)),
    ("trace_h", _scaled((1, 2, 0), -1e151)),
    ("head_weights", _scaled(0, 1e200)),
    ("head_bias", 1e151),
    ("h", _scaled(0, 1.5)),
    ("c", _scaled(0, np.nan)),
    ("normalizer/y_count", -1.0),
    ("normalizer/y_count", 2.5),
    ("normalizer/x_count", _scaled(0, -1.0)),
    ("normalizer/x_var", _scaled(0, -1.0)),
    ("normalizer/y_var", -0.5),
    ("normalizer/y_clipped", 1e9),
    ("normalizer/x_clipped", _scaled(0, 1e9)),
    ("optimizer/head_bias_v", -1.0),
    ("optimizer/head_v", _scaled(0, -1.0)),
    ("optimizer/v", _scaled((0, 0, 0), -1.0)),
    ("optimizer/v", _scaled((0, 0, 0), np.inf)),
    ("parameters", lambda a: np.asarray(a) + 1j),
    ("parameters", lambda a: np.asarray(a).astype(str)),
    ("parameters", lambda a: np.asarray(a) > 0),
    ("h", lambda a: np.asarray(a, dtype=object)),
    ("feature_names", "ab"),
    ("feature_names", ("a", True)),
    ("stages/mode", lambda a: np.zeros_like(a)),
    ("stages/indptr", lambda a: np.asarray(a, dtype=float)),
    ("head_bias", True),
    ("normalizer/y_mean", "0"),
]


@pytest.mark.parametrize("path, value", INCONSISTENT)
def test_states_that_break_an_invariant_do_not_load(model, path, value):
    entry = path.split("/")[-1]
    state = _with(model.state_dict(), path, value)
    fresh = ColumnarRegressor(n_columns=3, seed=1)
    before = fresh.to_bytes()
    with pytest.raises(SerializationError, match=entry):
        fresh.load_state_dict(state)
    assert fresh.to_bytes() == before  # the learner keeps its state
    with pytest.raises(SerializationError, match=entry):
        ColumnarRegressor.from_state_dict(state)


@pytest.mark.parametrize("path, value", [
    ("td/has_previous", 0.5), ("td/previous_value", np.inf),
    ("td/eligibility", _scaled((0, 0, 0), 1e151)), ("td/head_eligibility", _scaled(0, np.nan)),
])
def test_td_states_that_break_an_invariant_do_not_load(path, value):
    model = ColumnarTD(n_columns=3, seed=2)
    for t in range(20):
        model.learn_one({"a": float(t % 3)}, float(t % 5 == 0))
    with pytest.raises(SerializationError, match=path.split("/")[-1]):
        ColumnarTD.from_state_dict(_with(model.state_dict(), path, value))


def test_float32_state_values_beyond_float32s_limit_do_not_load():
    model = ColumnarRegressor(n_columns=3, dtype="float32", seed=3)
    model.learn_one({"a": 1.0}, 1.0)
    state = _with(model.state_dict(), "trace_c", _scaled((0, 0, 0), 1e20))
    with pytest.raises(SerializationError, match="trace_c"):
        ColumnarRegressor.from_state_dict(state)


def test_a_valid_state_still_round_trips(model):
    data = model.to_bytes()
    assert ColumnarRegressor.from_bytes(data).to_bytes() == data
    assert ColumnarRegressor.from_state_dict(model.state_dict()).to_bytes() == data
