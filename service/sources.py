"""Event sources: JSON lines from a file (replayable) or stdin, and Redis Streams.

Every source yields batches of :class:`Record` (partition, position, raw line). Positions
are ordered within a partition; the service skips any record at or before the partition's
last applied position, so a replay after a crash never applies an event twice.
``poll`` returns a list (empty when idle) or None at the end of a finite input.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import zlib
from typing import Any, NamedTuple

from .events import DEFAULT_KEY

__all__ = ["Record", "FileSource", "StdinSource", "RedisSource", "RedisTarget", "open_source",
           "partition_of"]

BATCH = 1000
GROUP = "streamlearn"


class Record(NamedTuple):
    partition: str
    position: Any
    raw: bytes


def partition_of(key: str, partitions: int) -> int:
    """The partition that owns ``key``: crc32 of its UTF-8 bytes modulo the partition count."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


class FileSource:
    """A JSON-lines file; the position of a line is the byte offset just after it.

    Without ``follow`` the source ends at end of file (a last line without a newline counts);
    with ``follow`` it waits for more lines, like ``tail -f``.
    """

    name = "file"
    replayable = True
    partition = "file"

    def __init__(self, path: str, follow: bool = False, positions: dict | None = None,
                 poll_interval: float = 0.05):
        self.path = path
        self.follow = follow
        self.poll_interval = poll_interval
        self.file = open(path, "rb")
        self.file.seek(int((positions or {}).get(self.partition, 0)))

    def poll(self, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            batch = []
            while len(batch) < BATCH:
                start = self.file.tell()
                line = self.file.readline()
                if not line:
                    break
                if not line.endswith(b"\n") and self.follow:
                    self.file.seek(start)  # a line still being written
                    break
                if line.strip():
                    batch.append(Record(self.partition, self.file.tell(), line))
            if batch:
                return batch
            if not self.follow:
                return None
            if time.monotonic() >= deadline:
                return []
            time.sleep(self.poll_interval)

    @staticmethod
    def encode(position: int) -> int:
        return position

    @staticmethod
    def decode(position) -> int:
        return int(position)

    def ack(self, records: list) -> None:
        """Files need no acknowledgement: the checkpoint holds the offset."""

    def lag(self) -> dict:
        return {}

    def close(self) -> None:
        self.file.close()


class StdinSource(FileSource):
    """Standard input. Not replayable: positions count lines of this run only, so a restart
    reads whatever stdin brings next (learner states are still resumed)."""

    name = "stdin"
    replayable = False
    partition = "stdin"

    def __init__(self):
        self.follow = False
        self.file = sys.stdin.buffer
        self.line = 0

    def poll(self, timeout: float):
        """One line at a time, so an interactive producer sees each prediction at once."""
        line = self.file.readline()
        if not line:
            return None
        self.line += 1
        return [Record(self.partition, self.line, line)] if line.strip() else []

    def close(self) -> None:
        """stdin stays open."""


def _parse_redis_url(url: str) -> tuple:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url!r}")
    query = urllib.parse.parse_qs(parts.query)
    stream = query.get("stream", ["events"])[0]
    try:
        partitions = int(query.get("partitions", ["1"])[0])
    except ValueError:
        raise ValueError(f"partitions must be an int in {url!r}") from None
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    db = int(parts.path.strip("/") or 0)
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, stream, partitions


