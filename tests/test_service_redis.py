"""The service on Redis Streams (a real redis-server): 4 partitions, consumer killed
mid-stream, per-key states identical to the file run."""

import signal

import redis

from servers import redis_server
from service_helpers import (JUNK, applied_events, event_lines, inspect, kill_when, run_cli,
                             start_cli, wait_for, write_lines)

N = 30_000

ARGS = ("--metrics-address", "none", "--checkpoint-every", "300")


def test_killed_consumer_ends_identical_to_the_file_run(tmp_path):
    lines = event_lines(N, n_keys=30, seed=11)
    lines[100:100] = JUNK  # junk travels through the broker too
    events = tmp_path / "events.jsonl"
    write_lines(events, lines)
    out = run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "file", *ARGS)
    assert out.returncode == 0, out.stderr
    expected = inspect(tmp_path / "file")["learners"]

    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
        out = run_cli("produce", "--target", url, events)
        assert out.returncode == 0, out.stderr
        client = redis.Redis(port=port)
        assert sum(client.xlen(f"ev:{p}") for p in range(4)) == len(lines)
        assert all(client.xlen(f"ev:{p}") > 0 for p in range(4))

        ck = tmp_path / "redis"
        for fraction in (0.2, 0.6):  # kill the consumer twice, mid-stream
            proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, *ARGS)
            kill_when(proc, ck, int(fraction * N))
            assert proc.returncode == -signal.SIGKILL
            assert applied_events(ck) < N, "the kill must come mid-stream"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, *ARGS)
        try:
            wait_for(lambda: applied_events(ck) == N, timeout=120, interval=0.2,
                     what="every event applied")
            wait_for(lambda: all(client.xpending(f"ev:{p}", "streamlearn")["pending"] == 0
                                 for p in range(4)), timeout=30, what="acknowledgements")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert inspect(ck)["learners"] == expected
        # predictions also go to a stream; at-least-once, so a crash may repeat a few
        assert client.xlen("ev:predictions") >= N
        client.close()


def test_only_handled_entries_are_acknowledged(tmp_path):
    """The reader thread reads ahead; an ack covers the entries the service handled (the
    first ones read), and whatever was read ahead but not handled stays pending for the
    next run."""
    from streamlearn.service.sources import RedisSource

    events = tmp_path / "events.jsonl"
    write_lines(events, event_lines(5_000, n_keys=1, seed=3))
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=1"
        assert run_cli("produce", "--target", url, events).returncode == 0
        client = redis.Redis(port=port)
        source = RedisSource(url)
        batch = []
        wait_for(lambda: batch.extend(source.poll(0.2)) or len(batch) >= 1_000, timeout=10)
        wait_for(lambda: client.xpending("ev:0", "streamlearn")["pending"] > len(batch),
                 timeout=10)
        source.ack({"ev:0": 600})
        source.close()
        pending = client.xpending_range("ev:0", "streamlearn", "-", "+", 10_000)
        acked = {RedisSource.encode(record.position) for record in batch[:600]}
        assert acked.isdisjoint(entry["message_id"].decode() for entry in pending)
        assert len(pending) == client.xpending("ev:0", "streamlearn")["pending"] \
            > len(batch) - 600  # the rest of the batch and what was read ahead
        assert {RedisSource.encode(r.position) for r in batch[600:]} \
            <= {entry["message_id"].decode() for entry in pending}


def test_replies_of_either_protocol_and_extra_fields_are_read():
    """XREADGROUP replies as RESP3 (a map) and RESP2 (pairs) give the same entries; the
    event is found among other fields; a trimmed entry has none."""
    from streamlearn.service.sources import _by_stream, _event_of

    entries = [[b"1-0", [b"event", b"{}"]], [b"1-1", [b"at", b"x", b"event", b"[]"]],
               [b"1-2", None], [b"1-3", [b"at", b"x"]]]
    for reply in ({b"s:0": entries}, [[b"s:0", entries]]):
        ((stream, got),) = list(_by_stream(reply))
        assert stream == b"s:0" and [_event_of(f) for _, f in got] == [b"{}", b"[]", None, None]
    assert list(_by_stream(None)) == [] and list(_by_stream({})) == []
