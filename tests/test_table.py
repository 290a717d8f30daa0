"""Learner tables: rows stepped by one worker are the learners they stand for.

The reference is the learner object itself: a row must step, serialise and read back
bit-identically to a standalone learner fed the same events, and ``read`` must refuse
whatever ``from_bytes`` refuses."""

import struct
import zlib

import numpy as np
import pytest

from streamlearn import ColumnarRegressor
from streamlearn.learner import ColumnarLearner
from streamlearn.serialization import SerializationError
from streamlearn.service.pool import LearnerPool
from streamlearn.table import ROW_MAGIC, LearnerTable, row_layout
from streamlearn.td import ColumnarTD

CONFIGS = [
    (ColumnarRegressor, {}),
    (ColumnarRegressor, {"n_columns": 4}),
    (ColumnarRegressor, {"n_columns": 17, "lateral_density": 0.2, "optimizer": "sgd"}),
    (ColumnarRegressor, {"n_columns": 20, "dtype": "float32"}),
    (ColumnarTD, {"n_columns": 6, "gamma": 0.9, "lambda_": 0.5}),
]


class _Store:
    """The store interface the pool uses, in memory."""

    def __init__(self):
        self.rows, self.layouts = {}, {}

    def get(self, key):
        return self.rows.get(key)

    def layout(self, layout_id):
        return self.layouts.get(layout_id)

    def put_layout(self, layout_id, state):
        self.layouts.setdefault(layout_id, state)

    def empty(self):
        return not self.rows

    def put_many(self, rows):
        for key, state, events, refused in rows:
            self.rows[key] = (state, events, refused)


def _events(n, keys, seed, new_feature_at=None):
    rng = np.random.default_rng(seed)
    for t in range(n):
        x = {"a": float(rng.normal()), "b": float(rng.normal() * 3)}
        if new_feature_at is not None and t >= new_feature_at and rng.random() < 0.3:
            x["c"] = float(rng.normal())
        yield f"k{rng.integers(keys)}", x, float(x["a"] - 0.5 * x["b"] + rng.normal())


@pytest.mark.parametrize("cls,params", CONFIGS)
def test_rows_step_and_serialise_as_their_learners(cls, params):
    prototype = cls(seed=3, **params)
    fresh = prototype.spawn(3)
    fresh.add_features(["a", "b"])
    table = LearnerTable(fresh)
    rows, steps, learners = {}, {}, {}
    for key, x, y in _events(1_500, 6, 1):
        if key not in rows:
            rows[key], steps[key], learners[key] = table.new_row(), 0, cls(seed=3, **params)
        worker = table.use(rows[key], steps[key])
        assert worker.predict_one(x) == learners[key].predict_one(x)
        worker.learn_one(x, y)
        learners[key].learn_one(x, y)
        steps[key] = worker._steps
    for key, row in rows.items():
        data = table.pack(row, steps[key])
        assert data == learners[key].to_bytes()
        read = table.read(data)
        if params.get("dtype") == "float32":  # read by from_bytes instead
            assert read is None
            continue
        again, at = read
        assert at == steps[key] and table.pack(again, at) == data


@pytest.mark.parametrize("cls,params", CONFIGS)
def test_a_pool_of_rows_matches_learner_objects(cls, params):
    """Many keys, evictions through the store, features that appear mid-stream (the row
    moves to another table), and resets: the pool's states are the objects'."""
    store = _Store()
    prototype = cls(**params)
    pool = LearnerPool(prototype, 5, store, max_learners=4)
    expected = {}
    for key, x, y in _events(1_200, 9, 2, new_feature_at=600):
        learner = pool.get(key, x)
        reference = expected.setdefault(key, cls(seed=5, **params))
        assert learner.predict_one(x) == reference.predict_one(x)
        learner.learn_one(x, y)
        reference.learn_one(x, y)
        pool.applied(key)
    pool.flush()
    restarted = LearnerPool(prototype, 5, store, max_learners=100)
    for key, reference in expected.items():
        assert pool.layouts.learner_bytes(store.rows[key][0]) == reference.to_bytes()
        restarted.get(key)  # read back (its layout's table rebuilt from the store)
        assert restarted.layouts.learner_bytes(restarted._row(key)[1]) == reference.to_bytes()
    if params.get("dtype") != "float32":  # float32 learners are stored as to_bytes()
        assert all(row_layout(state) for state, _, _ in store.rows.values())
        assert all(entry.table is not None for entry in restarted._live.values())


