"""The checkpoint store: atomic manifests, verified bytes, bounded space."""

import os

import pytest

from streamlearn.service.checkpoint import CheckpointError, CheckpointStore


def _commit(store, blobs: dict, position: int) -> dict:
    learners = {key: dict(store.put(data), events=1) for key, data in blobs.items()}
    store.commit({"file": position}, learners, "file")
    return learners


def test_round_trip_and_previous_manifest(tmp_path):
    store = CheckpointStore(tmp_path)
    first = _commit(store, {"a": b"alpha", "b": b"beta"}, 10)
    second = _commit(store, {"a": b"alpha-2", "b": b"beta"}, 20)
    loaded = CheckpointStore(tmp_path).load()
    assert loaded["positions"] == {"file": 20}
    assert store.get(loaded["learners"]["a"]) == b"alpha-2"
    (tmp_path / "manifest.json").write_bytes(b'{"body": {}, "sha256": "00"}')
    fallback = CheckpointStore(tmp_path).load()  # damaged newest: the previous one is used
    assert fallback["positions"] == {"file": 10}
    assert store.get(fallback["learners"]["a"]) == b"alpha"
    assert first != second


def test_corrupt_learner_bytes_are_detected(tmp_path):
    store = CheckpointStore(tmp_path)
    learners = _commit(store, {"a": b"x" * 100}, 1)
    path = tmp_path / "segments" / learners["a"]["segment"]
    data = bytearray(path.read_bytes())
    data[50] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        store.get(learners["a"])


def test_every_manifest_damaged_is_an_error_not_an_empty_start(tmp_path):
    store = CheckpointStore(tmp_path)
    _commit(store, {"a": b"1"}, 1)
    _commit(store, {"a": b"2"}, 2)
    for name in ("manifest.json", "manifest.prev.json"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        CheckpointStore(tmp_path).load()


def test_space_stays_bounded_when_one_key_keeps_changing(tmp_path):
    """A key that never changes again must not pin old segments full of dead states."""
    store = CheckpointStore(tmp_path)
    refs = {f"k{i}": store.put(bytes(1000)) for i in range(50)}
    for step in range(40):
        refs["hot"] = store.put(step.to_bytes(4, "little") * 2500)
        for key in store.to_compact(refs):
            refs[key] = store.put(store.get(refs[key]))
        store.commit({"file": step}, {k: dict(r, events=1) for k, r in refs.items()}, "file")
    live = sum(r["length"] for r in refs.values())
    on_disk = sum(os.path.getsize(tmp_path / "segments" / n)
                  for n in os.listdir(tmp_path / "segments"))
    assert on_disk <= 3 * live + 20_000  # the live states, the previous manifest's, slack
