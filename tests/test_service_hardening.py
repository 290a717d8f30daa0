"""The service against hostile input and a moving environment: stuck learners, deep or huge
events, rotated and truncated files, an idle stdin, a crowd of scrapers."""

import concurrent.futures
import json
import os
import resource
import shutil
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from service_helpers import (SERVICE, applied_events, event_lines, free_port, inspect, run_cli,
                             start_cli, wait_for, write_lines)
from streamlearn import ColumnarRegressor
from streamlearn.service.app import Service
from streamlearn.service.store import StateStore
from streamlearn.service.events import Limits, parse
from streamlearn.service.metrics import ServiceMetrics
from streamlearn.service.pool import LearnerPool
from streamlearn.service.sources import FileSource

QUIET = ("--metrics-address", "none")


class _Never:
    def is_set(self):
        return False


def _wild_lines(n: int) -> list:
    """Key "wild": raw inputs around 1e6 that drive an SGD learner without normalisation to
    diverge (it refuses every step from its event 115 on); key "calm" in between."""
    rng = np.random.default_rng(0)
    lines = []
    for t in range(n):
        a = float(rng.normal()) * 1e6
        lines.append(json.dumps({"key": "wild", "x": {"a": a}, "y": 2 * a}).encode())
        lines.append(json.dumps({"key": "calm", "x": {"a": 0.0}, "y": 0.0}).encode())
    return lines


WILD = dict(normalize=False, optimizer="sgd", step_size=10.0)


def test_a_learner_that_keeps_refusing_is_reset(tmp_path, caplog):
    lines = _wild_lines(320)
    write_lines(tmp_path / "e.jsonl", lines)
    registry = CollectorRegistry()
    store = StateStore(tmp_path / "ck")
    pool = LearnerPool(ColumnarRegressor(**WILD), 0, store, max_learners=10)
    metrics = ServiceMetrics(registry)
    dead = (tmp_path / "dead.jsonl").open("w")
    service = Service(FileSource(tmp_path / "e.jsonl"), pool, store, metrics, {},
                      dead_letters=dead, reset_after=5)
    with caplog.at_level("WARNING", logger="streamlearn.service"):
        service.run(_Never())
    dead.close()
    assert registry.get_sample_value("streamlearn_learner_resets_total") >= 1
    assert "'wild'" in caplog.text and "reset" in caplog.text
    letters = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert letters and {letter["reason"] for letter in letters} == {"learner_error"}
    assert {json.loads(letter["raw"])["key"] for letter in letters} == {"wild"}
    # the documented rule, replayed: 5 refusals in a row, then a fresh learner
    expected, in_a_row, refusals = ColumnarRegressor(**WILD, seed=0), 0, 0
    for line in lines:
        event = json.loads(line)
        if event["key"] != "wild":
            continue
        try:
            expected.learn_one(event["x"], event["y"])
            in_a_row = 0
        except FloatingPointError:
            in_a_row, refusals = in_a_row + 1, refusals + 1
            if in_a_row == 5:
                expected, in_a_row = ColumnarRegressor(**WILD, seed=0), 0
    assert pool.get("wild").to_bytes() == expected.to_bytes()
    assert len(letters) == refusals
    assert pool.get("calm").n_features == 1


def test_resets_do_not_depend_on_checkpoints_or_restarts(tmp_path):
    """The run of refusals is checkpointed: a run stopped mid-run (and in between) ends
    like one uninterrupted run."""
    lines = _wild_lines(320)
    write_lines(tmp_path / "all.jsonl", lines)
    params = [arg for k, v in WILD.items() for arg in ("--param", f"{k}={json.dumps(v)}")]
    args = (*QUIET, *params, "--reset-after", "5")
    assert run_cli("run", "--source", tmp_path / "all.jsonl", "--checkpoint-dir",
                   tmp_path / "one", *args).returncode == 0
    growing = tmp_path / "growing.jsonl"
    for cut in (233, 236, 240, len(lines)):  # 'wild' refuses from its event 115 on
        write_lines(growing, lines[:cut])
        assert run_cli("run", "--source", growing, "--checkpoint-dir", tmp_path / "parts",
                       "--checkpoint-every", "3", *args).returncode == 0
    assert inspect(tmp_path / "parts")["learners"] == inspect(tmp_path / "one")["learners"]


DEPTHS = [1_000, 10_000, 100_000, 1_000_000]


