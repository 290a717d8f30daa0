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
import pathlib
import signal
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


# PyFlink's Beam worker pool can release a Python environment twice while a failed task is
# cancelled beside a running one ("java.lang.IllegalStateException: Reference count must not
# be negative"): the mini-cluster's only TaskManager dies and the restarted job waits for
# slots forever. That race is apache-beam's, not the job's (seen once in several runs of
# the failure case); a case that hits it runs once more in fresh folders, and any other
# failure fails the test.
UPSTREAM_RACE = "Reference count must not be negative"


def _job(*args, timeout=240) -> bool:
    """Run a case of flink_job.py (OUTPUT is its second path; its Flink log goes to
    OUTPUT-log); False if it hit UPSTREAM_RACE, to be run again."""
    log = pathlib.Path(str(args[2]) + "-log")
    proc = subprocess.Popen([sys.executable, JOB, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=os.path.dirname(JOB),
                            env={**os.environ, "FLINK_LOG_DIR": str(log)},
                            start_new_session=True)  # the JVM and Python workers with it
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    raced = any(UPSTREAM_RACE in path.read_text(errors="replace") for path in log.glob("*.log"))
    if proc.returncode != 0 and raced:
        return False
    assert proc.returncode == 0, output[-6000:]
    return True


def _twice(case) -> None:
    """``case(attempt)`` until it returns True, at most twice (see UPSTREAM_RACE)."""
    if not case(0):
        assert case(1), f"{UPSTREAM_RACE!r} twice in a row"


def test_a_failure_mid_run_commits_every_prediction_once(tmp_path):
    lines = event_lines(N, n_keys=KEYS, seed=7)
    lines[100:100] = JUNK
    events = tmp_path / "events.jsonl"
    write_lines(events, lines)
    expected = _service(tmp_path, events)

    def case(attempt):
        marker, output = tmp_path / f"failed-{attempt}", tmp_path / f"out-{attempt}"
        # two subtasks of about N / 2 events each: one fails at about 60% of the stream
        if not _job("failure", events, output, marker, 2, int(0.6 * N / 2)):
            return False
        assert marker.exists(), "the failure was not injected"
        _check(output, expected)
        return True
    _twice(case)


def test_a_savepoint_at_parallelism_1_restores_at_parallelism_2(tmp_path):
    lines = event_lines(N, n_keys=KEYS, seed=8)
    first, second = lines[:N // 2], lines[N // 2:]
    first[10:10] = JUNK
    write_lines(tmp_path / "all.jsonl", first + second)
    expected = _service(tmp_path, tmp_path / "all.jsonl")

    def case(attempt):
        folder, second_file = tmp_path / f"in-{attempt}", tmp_path / f"2-{attempt}.jsonl"
        folder.mkdir()
        write_lines(folder / "1.jsonl", first)
        write_lines(second_file, second)
        output = tmp_path / f"out-{attempt}"
        if not _job("savepoint", folder, output, tmp_path / f"savepoints-{attempt}",
                    second_file, N // 2, N):
            return False
        _check(output, expected)
        return True
    _twice(case)