def test_a_reset_row_is_a_fresh_learner():
    store = _Store()
    pool = LearnerPool(ColumnarRegressor(), 0, store, max_learners=10)
    learner = pool.get("k", {"a": 1.0})
    learner.learn_one({"a": 1.0}, 2.0)
    pool.applied("k")
    assert not pool.refused("k", 2)
    assert pool.refused("k", 2)
    pool.flush()
    assert pool.layouts.learner_bytes(store.rows["k"][0]) == ColumnarRegressor(seed=0).to_bytes()


def _mutations(data, rng):
    """Damaged copies of a blob whose checksum is made valid again, so that every check
    past the checksum is exercised: numbers in the header, values of arrays, structure."""
    body = bytearray(data[:-4])
    head_end = len(b"STREAMLEARN\x01") + 8 + struct.unpack_from("<Q", data, 12)[0]
    out = []
    for _ in range(150):
        damaged = bytearray(body)
        kind = rng.integers(4)
        if kind == 0:  # a byte of the header's numbers
            digits = [i for i in range(head_end) if chr(damaged[i]) in "0123456789.-e"]
            damaged[digits[rng.integers(len(digits))]] = ord(rng.choice(list("0123456789-.e+")))
        elif kind == 1:  # an array value: NaN, inf, huge, negative
            offset = head_end + 8 * rng.integers((len(body) - head_end) // 8)
            value = rng.choice([np.nan, np.inf, -1.0, 1e300, 2.0, 0.5])
            damaged[offset:offset + 8] = struct.pack("<d", value)
        elif kind == 2:  # a random byte anywhere past the magic
            damaged[rng.integers(20, len(body))] ^= 1 << rng.integers(8)
        else:
            damaged = damaged[:rng.integers(20, len(body))]
        out.append(bytes(damaged) + struct.pack("<I", zlib.crc32(damaged)))
    return out


@pytest.mark.parametrize("cls,params", [c for c in CONFIGS if c[1].get("dtype") != "float32"])
def test_read_refuses_what_from_bytes_refuses(cls, params):
    prototype = cls(seed=1, **params)
    learner = prototype.spawn(1)
    for _, x, y in _events(300, 1, 4):
        learner.learn_one(x, y)
    fresh = prototype.spawn(1)
    fresh.add_features(["a", "b"])
    table = LearnerTable(fresh)
    data = learner.to_bytes()
    assert table.read(data) is not None
    rng = np.random.default_rng(0)
    accepted = 0
    for damaged in _mutations(data, rng) + [data[:-1] + bytes([data[-1] ^ 1])]:
        try:
            reference = cls.from_bytes(damaged)
        except SerializationError:
            reference = None
        try:
            read = table.read(damaged)
        except SerializationError:
            read = None
        if read is None:
            continue
        accepted += 1
        assert reference is not None, "read accepted a blob from_bytes refuses"
        assert table.pack(*read) == reference.to_bytes()
    assert accepted > 0  # some mutations stay valid (a digit for a digit)


def _row_mutations(data, rng):
    """Damaged copies of a row state, checksum made valid again: (kind, bytes)."""
    body = bytearray(data[:-4])
    head = len(ROW_MAGIC) + 16
    out = []
    for _ in range(200):
        damaged, kind = bytearray(body), int(rng.integers(4))
        if kind == 0:  # a value: NaN, inf, huge, negative, fractional
            offset = head + 8 * rng.integers((len(body) - head) // 8)
            damaged[offset:offset + 8] = struct.pack(
                "<d", rng.choice([np.nan, np.inf, -1.0, 1e300, 2.0, 0.5]))
        elif kind == 1:  # a bit anywhere, header included
            damaged[rng.integers(len(body))] ^= 1 << rng.integers(8)
        elif kind == 2:  # a step count out of range
            damaged[len(ROW_MAGIC) + 8:head] = struct.pack("<Q", int(rng.integers(2**62, 2**63)))
        else:
            damaged = damaged[:rng.integers(len(body))]
        out.append((kind, bytes(damaged) + struct.pack("<I", zlib.crc32(damaged))))
    return out


@pytest.mark.parametrize("cls,params", [c for c in CONFIGS if c[1].get("dtype") != "float32"])
def test_row_states_are_refused_where_their_learner_would_be(cls, params):
    """A row state reads back only if the learner it stands for is one ``from_bytes``
    takes, and then as that learner; a damaged one raises SerializationError."""
    prototype = cls(seed=1, **params)
    fresh = prototype.spawn(1)
    fresh.add_features(["a", "b"])
    table, row = LearnerTable(fresh), None
    row = table.new_row()
    worker = table.use(row, 0)
    for _, x, y in _events(300, 1, 4):
        worker.learn_one(x, y)
    data = table.dump(row, worker._steps)
    assert data.startswith(ROW_MAGIC) and len(data) < len(worker.to_bytes())
    rebuilt = LearnerTable(cls.from_bytes(table.layout_state))
    assert rebuilt.layout_id == table.layout_id == row_layout(data)
    assert rebuilt.pack(*rebuilt.load(data)) == worker.to_bytes()
    with pytest.raises(SerializationError, match="checksum"):
        rebuilt.load(data[:-1] + bytes([data[-1] ^ 1]))
    accepted = 0
    for kind, damaged in _row_mutations(data, np.random.default_rng(0)):
        try:
            read = rebuilt.load(damaged)
        except SerializationError:
            continue
        assert kind in (0, 1), "a truncated state or an impossible step count was read"
        accepted += 1
        packed = rebuilt.pack(*read)
        assert cls.from_bytes(packed).to_bytes() == packed  # from_bytes takes it too
    assert accepted > 0  # some mutations stay valid (a fraction for a fraction)


def test_rows_of_another_seed_stay_objects():
    """A stored learner of another seed (the pool's key seeds before tables) cannot be a
    row: it would grow new features with other weights. The pool keeps it as an object."""
    store = _Store()
    old = ColumnarRegressor(seed=99)
    old.learn_one({"a": 1.0}, 1.0)
    store.rows["k"] = (old.to_bytes(), 1, 0)
    pool = LearnerPool(ColumnarRegressor(), 0, store, max_learners=10)
    learner = pool.get("k", {"a": 2.0})
    assert isinstance(learner, ColumnarLearner) and pool._live["k"].table is None
    learner.learn_one({"a": 2.0, "b": 1.0}, 1.0)
    old.learn_one({"a": 2.0, "b": 1.0}, 1.0)
    pool.applied("k")
    assert pool.get("k").to_bytes() == old.to_bytes()


def test_new_keys_are_looked_up_once_anything_could_be_stored():
    """A pool skips the store for new keys only while no key can be stored: an empty store
    at the start and no eviction yet."""
    store = _Store()
    lookups = []
    get = store.get
    store.get = lambda key: lookups.append(key) or get(key)
    pool = LearnerPool(ColumnarRegressor(), 0, store, max_learners=2)
    for key in ("a", "b"):
        pool.get(key, {"x": 1.0}).learn_one({"x": 1.0}, 1.0)
        pool.applied(key)
    assert lookups == []
    pool.get("c", {"x": 1.0})  # evicts "a" into the store
    pool.get("a", {"x": 1.0})  # so "a" must be read back
    assert lookups == ["a"]
    assert LearnerPool(ColumnarRegressor(), 0, store, 2).get("a").n_features == 1
