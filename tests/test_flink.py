"""The Flink job (PyFlink's local mini-cluster) against the single-process service on the
same events: every prediction committed once with the service's value, every key's final
learner state identical (SHA-256 of to_bytes), after an injected failure and after a stop
with a savepoint and a restore at a higher parallelism.

.ci/run runs this file in a venv of its own with apache-flink, where STREAMLEARN_FLINK_TESTS
is set and a missing pyflink fails the run; elsewhere it is skipped without apache-flink.
"""

import collections
import hashlib
import json
import os
import subprocess
import sys

import pytest

from service_helpers import JUNK, event_lines, run_cli, write_lines

if not os.environ.get("STREAMLEARN_FLINK_TESTS"):
    pytest.importorskip("pyflink", reason="apache-flink is installed in .ci/run's flink venv")

from streamlearn.service.flink import committed_lines  # noqa: E402

N = 20_000
KEYS = 1_000
JOB = os.path.join(os.path.dirname(__file__), "flink_job.py")


def _service(tmp_path, source) -> tuple:
    """The single-process service on ``source``: predictions by (key, event index), each
    key's state digest, and the dead letters' reasons."""
    from streamlearn.service.layouts import StoredLayouts
    from streamlearn.service.store import StateStore

    ck, predictions, dead = tmp_path / "service", tmp_path / "p.jsonl", tmp_path / "d.jsonl"
    out = run_cli("run", "--source", source, "--checkpoint-dir", ck, "--metrics-address",
                  "none", "--predictions", predictions, "--dead-letter", dead)
    assert out.returncode == 0, out.stderr
    counts, by_event = collections.Counter(), {}
    for line in predictions.read_text().splitlines():
        p = json.loads(line)
        by_event[(p["key"], counts[p["key"]])] = (p["prediction"], p["y"])
        counts[p["key"]] += 1
    store = StateStore(ck, writer=False)
    try:
        layouts = StoredLayouts(store)
        states = {key: hashlib.sha256(layouts.learner_bytes(state)).hexdigest()
                  for key, _, _, state in store.summary()}
    finally:
        store.close()
    reasons = sorted(json.loads(line)["reason"] for line in dead.read_text().splitlines())
    return by_event, states, reasons


def _check(output, expected) -> None:
    by_event, states, reasons = expected
    lines = [json.loads(line) for line in committed_lines(output)]
    got = collections.Counter((p["key"], p["event"]) for p in lines)
    assert not [k for k, n in got.items() if n > 1], "a prediction was committed twice"
    assert set(got) == set(by_event), "a prediction is missing or extra"
    assert all((p["prediction"], p["y"]) == by_event[(p["key"], p["event"])] for p in lines)
    last = {}
    for p in lines:
        if p["event"] >= last.get(p["key"], (-1, ""))[0]:
            last[p["key"]] = (p["event"], p["state_sha256"])
    assert {key: digest for key, (_, digest) in last.items()} == states
    dead = [json.loads(line)["reason"]
            for line in committed_lines(os.path.join(output, "dead-letters"))]
    assert sorted(dead) == reasons


def _job(*args, timeout=300) -> None:
    out = subprocess.run([sys.executable, JOB, *map(str, args)], capture_output=True,
                         text=True, timeout=timeout, cwd=os.path.dirname(JOB),
                         env={**os.environ, "FLINK_LOG_DIR": str(args[2]) + "-log"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_a_failure_mid_run_commits_every_prediction_once(tmp_path):
    lines = event_lines(N, n_keys=KEYS, seed=7)
    lines[100:100] = JUNK
    events = tmp_path / "events.jsonl"
    write_lines(events, lines)
    expected = _service(tmp_path, events)
    marker, output = tmp_path / "failed", tmp_path / "out"
    # two subtasks of about N / 2 events each: one fails at about 60% of the stream
    _job("failure", events, output, marker, 2, int(0.6 * N / 2))
    assert marker.exists(), "the failure was not injected"
    _check(output, expected)


def test_a_savepoint_at_parallelism_1_restores_at_parallelism_2(tmp_path):
    lines = event_lines(N, n_keys=KEYS, seed=8)
    first, second = lines[:N // 2], lines[N // 2:]
    first[10:10] = JUNK
    folder = tmp_path / "in"
    folder.mkdir()
    write_lines(folder / "1.jsonl", first)
    write_lines(tmp_path / "2.jsonl", second)
    write_lines(tmp_path / "all.jsonl", first + second)
    expected = _service(tmp_path, tmp_path / "all.jsonl")
    _job("savepoint", folder, tmp_path / "out", tmp_path / "savepoints", tmp_path / "2.jsonl",
         N // 2, N)
    _check(tmp_path / "out", expected)
