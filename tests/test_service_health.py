"""/healthz and /readyz: the rules on an injected clock, then the real service stalled by a
prediction pipe nobody reads and by a Redis that stops answering, and recovering from both."""

import json
import signal
import subprocess
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from servers import start_redis
from service_helpers import (SERVICE, event_lines, free_port, run_cli, start_cli, wait_for,
                             write_lines)
from streamlearn.service.health import Health
from streamlearn.service.metrics import serve_metrics


def probe(port: int, path: str) -> tuple:
    """(HTTP status, JSON body) of GET path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_the_rules_on_an_injected_clock():
    now = [100.0]
    health = Health(stall_seconds=5, clock=lambda: now[0])
    assert not health.ready() and health.problems() == []  # loading: alive, not ready
    now[0] += 50
    assert health.problems() == []  # a slow load is not a stall
    health.set_ready(True)
    now[0] += 5
    assert health.problems() == []  # exactly the limit: still alive
    now[0] += 0.5
    assert health.problems() == ["loop: no progress for 5.5 s"]
    health.beat()
    assert health.problems() == []
    for what in ("source", "checkpoint"):
        health.failing(what, True)
        now[0] += 3
        health.failing(what, True)  # a run of failures counts from its first
        health.beat()
        assert health.problems() == []
        now[0] += 3
        health.beat()
        assert health.problems() == [f"{what}: failing for 6.0 s"]
        health.failing(what, False)
        assert health.problems() == []
    health.failing("source", True)
    health.failing("checkpoint", True)
    now[0] += 6
    assert health.problems() == ["loop: no progress for 6.0 s", "checkpoint: failing for 6.0 s",
                                 "source: failing for 6.0 s"]
    health.set_ready(False)  # stopping: not ready; the loop is no longer watched
    assert not health.ready()
    assert health.problems() == ["checkpoint: failing for 6.0 s", "source: failing for 6.0 s"]


def test_the_endpoints_answer_beside_metrics():
    now = [0.0]
    health = Health(stall_seconds=1, clock=lambda: now[0])
    server = serve_metrics(CollectorRegistry(), "127.0.0.1", 0, health)
    port = server.server_address[1]
    try:
        assert probe(port, "/readyz") == (503, {"status": "not ready"})
        assert probe(port, "/healthz") == (200, {"status": "ok", "problems": []})
        health.set_ready(True)
        assert probe(port, "/readyz") == (200, {"status": "ready"})
        now[0] = 2.0
        assert probe(port, "/healthz") == (503, {"status": "stalled", "problems": [
            "loop: no progress for 2.0 s"]})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert r.status == 200  # the exposition is still served
    finally:
        server.shutdown()
        server.server_close()


def test_a_blocked_prediction_pipe_stalls_the_loop_and_recovers(tmp_path):
    """Predictions to stdout, which the test does not read: the pipe fills, the loop blocks
    in a write, /healthz turns 503 naming the loop; reading the pipe brings back 200."""
    write_lines(tmp_path / "e.jsonl", event_lines(5_000, n_keys=8, seed=4))
    port = free_port()
    proc = subprocess.Popen(
        [SERVICE, "run", "--source", str(tmp_path / "e.jsonl"), "--follow", "--predictions",
         "-", "--checkpoint-dir", str(tmp_path / "ck"), "--metrics-address",
         f"127.0.0.1:{port}", "--stall-seconds", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port, "/readyz") == 200, timeout=60, what="ready")
        status, body = wait_for(lambda: (lambda a: a if a[0] == 503 else None)(
            probe(port, "/healthz")), timeout=60, interval=0.2, what="a stalled loop")
        assert body["status"] == "stalled"
        assert [p.split(":")[0] for p in body["problems"]] == ["loop"]
        assert probe(port, "/readyz")[0] == 200  # stalled, but still ready
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        wait_for(lambda: len(lines) == 5_000, timeout=60, what="every prediction")
        wait_for(lambda: probe(port, "/healthz")[0] == 200, timeout=30, what="recovery")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _answers(port, path):
    try:
        return probe(port, path)[0]
    except OSError:  # not listening yet
        return None


def test_a_redis_that_stops_answering_fails_healthz_until_it_is_back(tmp_path):
    path = tmp_path / "e.jsonl"
    write_lines(path, event_lines(400, n_keys=8, seed=5))
    redis_port, port = free_port(), free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis(data, redis_port, durable=True)
    url = f"redis://127.0.0.1:{redis_port}/0?stream=ev&partitions=2"
    proc = None
    try:
        assert run_cli("produce", "--target", url, path).returncode == 0
        proc = start_cli("run", "--source", url, "--checkpoint-dir", tmp_path / "ck",
                         "--metrics-address", f"127.0.0.1:{port}", "--stall-seconds", "1.5")
        wait_for(lambda: _answers(port, "/readyz") == 200, timeout=60, what="ready")
        assert probe(port, "/healthz")[0] == 200
        server.terminate()
        server.wait(timeout=20)
        status, body = wait_for(lambda: (lambda a: a if a[0] == 503 else None)(
            probe(port, "/healthz")), timeout=60, interval=0.2, what="a failing source")
        assert any(p.startswith("source: failing for") for p in body["problems"]), body
        assert not any(p.startswith("loop") for p in body["problems"])  # it still turns
        server = start_redis(data, redis_port, durable=True)
        wait_for(lambda: probe(port, "/healthz")[0] == 200, timeout=60, what="recovery")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "x"])
def test_a_bad_stall_time_is_refused(tmp_path, value):
    write_lines(tmp_path / "e.jsonl", event_lines(10, n_keys=1))
    out = run_cli("run", "--source", tmp_path / "e.jsonl", "--checkpoint-dir", tmp_path / "ck",
                  "--metrics-address", "none", "--stall-seconds", value)
    assert out.returncode == 2
    assert b"stall" in out.stderr
    assert not (tmp_path / "ck").exists()
