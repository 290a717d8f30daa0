"""The service on a Redis that fails: killed and restarted, frozen, its streams and groups
deleted, its pending entries trimmed. Nothing is lost or learned twice, SIGTERM is honoured
and every fault is counted."""

import json
import signal
import time
import urllib.request

import pytest
import redis

from servers import redis_server, start_redis
from service_helpers import (applied_events, event_lines, free_port, inspect, run_cli,
                             start_cli, wait_for, write_lines)

N = 12_000
# a wide model slows the consumer so that the faults land mid-stream
ARGS = ("--checkpoint-every", "300", "--param", "n_columns=200")


@pytest.fixture
def events(tmp_path):
    """N events in a file and the per-key states of the file run (the reference)."""
    lines = event_lines(N, n_keys=24, seed=21)
    path = tmp_path / "events.jsonl"
    write_lines(path, lines)
    out = run_cli("run", "--source", path, "--checkpoint-dir", tmp_path / "file",
                  "--metrics-address", "none", *ARGS)
    assert out.returncode == 0, out.stderr
    return path, lines, inspect(tmp_path / "file")["learners"]


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def _finish(proc, ck, client, partitions=4, total=N):
    try:
        wait_for(lambda: applied_events(ck) == total, timeout=180, interval=0.2,
                 what="every event applied")
        wait_for(lambda: all(client.xpending(f"ev:{p}", "streamlearn")["pending"] == 0
                             for p in range(partitions)), timeout=30, what="acknowledgements")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_killed_and_restarted_redis_loses_nothing(tmp_path, events):
    path, _, expected = events
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis(data, port, durable=True)
    url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
    try:
        assert run_cli("produce", "--target", url, path).returncode == 0
        ck, metrics_port = tmp_path / "ck", free_port()
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, "--metrics-address",
                         f"127.0.0.1:{metrics_port}", *ARGS)
        wait_for(lambda: applied_events(ck) >= N // 4, timeout=120, interval=0.01,
                 what="a quarter of the events")
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert applied_events(ck) < N, "the fault must come mid-stream"
        time.sleep(1.5)  # the service keeps going: it retries, counts and logs
        assert proc.poll() is None
        assert _metric(metrics_port, "streamlearn_source_errors_total") > 0
        server = start_redis(data, port, durable=True)
        client = redis.Redis(port=port)
        _finish(proc, ck, client)
        assert inspect(ck)["learners"] == expected
        assert b"retrying" in proc.stderr.read()
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_sigterm_is_honoured_while_redis_does_not_answer(tmp_path, events):
    path, _, expected = events
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
        assert run_cli("produce", "--target", url, path).returncode == 0
        ck = tmp_path / "ck"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck,
                         "--metrics-address", "none", *ARGS)
        wait_for(lambda: applied_events(ck) >= N // 3, timeout=120, interval=0.01,
                 what="a third of the events")
        server_pid = int(redis.Redis(port=port).info("server")["process_id"])
        import os
        os.kill(server_pid, signal.SIGSTOP)
        assert applied_events(ck) < N, "the fault must come mid-stream"
        try:
            time.sleep(0.3)
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            elapsed = time.monotonic() - start
            print(f"SIGTERM to exit: {elapsed:.2f} s")
            assert elapsed < 2.0
        finally:
            os.kill(server_pid, signal.SIGCONT)
        assert code in (0, 1)  # 1: the last predictions could not be written, nor the state
        client = redis.Redis(port=port)
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck,
                         "--metrics-address", "none", *ARGS)
        _finish(proc, ck, client)
        assert inspect(ck)["learners"] == expected
        client.close()


def test_deleted_streams_and_groups_are_recreated_at_the_saved_position(tmp_path, events):
    path, lines, expected = events
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    write_lines(first, lines[:N // 2])
    write_lines(second, lines[N // 2:])
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
        client = redis.Redis(port=port)
        assert run_cli("produce", "--target", url, first).returncode == 0
        ck = tmp_path / "ck"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck,
                         "--metrics-address", "none", *ARGS)
        wait_for(lambda: applied_events(ck) == N // 2, timeout=120, interval=0.05,
                 what="the first half")
        time.sleep(0.5)
        client.xgroup_destroy("ev:0", "streamlearn")
        client.delete("ev:1")
        time.sleep(1.0)  # the service notices, recreates, keeps running
        assert proc.poll() is None
        # publish without the producer (it would create the groups itself, at id 0)
        pipe = client.pipeline(transaction=False)
        from streamlearn.service.sources import _key_of, partition_of
        for line in lines[N // 2:]:
            pipe.xadd(f"ev:{partition_of(_key_of(line), 4)}", {"event": line})
        pipe.execute()
        _finish(proc, ck, client)
        assert inspect(ck)["learners"] == expected
        assert b"missing_group" in proc.stderr.read()
        client.close()


def test_trimmed_pending_entries_are_lost_not_invalid(tmp_path):
    lines = event_lines(3_000, n_keys=5, seed=22)
    path = tmp_path / "events.jsonl"
    write_lines(path, lines)
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=2"
        client = redis.Redis(port=port)
        assert run_cli("produce", "--target", url, path).returncode == 0
        ck = tmp_path / "ck"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, "--metrics-address",
                         "none", "--checkpoint-every", "1000000")
        # delivered, not yet checkpointed (that comes after a second idle): crash now
        wait_for(lambda: sum(client.xpending(f"ev:{p}", "streamlearn")["pending"]
                             for p in range(2)) == len(lines), timeout=60, interval=0.002,
                 what="every entry delivered")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert applied_events(ck) == 0
        for p in range(2):
            client.xtrim(f"ev:{p}", maxlen=0)
        dead = tmp_path / "dead.jsonl"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, "--metrics-address",
                         "none", "--dead-letter", dead)
        wait_for(lambda: all(client.xpending(f"ev:{p}", "streamlearn")["pending"] == 0
                             for p in range(2)), timeout=60, what="the lost entries acked")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = proc.stderr.read().decode()
        assert "trimmed" in log and "'lost': 3000" in log
        assert not dead.exists() or dead.read_text() == ""
        client.close()


def test_produce_and_run_dead_letter_deeply_nested_lines(tmp_path):
    deep = [b"[" * depth + b"]" * depth for depth in (1_000, 100_000)] + [
        b'{"key": "k", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001]
    lines = event_lines(50, n_keys=2, seed=23) + deep
    path = tmp_path / "events.jsonl"
    write_lines(path, lines)
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=2"
        out = run_cli("produce", "--target", url, path)
        assert out.returncode == 0, out.stderr
        dead = tmp_path / "dead.jsonl"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", tmp_path / "ck",
                         "--metrics-address", "none", "--dead-letter", dead)
        client = redis.Redis(port=port)
        _finish(proc, tmp_path / "ck", client, partitions=2, total=50)
        letters = [json.loads(line) for line in dead.read_text().splitlines()]
        assert [letter["reason"] for letter in letters] == ["malformed_json"] * 3
        client.close()