def _redis_client(url: str):
    import redis

    host, port, db, stream, partitions = _parse_redis_url(url)
    client = redis.Redis(host=host, port=port, db=db)
    streams = [f"{stream}:{p}" for p in range(partitions)]
    for name in streams:  # whoever comes first creates the group at id 0
        try:
            client.xgroup_create(name, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    return client, stream, streams


def _entry_id(raw) -> tuple:
    ms, seq = (raw.decode() if isinstance(raw, bytes) else raw).split("-")
    return int(ms), int(seq)


class RedisSource:
    """Streams ``NAME:0`` .. ``NAME:P-1`` read through the consumer group ``streamlearn``.

    On start the consumer first re-reads its pending entries (delivered before a crash but not
    acknowledged), then new ones. Entries are acknowledged only after a durable checkpoint.
    """

    name = "redis"
    replayable = True

    def __init__(self, url: str, consumer: str = "streamlearn"):
        self.client, self.stream, self.streams = _redis_client(url)
        self.consumer = consumer
        self.pending = {s: "0" for s in self.streams}  # pending-list cursor per stream

    def poll(self, timeout: float):
        if self.pending:
            stream, cursor = next(iter(self.pending.items()))
            reply = self.client.xreadgroup(GROUP, self.consumer, {stream: cursor}, count=BATCH)
            entries = reply[0][1] if reply else []
            if not entries:
                del self.pending[stream]
                return []
            self.pending[stream] = entries[-1][0]
            return [Record(stream, _entry_id(i), f.get(b"event", b"")) for i, f in entries
                    if f is not None]
        reply = self.client.xreadgroup(GROUP, self.consumer, {s: ">" for s in self.streams},
                                       count=BATCH, block=max(1, int(timeout * 1000)))
        return [Record(stream.decode(), _entry_id(i), f.get(b"event", b""))
                for stream, entries in (reply or []) for i, f in entries]

    @staticmethod
    def encode(position: tuple) -> str:
        return f"{position[0]}-{position[1]}"

    @staticmethod
    def decode(position) -> tuple:
        return _entry_id(position)

    def ack(self, records: list) -> None:
        by_stream: dict = {}
        for rec in records:
            by_stream.setdefault(rec.partition, []).append(self.encode(rec.position))
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
        pipe.execute()

    def prediction_sink(self):
        """Predictions also go to the stream ``NAME:predictions`` (trimmed to about 1M)."""
        return _RedisSink(self.client, f"{self.stream}:predictions")

    def lag(self) -> dict:
        out = {}
        for stream in self.streams:
            for group in self.client.xinfo_groups(stream):
                if group["name"] in (GROUP, GROUP.encode()) and group.get("lag") is not None:
                    out[stream] = group["lag"]
        return out

    def close(self) -> None:
        self.client.close()


class _RedisSink:
    """A write/flush file-like object that appends each line to a stream, pipelined."""

    def __init__(self, client, stream: str, maxlen: int = 1_000_000):
        self.pipe = client.pipeline(transaction=False)
        self.stream, self.maxlen = stream, maxlen

    def write(self, line: str) -> None:
        self.pipe.xadd(self.stream, {"prediction": line.rstrip("\n")}, maxlen=self.maxlen,
                       approximate=True)

    def flush(self) -> None:
        self.pipe.execute()

    def close(self) -> None:
        self.flush()


class RedisTarget:
    """Publishes JSON lines into the partitioned streams (``streamlearn-service produce``)."""

    def __init__(self, url: str):
        self.client, self.stream, self.streams = _redis_client(url)

    def publish(self, lines) -> int:
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for line in lines:
            if not line.strip():
                continue
            pipe.xadd(self.streams[partition_of(_key_of(line), len(self.streams))],
                      {"event": line})
            count += 1
            if count % BATCH == 0:
                pipe.execute()
        pipe.execute()
        return count


def _key_of(line: bytes) -> str:
    """The event's key for routing; lines that are not events go with the default key (the
    consumer dead-letters them)."""
    try:
        key = json.loads(line).get("key", DEFAULT_KEY)
    except (ValueError, UnicodeDecodeError, AttributeError):
        return DEFAULT_KEY
    return key if isinstance(key, str) else DEFAULT_KEY


def open_source(spec: str, follow: bool, positions: dict):
    """A source from the ``--source`` argument: a path, ``-`` or a ``redis://`` URL."""
    if spec == "-":
        return StdinSource()
    if spec.startswith("redis://"):
        return RedisSource(spec)
    return FileSource(spec, follow=follow, positions=positions)
