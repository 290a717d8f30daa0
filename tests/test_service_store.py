"""The service on its state store: a damaged learner state stops only its own key, an
operator resets it, checkpoints write what changed, and the time-based checkpoint."""

import json
import sqlite3

import pytest

from prometheus_client import CollectorRegistry

from service_helpers import event_lines, inspect, run_cli, write_lines
from streamlearn import ColumnarRegressor
from streamlearn.service.app import Service
from streamlearn.service.metrics import ServiceMetrics
from streamlearn.service.pool import LearnerPool
from streamlearn.service.sources import FileSource
from streamlearn.service.store import DATABASE, StateStore

QUIET = ("--metrics-address", "none")


class _Never:
    def is_set(self):
        return False


def _damage(directory, key: str) -> None:
    db = sqlite3.connect(directory / DATABASE)
    state = bytearray(db.execute("SELECT state FROM learners WHERE key = ?", (key,)).fetchone()[0])
    state[len(state) // 2] ^= 0xFF
    db.execute("UPDATE learners SET state = ? WHERE key = ?", (bytes(state), key))
    db.commit()
    db.close()


def test_a_damaged_state_dead_letters_its_key_until_an_operator_resets_it(tmp_path):
    lines = event_lines(3_000, n_keys=3, seed=31)
    first, rest = lines[:1_500], lines[1_500:]
    write_lines(tmp_path / "e.jsonl", first)
    ck, dead = tmp_path / "ck", tmp_path / "dead.jsonl"
    assert run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir", ck,
                   *QUIET).returncode == 0
    before = inspect(ck)["learners"]
    _damage(ck, "sensor-1")
    out = run_cli("inspect", ck, "--verify", "--json")
    assert out.returncode == 1
    assert list(json.loads(out.stdout)["damaged"]) == ["sensor-1"]
    with open(tmp_path / "e.jsonl", "ab") as f:
        f.write(b"".join(line + b"\n" for line in rest))
    out = run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir", ck,
                  "--dead-letter", dead, *QUIET)
    assert out.returncode == 0, out.stderr
    assert b"'sensor-1'" in out.stderr and b"damaged" in out.stderr
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    keys = [json.loads(line)["key"] for line in rest]
    assert [letter["reason"] for letter in letters] == ["learner_corrupt"] * keys.count("sensor-1")
    after = inspect(ck)["learners"]
    assert after["sensor-1"] == {**before["sensor-1"], "sha256": after["sensor-1"]["sha256"]}
    assert after["sensor-0"]["events"] == before["sensor-0"]["events"] + keys.count("sensor-0")
    # the operator resets the key: its events learn again, into a fresh learner
    assert run_cli("reset", ck, "sensor-1").returncode == 0
    assert run_cli("inspect", ck, "--verify").returncode == 0
    write_lines(tmp_path / "replay.jsonl", [line for line in rest if b'"sensor-1"' in line])
    assert run_cli("run", "--source", tmp_path / "replay.jsonl", "--checkpoint-dir", ck,
                   *QUIET).returncode == 0
    assert inspect(ck)["learners"]["sensor-1"]["events"] == keys.count("sensor-1")


def test_a_damaged_layout_stops_its_keys_until_they_are_reset(tmp_path):
    """Row states name a layout stored once: damaged, every key of it is dead-lettered
    (nothing is learned from a guess), and a reset key starts afresh."""
    lines = event_lines(600, n_keys=3, seed=5)
    write_lines(tmp_path / "e.jsonl", lines[:300])
    ck, dead = tmp_path / "ck", tmp_path / "dead.jsonl"
    assert run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir", ck,
                   *QUIET).returncode == 0
    db = sqlite3.connect(ck / DATABASE)
    (layout,) = db.execute("SELECT state FROM layouts").fetchone()
    db.execute("UPDATE layouts SET state = ?", (layout[:-1] + bytes([layout[-1] ^ 1]),))
    db.commit()
    db.close()
    out = run_cli("inspect", ck, "--verify", "--json")
    assert out.returncode == 1
    assert sorted(json.loads(out.stdout)["damaged"]) == ["sensor-0", "sensor-1", "sensor-2"]
    before = inspect(ck)["learners"]
    write_lines(tmp_path / "e.jsonl", lines)
    out = run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir", ck,
                  "--dead-letter", dead, *QUIET)
    assert out.returncode == 0, out.stderr
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 300 and {letter["reason"] for letter in letters} == {"learner_corrupt"}
    assert inspect(ck)["learners"] == before
    assert run_cli("reset", ck, "sensor-0", "sensor-1", "sensor-2").returncode == 0
    write_lines(tmp_path / "replay.jsonl", lines[300:])
    assert run_cli("run", "--source", tmp_path / "replay.jsonl", "--checkpoint-dir", ck,
                   *QUIET).returncode == 0
    assert sum(v["events"] for v in inspect(ck)["learners"].values()) == 300
    assert run_cli("inspect", ck, "--verify").returncode == 0  # the layout was rewritten


