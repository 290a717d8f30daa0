"""Several service processes over one partitioned Redis stream set (a real redis-server):
each owns some partitions, one is killed mid-run and restarted, and together they end with
the per-key states of the single-process file run."""

import json
import signal

import pytest
import redis

from servers import redis_server
from service_helpers import (JUNK, applied_events, event_lines, inspect, kill_when, run_cli,
                             start_cli, wait_for, write_lines)
from streamlearn.service.config import Config, parse_partition_range, parse_partitions
from streamlearn.service.sources import RedisSource, partition_of

N = 20_000
ARGS = ("--metrics-address", "none", "--checkpoint-every", "300")
OWNERS = {"a": ("--partitions", "0,1"), "b": ("--partition-range", "2-3")}
OWNED = {"a": [0, 1], "b": [2, 3]}


def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()


def test_two_processes_over_four_partitions_end_identical_to_the_file_run(tmp_path):
    lines = event_lines(N, n_keys=40, seed=5)
    share = sum(partition_of(json.loads(line)["key"], 4) in OWNED["a"] for line in lines)
    lines[50:50] = JUNK
    events = tmp_path / "events.jsonl"
    write_lines(events, lines)
    out = run_cli("run", "--source", events, "--checkpoint-dir", tmp_path / "file", *ARGS)
    assert out.returncode == 0, out.stderr
    expected = inspect(tmp_path / "file")["learners"]

    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
        assert run_cli("produce", "--target", url, events).returncode == 0
        ck = {name: tmp_path / name for name in OWNERS}
        procs = {name: start_cli("run", "--source", url, "--checkpoint-dir", ck[name],
                                 *OWNERS[name], *ARGS) for name in OWNERS}
        try:
            for fraction in (0.3, 0.7):  # "a" dies twice mid-run, "b" goes on
                kill_when(procs["a"], ck["a"], int(fraction * share))
                assert procs["a"].returncode == -signal.SIGKILL
                assert applied_events(ck["a"]) < share, "the kill must come mid-stream"
                procs["a"] = start_cli("run", "--source", url, "--checkpoint-dir", ck["a"],
                                       *OWNERS["a"], *ARGS)
            wait_for(lambda: applied_events(ck["a"]) + applied_events(ck["b"]) == N,
                     timeout=120, interval=0.2, what="every event applied")
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    _stop(proc)
        states = {name: inspect(ck[name]) for name in OWNERS}
    for name, owned in OWNED.items():
        assert states[name]["source_state"] == {"stream": "ev", "partitions": 4,
                                                "owned": owned}
        assert set(states[name]["positions"]) == {f"ev:{p}" for p in owned}
        assert states[name]["learners"] and all(
            partition_of(key, 4) in owned for key in states[name]["learners"])
    merged = {**states["a"]["learners"], **states["b"]["learners"]}
    assert len(merged) == len(states["a"]["learners"]) + len(states["b"]["learners"])
    assert merged == expected
    text = run_cli("inspect", ck["a"]).stdout.decode()
    assert "partitions: 0,1 of 4" in text


def test_a_folder_is_resumed_only_with_its_partitioning(tmp_path):
    """A checkpoint folder keeps the partitions it owns: resuming it with other partitions,
    or another partition count, is refused with the reason, and nothing is written."""
    events = tmp_path / "events.jsonl"
    write_lines(events, event_lines(2_000, n_keys=10, seed=1))
    with redis_server(tmp_path) as port:
        url = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=4"
        assert run_cli("produce", "--target", url, events).returncode == 0
        ck = tmp_path / "ck"
        proc = start_cli("run", "--source", url, "--checkpoint-dir", ck, "--partitions", "0,1",
                         *ARGS)
        wait_for(lambda: applied_events(ck) > 0, timeout=60, what="a checkpoint")
        _stop(proc)
        before = inspect(ck)
        other = f"redis://127.0.0.1:{port}/0?stream=ev&partitions=8"
        for source, owned in ((url, ("--partitions", "0")), (url, ("--partition-range", "0-2")),
                              (url, ()), (other, ("--partitions", "0,1"))):
            out = run_cli("run", "--source", source, "--checkpoint-dir", ck, *owned, *ARGS,
                          timeout=60)
            assert out.returncode == 2
            assert b"this checkpoint folder was written with partitions [0, 1] of 4" \
                in out.stderr
        assert inspect(ck) == before


def test_a_folder_of_all_partitions_written_before_partitioning_was_kept():
    """A folder written before sources kept their partitioning has positions only: it is
    resumed with any partitions that include those it has positions of."""
    url = "redis://127.0.0.1:1/0?stream=ev&partitions=4"  # refused before any connection
    with pytest.raises(ValueError, match=r"holds positions of \['ev:1', 'ev:3'\]"):
        RedisSource(url, {"ev:0": "1-0", "ev:1": "1-0", "ev:3": "2-0"}, owned=(0, 2),
                    saved_state={})
    with pytest.raises(ValueError, match=r"partitions \[4, 7\] do not exist"):
        RedisSource(url, owned=(1, 4, 7))


@pytest.mark.parametrize("text, expected", [("0,2", (0, 2)), ("3,1", (1, 3)), ("5", (5,))])
def test_partitions_flag(text, expected):
    assert parse_partitions(text) == expected


@pytest.mark.parametrize("text, expected", [("0-1", (0, 1)), ("2-2", (2,)), ("1-3", (1, 2, 3))])
def test_partition_range_flag(text, expected):
    assert parse_partition_range(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0,,1", "0;1", "1.5"])
def test_bad_partitions_flag(text):
    with pytest.raises(ValueError, match="--partitions takes"):
        parse_partitions(text)


@pytest.mark.parametrize("text", ["", "1", "3-1", "-1-2", "a-b", "0-", "0-1-2"])
def test_bad_partition_range_flag(text):
    with pytest.raises(ValueError, match="--partition-range takes"):
        parse_partition_range(text)


@pytest.mark.parametrize("value", [(1, 1), (-1,), (0.0,), ("0",), (True,)])
def test_bad_partitions_are_refused_by_the_config(tmp_path, value):
    config = tmp_path / "service.toml"
    config.write_text(f'source = "redis://127.0.0.1:6379/0?partitions=4"\n'
                      f"partitions = {list(value)!r}\n".replace("'", '"')
                      .replace("True", "true"))
    with pytest.raises(ValueError, match="partitions must be distinct ints >= 0"):
        Config.build(object(), str(config))


def test_partitions_in_the_config_file(tmp_path):
    config = tmp_path / "service.toml"
    config.write_text('source = "redis://127.0.0.1:6379/0?partitions=4"\npartitions = [2, 0]\n')
    assert Config.build(object(), str(config)).partitions == (2, 0)
