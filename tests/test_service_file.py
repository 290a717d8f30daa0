"""The service on a JSON-lines file: crash safety under SIGKILL, junk, resume, SIGTERM."""

import json
import os
import random
import signal
import time

from service_helpers import (JUNK, applied_events, event_lines, inspect, kill_when, run_cli,
                             start_cli, wait_for, write_lines)

ARGS = ("--metrics-address", "none", "--checkpoint-every", "500", "--max-learners", "20")
KILLS = 4


def _run_to_end(events, checkpoint, *extra):
    out = run_cli("run", "--source", events, "--checkpoint-dir", checkpoint, *ARGS, *extra)
    assert out.returncode == 0, out.stderr.decode()
    return inspect(checkpoint)


def test_sigkill_at_random_moments_ends_bit_identical(tmp_path):
    events = tmp_path / "events.jsonl"
    # 24 keys over at most 20 learners in memory: evictions happen throughout
    write_lines(events, event_lines(30_000, n_keys=24, seed=1))
    size = os.path.getsize(events)
    reference = _run_to_end(events, tmp_path / "reference")
    assert sum(v["events"] for v in reference["learners"].values()) == 30_000

    rng = random.Random(2)
    crashed = tmp_path / "crashed"
    # random moments: once the checkpoint shows a random share of the stream, plus a random
    # delay, so kills land between checkpoints too
    for share in sorted(rng.uniform(0.05, 0.9) for _ in range(KILLS)):
        proc = start_cli("run", "--source", events, "--checkpoint-dir", crashed, *ARGS)
        kill_when(proc, crashed, int(share * 30_000))
        assert proc.returncode == -signal.SIGKILL, "the kill must come mid-stream"
        assert 0 < inspect(crashed)["positions"]["file"][1] < size
    final = _run_to_end(events, crashed)
    assert final["positions"] == {"file": [0, size]}
    assert final["learners"] == reference["learners"]


def test_junk_lines_change_nothing_and_each_gets_a_dead_letter(tmp_path):
    clean = event_lines(3_000, n_keys=5, seed=3)
    rng = random.Random(4)
    mixed = list(clean)
    for junk in JUNK * 3:
        mixed.insert(rng.randrange(len(mixed) + 1), junk)
    write_lines(tmp_path / "clean.jsonl", clean)
    write_lines(tmp_path / "mixed.jsonl", mixed)
    expected = _run_to_end(tmp_path / "clean.jsonl", tmp_path / "a")
    dead = tmp_path / "dead.jsonl"
    got = _run_to_end(tmp_path / "mixed.jsonl", tmp_path / "b", "--dead-letter", dead)
    assert got["learners"] == expected["learners"]
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(letters) == 3 * len(JUNK)
    assert all(letter["reason"] and "raw" in letter for letter in letters)


def test_resume_after_end_learns_nothing_twice(tmp_path):
    events = tmp_path / "events.jsonl"
    lines = event_lines(2_000, n_keys=3, seed=5)
    write_lines(events, lines[:1_000])
    first = _run_to_end(events, tmp_path / "ck")
    assert sum(v["events"] for v in first["learners"].values()) == 1_000
    assert _run_to_end(events, tmp_path / "ck") == first  # nothing new: nothing changes
    with open(events, "ab") as f:  # the file grows; a restart picks up only the new lines
        f.write(b"".join(line + b"\n" for line in lines[1_000:]))
    resumed = _run_to_end(events, tmp_path / "ck")
    write_lines(tmp_path / "all.jsonl", lines)
    assert resumed["learners"] == _run_to_end(tmp_path / "all.jsonl", tmp_path / "one")["learners"]


def test_sigterm_writes_a_final_checkpoint_and_exits_0(tmp_path):
    events = tmp_path / "events.jsonl"
    write_lines(events, event_lines(1_000, n_keys=3, seed=6))
    ck = tmp_path / "ck"
    proc = start_cli("run", "--source", events, "--checkpoint-dir", ck, "--follow",
                     "--metrics-address", "none", "--checkpoint-every", "1000000")
    # with --follow the service waits at end of file; it checkpoints after 1 s idle
    wait_for(lambda: applied_events(ck) == 1_000, timeout=30, what="idle checkpoint")
    with open(events, "ab") as f:
        f.write(b'{"key": "late", "x": {"a": 1.0}, "y": 1.0}\n')
    time.sleep(0.3)  # let it read the line; the SIGTERM checkpoint must include it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    state = inspect(ck)
    assert state["learners"]["late"]["events"] == 1
    assert state["positions"]["file"] == [0, os.path.getsize(events)]


def test_stdin_source_with_predictions_on_stdout(tmp_path):
    lines = event_lines(50, n_keys=2, seed=8) + [b"junk"]
    out = run_cli("run", "--source", "-", "--predictions", "-", "--checkpoint-dir",
                  tmp_path / "ck", "--metrics-address", "none",
                  input=b"".join(line + b"\n" for line in lines))
    assert out.returncode == 0, out.stderr
    predictions = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(predictions) == 50
    assert {p["partition"] for p in predictions} == {"stdin"}
    assert all(isinstance(p["prediction"], float) for p in predictions)
    assert sum(v["events"] for v in inspect(tmp_path / "ck")["learners"].values()) == 50


def test_config_file_and_params(tmp_path):
    write_lines(tmp_path / "e.jsonl", event_lines(200, n_keys=1, seed=9))
    config = tmp_path / "service.toml"
    config.write_text('model = "columnar"\ncheckpoint_every = 50\n'
                      '[params]\nn_columns = 3\noptimizer = "sgd"\n')
    out = run_cli("run", "--config", config, "--source", tmp_path / "e.jsonl",
                  "--param", "step_size=0.001", "--checkpoint-dir", tmp_path / "ck",
                  "--metrics-address", "none")
    assert out.returncode == 0, out.stderr
    from streamlearn import ColumnarRegressor
    from streamlearn.service.layouts import StoredLayouts
    from streamlearn.service.store import StateStore
    store = StateStore(tmp_path / "ck", writer=False)
    state = StoredLayouts(store).learner_bytes(store.get("sensor-0")[0])
    params = ColumnarRegressor.from_bytes(state).state_dict()["params"]
    assert (params["n_columns"], params["optimizer"], params["step_size"]) == (3, "sgd", 0.001)


def test_bad_configuration_is_a_clear_error(tmp_path):
    write_lines(tmp_path / "e.jsonl", event_lines(5, n_keys=1))
    for args in (["--model", "lstm"], ["--param", "n_columns=0"], ["--param", "colour=3"]):
        out = run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir",
                      tmp_path / "ck", "--metrics-address", "none", *args)
        assert out.returncode == 2
        assert b"error" in out.stderr


def test_a_second_writer_on_the_same_checkpoint_is_refused(tmp_path):
    events = tmp_path / "events.jsonl"
    write_lines(events, event_lines(100, n_keys=2, seed=10))
    ck = tmp_path / "ck"
    first = start_cli("run", "--source", events, "--follow", "--checkpoint-dir", ck,
                      "--metrics-address", "none")
    try:
        wait_for(lambda: applied_events(ck) == 100, timeout=30, what="first checkpoint")
        second = run_cli("run", "--source", events, "--checkpoint-dir", ck,
                         "--metrics-address", "none")
        assert second.returncode == 2
        assert b"in use" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    # once the first has stopped, the folder is free again
    assert run_cli("run", "--source", events, "--checkpoint-dir", ck,
                   "--metrics-address", "none").returncode == 0