@pytest.mark.parametrize("n_columns", [4, 20])
def test_the_folder_holds_little_beyond_the_states(tmp_path, n_columns):
    """Row states of small and default models, stored and rewritten: the folder stays within
    1.5x of the state bytes (pages shared, not one half-empty page per state)."""
    prototype = ColumnarRegressor(n_columns=n_columns)
    store = StateStore(tmp_path / "ck")
    pool = LearnerPool(prototype, 0, store, max_learners=10_000)
    for step in range(2):
        for key in range(3_000):
            x = {"a": float(key), "b": 1.0}
            pool.get(f"k{key}", x).learn_one(x, float(step))
            pool.applied(f"k{key}")
        pool.flush()
        store.commit({}, "file")
    store.close()
    reader = StateStore(tmp_path / "ck", writer=False)
    states = sum(len(state) for _, _, _, state in reader.summary())
    reader.close()
    folder = sum(path.stat().st_size for path in (tmp_path / "ck").iterdir())
    assert folder <= 1.5 * states, (folder, states)


def test_reset_and_inspect_refuse_what_they_cannot_do(tmp_path):
    out = run_cli("inspect", tmp_path / "missing")
    assert out.returncode == 2 and b"no checkpoint" in out.stderr
    assert not (tmp_path / "missing").exists()


def test_a_checkpoint_writes_only_the_learners_that_changed(tmp_path):
    many = [json.dumps({"key": f"k{i}", "x": {"a": 1.0}, "y": 1.0}).encode()
            for i in range(1_000)]
    few = [json.dumps({"key": f"k{i % 3}", "x": {"a": 2.0}, "y": 0.0}).encode()
           for i in range(50)]
    write_lines(tmp_path / "e.jsonl", many)
    store = StateStore(tmp_path / "ck")
    pool = LearnerPool(ColumnarRegressor(), 0, store, max_learners=100)
    registry = CollectorRegistry()
    Service(FileSource(tmp_path / "e.jsonl"), pool, store, ServiceMetrics(registry), {},
            checkpoint_every=10_000).run(_Never())
    assert registry.get_sample_value("streamlearn_checkpoint_learners_sum") == 100
    assert len(list(store.summary())) == 1_000  # 900 were written when evicted
    write_lines(tmp_path / "e2.jsonl", few)
    registry = CollectorRegistry()
    Service(FileSource(tmp_path / "e2.jsonl"), pool, store, ServiceMetrics(registry), {},
            checkpoint_every=10_000).run(_Never())
    assert registry.get_sample_value("streamlearn_checkpoint_learners_sum") == 3
    assert store.events() == 1_050
    store.close()


class _Trickle:
    """A source that gives 10 records per poll, one (injected) second apart."""

    name, replayable, failing = "file", True, False

    def __init__(self, records, clock):
        self.records, self.clock = records, clock

    def poll(self, timeout):
        self.clock[0] += 1.0
        if not self.records:
            return None
        batch, self.records = self.records[:10], self.records[10:]
        return batch

    encode = staticmethod(FileSource.encode)

    def state(self, positions):
        return {}

    def ack(self, records):
        pass

    def lag(self):
        return {}


def test_checkpoints_come_on_time_as_well_as_by_count(tmp_path):
    write_lines(tmp_path / "e.jsonl", event_lines(500, n_keys=2, seed=32))
    records = FileSource(tmp_path / "e.jsonl").poll(0.1)
    assert len(records) == 500
    store = StateStore(tmp_path / "ck")
    now = [0.0]
    registry = CollectorRegistry()
    Service(_Trickle(records, now), LearnerPool(ColumnarRegressor(), 0, store, 10), store,
            ServiceMetrics(registry), {}, checkpoint_every=10**9, checkpoint_interval=5.0,
            clock=lambda: now[0]).run(_Never())
    # 50 polls over 50 s: a checkpoint every 5 s, then the final one
    assert registry.get_sample_value("streamlearn_checkpoint_seconds_count") == 11
    assert store.events() == 500
    store.close()


def test_a_slow_checkpoint_spaces_out_the_next_ones(tmp_path, monkeypatch):
    """Timed checkpoints take at most CHECKPOINT_SHARE of the time: after one that took d
    seconds, the next comes no sooner than d (1 / share - 1) later, whatever the interval."""
    from streamlearn.service import app

    write_lines(tmp_path / "e.jsonl", event_lines(500, n_keys=2, seed=33))
    records = FileSource(tmp_path / "e.jsonl").poll(0.1)
    store = StateStore(tmp_path / "ck")
    now = [0.0]
    commit = store.commit
    monkeypatch.setattr(app.time, "perf_counter", lambda: now[0])

    def slow_commit(*args):  # each checkpoint takes 2 (injected) seconds
        now[0] += 2.0
        commit(*args)
    store.commit = slow_commit
    registry = CollectorRegistry()
    Service(_Trickle(records, now), LearnerPool(ColumnarRegressor(), 0, store, 10), store,
            ServiceMetrics(registry), {}, checkpoint_interval=5.0,
            clock=lambda: now[0]).run(_Never())
    # 50 polls of 1 s plus 2 s per checkpoint: one every 2 * 9 = 18 s at the earliest
    # (11 checkpoints without the floor), the final one included
    count = registry.get_sample_value("streamlearn_checkpoint_seconds_count")
    assert count == 4, count
    assert store.events() == 500
    store.close()