def _deep(depth: int) -> list:
    return [b"[" * depth + b"]" * depth,
            b'{"key": "k", "x": {"a": ' + b"[" * depth + b"]" * depth + b'}, "y": 1}',
            b'{"key": "k", "x": {"a": 1.0}, "y": ' + b'{"a":' * depth + b"1" + b"}" * depth
            + b"}"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_deeply_nested_events_are_dead_letters(depth):
    for raw in _deep(depth):
        result = parse(raw, Limits(max_line_bytes=1 << 30))
        assert result.reason in ("malformed_json", "bad_feature", "bad_target")


def test_the_service_survives_deep_huge_and_wide_events(tmp_path):
    good = event_lines(300, n_keys=2, seed=1)
    bad = [raw for depth in (1_000, 15_000) for raw in _deep(depth)]
    wide = json.dumps({"key": "sensor-0", "x": {f"f{i}": 1.0 for i in range(100_000)},
                       "y": 1.0}).encode()
    at_limit = json.dumps({"key": "sensor-1", "x": {f"g{i}": 1.0 for i in range(50)},
                           "y": 1.0}).encode()
    over_limit = json.dumps({"key": "sensor-1", "x": {f"h{i}": 1.0 for i in range(51)},
                             "y": 1.0}).encode()
    grows_past = json.dumps({"key": "sensor-1", "x": {"late": 1.0}, "y": 1.0}).encode()
    huge = b'{"key": "sensor-0", "x": {"a": 1.0}, "pad": "' + b"x" * 3_000_000 + b'"}'
    out_of_range = b'{"key": "sensor-0", "x": {"a": 1e300}, "y": 1}'
    mixed = good[:100] + bad + [wide, at_limit, over_limit, grows_past, huge, out_of_range] \
        + good[100:]
    write_lines(tmp_path / "mixed.jsonl", mixed)
    write_lines(tmp_path / "good.jsonl", good[:100] + [at_limit] + good[100:])
    config = tmp_path / "limits.toml"
    config.write_text("max_features = 52\n")  # 'at_limit' brings sensor-1 to 52 features
    dead = tmp_path / "dead.jsonl"
    out = run_cli("run", "--source", tmp_path / "mixed.jsonl", "--checkpoint-dir",
                  tmp_path / "a", "--dead-letter", dead, "--config", config,
                  "--max-line-bytes", "100000", *QUIET)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    reasons = [json.loads(line)["reason"] for line in dead.read_text().splitlines()]
    assert set(reasons[:6]) <= {"malformed_json", "bad_feature", "bad_target"}
    assert reasons[6:] == ["line_too_long", "too_many_features", "too_many_features",
                           "line_too_long", "out_of_range"]
    assert run_cli("run", "--source", tmp_path / "good.jsonl", "--checkpoint-dir",
                   tmp_path / "b", "--config", config, *QUIET).returncode == 0
    assert inspect(tmp_path / "a")["learners"] == inspect(tmp_path / "b")["learners"]
    assert all(len(json.loads(line)["raw"]) <= 100_001 for line in dead.read_text().splitlines())


def _applied(directory) -> int:
    return applied_events(directory)


def _append(path, lines) -> None:
    with open(path, "ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))


def _reference(tmp_path, lines, name="reference") -> dict:
    write_lines(tmp_path / f"{name}.jsonl", lines)
    out = run_cli("run", "--source", tmp_path / f"{name}.jsonl", "--checkpoint-dir",
                  tmp_path / name, *QUIET)
    assert out.returncode == 0
    return inspect(tmp_path / name)["learners"]


def test_follow_goes_on_through_rotation_truncation_and_rewrite(tmp_path):
    lines = event_lines(2_000, n_keys=4, seed=2)
    events = tmp_path / "events.jsonl"
    ck = tmp_path / "ck"
    write_lines(events, lines[:400])
    proc = start_cli("run", "--source", events, "--follow", "--checkpoint-dir", ck,
                     "--checkpoint-every", "50", *QUIET)
    try:
        wait_for(lambda: _applied(ck) == 400, timeout=60, what="the first file")
        os.rename(events, tmp_path / "events.jsonl.1")      # rename rotation
        _append(tmp_path / "events.jsonl.1", lines[400:450])  # written before the reopen
        write_lines(events, lines[450:900])
        wait_for(lambda: _applied(ck) == 900, timeout=60, what="the rotated file")
        shutil.copy(events, tmp_path / "events.jsonl.2")    # copytruncate
        with open(events, "r+b") as f:
            f.truncate(0)
        time.sleep(0.5)
        _append(events, lines[900:1_000])
        wait_for(lambda: _applied(ck) == 1_000, timeout=60, what="the truncated file")
        # rewritten in place with more bytes than were read: only the first bytes tell
        time.sleep(0.3)
        with open(events, "r+b") as f:
            f.write(b"".join(line + b"\n" for line in lines[1_000:2_000]))
        wait_for(lambda: _applied(ck) == 2_000, timeout=60, what="the rewritten file")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = proc.stderr.read().decode()
    assert "rotated" in log and "truncated" in log and "rewritten" in log
    assert inspect(ck)["learners"] == _reference(tmp_path, lines)


def test_a_restart_against_another_file_reads_it_from_the_start(tmp_path):
    lines = event_lines(1_000, n_keys=3, seed=3)
    events = tmp_path / "events.jsonl"
    write_lines(events, lines[:600])
    assert run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "ck",
                   *QUIET).returncode == 0
    os.rename(events, tmp_path / "old.jsonl")
    write_lines(events, lines[600:])  # a new file, shorter than the saved offset
    out = run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "ck", *QUIET)
    assert out.returncode == 0
    assert b"not the file of the checkpoint" in out.stderr
    assert inspect(tmp_path / "ck")["learners"] == _reference(tmp_path, lines)
    # a third file, same length and inode-different: still read from its start
    os.rename(events, tmp_path / "second.jsonl")
    write_lines(events, lines[:400])
    out = run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "ck", *QUIET)
    assert b"not the file of the checkpoint" in out.stderr
    assert sum(v["events"] for v in inspect(tmp_path / "ck")["learners"].values()) == 1_400
    # the same file again: nothing new, nothing read twice
    out = run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "ck", *QUIET)
    assert b"not the file" not in out.stderr
    assert sum(v["events"] for v in inspect(tmp_path / "ck")["learners"].values()) == 1_400


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_an_idle_source_checkpoints_and_sigterm_ends_it_within_a_second(tmp_path, source):
    lines = event_lines(100, n_keys=2, seed=4)
    ck = tmp_path / "ck"
    if source == "stdin":
        proc = subprocess.Popen([SERVICE, "run", "--source", "-", "--checkpoint-dir", ck,
                                 *QUIET], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdin.write(b"".join(line + b"\n" for line in lines))
        proc.stdin.flush()  # and stdin stays open
    else:
        write_lines(tmp_path / "e.jsonl", lines)
        proc = start_cli("run", "--source", tmp_path / "e.jsonl", "--follow",
                         "--checkpoint-dir", ck, *QUIET)
    try:
        wait_for(lambda: _applied(ck) == 100, timeout=30, what="the idle checkpoint")
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - start < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _applied(ck) == 100


def test_a_partial_long_line_on_stdin_is_skipped_in_pieces(tmp_path):
    """An over-long line arriving in pieces is dropped as it streams past (memory stays
    bounded) and dead-lettered once it ends."""
    ck, dead = tmp_path / "ck", tmp_path / "dead.jsonl"
    proc = subprocess.Popen([SERVICE, "run", "--source", "-", "--checkpoint-dir", ck,
                             "--dead-letter", dead, "--max-line-bytes", "1000", *QUIET],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    good = event_lines(10, n_keys=1, seed=5)
    proc.stdin.write(b"\n".join(good[:5]) + b"\n" + b'{"x": "' + b"a" * 5000)
    proc.stdin.flush()
    time.sleep(0.3)
    proc.stdin.write(b"a" * 5000 + b'"}\n' + b"\n".join(good[5:]) + b"\n")
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [letter["reason"] for letter in letters] == ["line_too_long"]
    assert _applied(ck) == 10


def test_a_thousand_concurrent_scrapes_are_all_answered(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    write_lines(tmp_path / "e.jsonl", event_lines(200, n_keys=2, seed=6))
    port = free_port()
    proc = start_cli("run", "--source", tmp_path / "e.jsonl", "--follow", "--checkpoint-dir",
                     tmp_path / "ck", "--metrics-address", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape(_):
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return response.status == 200 and b"streamlearn_events_total" in response.read()
        except OSError:
            return False
    try:
        wait_for(lambda: scrape(0), timeout=30, what="the metrics endpoint")
        with concurrent.futures.ThreadPoolExecutor(max_workers=1_000) as pool:
            results = list(pool.map(scrape, range(1_000)))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert results.count(False) == 0
