"""Event sources: JSON lines from a file (replayable) or stdin, and Redis Streams.

Every source yields batches of :class:`Record` (partition, position, raw line). Positions
are ordered within a partition; the service skips any record at or before the partition's
last applied position, so a replay after a crash never applies an event twice.
``poll`` returns a list (empty when idle) or None at the end of a finite input; it returns
within about its ``timeout`` whatever the input does, so the service answers SIGTERM and
checkpoints when idle. A record whose ``raw`` is None was lost before it could be read (a
trimmed Redis entry). Sources that talk to a server raise :class:`SourceError` for a fault
the service should ride out (it retries later) and report each fault to ``on_error(kind)``;
their ``failing`` is true from a fault until the server answers again (files never fail).
"""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import logging
import os
import queue
import select
import sys
import threading
import time
import urllib.parse
import zlib
from typing import Any, NamedTuple

from .events import DEFAULT_KEY, Limits

__all__ = ["Record", "FileSource", "StdinSource", "RedisSource", "RedisTarget", "SourceError",
           "open_source", "partition_of"]

log = logging.getLogger("streamlearn.service")

BATCH = 1000
ACK_CHUNK = 10_000  # ids per acknowledging script call (Redis serves no one else meanwhile)
# KEYS[1]: a stream; ARGV[1]: the group; ARGV[2]: entry ids joined by spaces. One argument
# instead of one per id: redis-py packs each argument in Python, in the service's thread.
# XACK takes at most 1,000 ids at a time here (unpack's limit on Lua's stack).
ACK_SCRIPT = r"""
    local ids, n = {}, 0
    for id in string.gmatch(ARGV[2], "%S+") do
        ids[#ids + 1] = id
        if #ids == 1000 then
            n = n + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
            ids = {}
        end
    end
    if #ids > 0 then n = n + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids)) end
    return n
"""
GROUP = "streamlearn"
READ_SIZE = 1 << 16
# Bytes at the start of a file that identify it across restarts (with device and inode).
FINGERPRINT_BYTES = 1024


class Record(NamedTuple):
    partition: str
    position: Any
    raw: bytes | None


class SourceError(RuntimeError):
    """A fault of the broker or its connection that the service rides out."""


def partition_of(key: str, partitions: int) -> int:
    """The partition that owns ``key``: crc32 of its UTF-8 bytes modulo the partition count."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


class _Lines:
    """Complete lines from a file descriptor, read in chunks (never a blocking read of an
    unbounded line). A line longer than ``max_bytes`` is skipped as it streams past and
    returned as its first ``max_bytes + 1`` bytes, which the event parser rejects as
    ``line_too_long``; memory stays bounded by the limit."""

    def __init__(self, fd: int, max_bytes: int, offset: int = 0):
        self.fd, self.max_bytes = fd, max_bytes
        self.offset = offset          # bytes of the input consumed by the lines returned
        self.buf = b""
        self.pos = 0                  # start of the unreturned part of buf
        self.skipping = None          # prefix of an over-long line still streaming past
        # the input's first bytes as read (when reading starts at 0)
        self.head = b"" if offset == 0 else None

    def fill(self) -> bool:
        """Read one chunk; False at end of input (or nothing available yet)."""
        data = os.read(self.fd, READ_SIZE)
        if data:
            self.buf = self.buf[self.pos:] + data
            self.pos = 0
            if self.head is not None and len(self.head) < FINGERPRINT_BYTES:
                self.head += data[:FINGERPRINT_BYTES - len(self.head)]
        return bool(data)

    def lines(self, limit: int) -> list:
        """Up to ``limit`` (raw line, offset after it) of the complete lines buffered."""
        out, buf = [], self.buf
        while len(out) < limit:
            end = buf.find(b"\n", self.pos)
            if end < 0:
                if self.skipping is None and len(buf) - self.pos > self.max_bytes:
                    self.skipping = buf[self.pos:self.pos + self.max_bytes + 1]
                if self.skipping is not None:  # drop what streamed past
                    self.offset += len(buf) - self.pos
                    self.pos = len(buf)
                break
            self.offset += end + 1 - self.pos
            if self.skipping is not None:
                raw, self.skipping = self.skipping, None
            elif end - self.pos > self.max_bytes:
                raw = buf[self.pos:self.pos + self.max_bytes + 1]
            else:
                raw = buf[self.pos:end + 1]
            self.pos = end + 1
            out.append((raw, self.offset))
        return out

    def rest(self):
        """The last line if it has no newline (at end of input), as (raw, offset) or None."""
        if self.skipping is None and self.pos == len(self.buf):
            return None
        raw = self.skipping if self.skipping is not None else self.buf[self.pos:]
        self.offset += len(self.buf) - self.pos
        self.pos, self.skipping = len(self.buf), None
        return raw, self.offset


class FileSource:
    """A JSON-lines file; a line's position is (epoch, byte offset just after it).

    Without ``follow`` the source ends at end of file (a last line without a newline counts);
    with ``follow`` it waits for more lines and, like ``tail -F``, notices when the file is
    rotated (renamed away and replaced), truncated or rewritten in place: it logs it, reads
    the rest of the old file and goes on with the new content from its start in a new epoch,
    so positions stay ordered. The checkpoint keeps, with the position, the file's identity
    (device, inode, SHA-256 of its first bytes): a restart against another file reads that
    file from the start, in a new epoch, and logs why.
    """

    name = "file"
    replayable = True
    failing = False
    partition = "file"

    def __init__(self, path: str, follow: bool = False, positions: dict | None = None,
                 state: dict | None = None, limits: Limits = Limits(),
                 poll_interval: float = 0.05):
        self.path = path
        self.follow = follow
        self.limits = limits
        self.poll_interval = poll_interval
        self.file = open(path, "rb")
        self.identities: dict = {}  # epoch -> identity of a finished file
        self.epoch, offset = self._resume(positions or {}, state or {})
        self.file.seek(offset)
        self.lines = _Lines(self.file.fileno(), limits.max_line_bytes, offset)
        if offset:  # resumed: the first bytes as they are now (they matched the checkpoint)
            self.lines.head = os.pread(self.file.fileno(), FINGERPRINT_BYTES, 0)

    def _identity(self, length: int) -> dict:
        """Device, inode and the SHA-256 of the first ``length`` bytes (at most
        FINGERPRINT_BYTES) of the current file, as they were read."""
        st = os.fstat(self.file.fileno())
        first = self.lines.head[:min(length, FINGERPRINT_BYTES)]
        return {"dev": st.st_dev, "ino": st.st_ino, "bytes": len(first),
                "sha256": hashlib.sha256(first).hexdigest()}

    def _resume(self, positions: dict, state: dict) -> tuple:
        """(epoch, offset) to start from, given the checkpoint's position and identities."""
        saved = positions.get(self.partition)
        if saved is None:
            return 0, 0
        epoch, offset = self.decode(saved)
        known = state.get("files", {}).get(str(epoch))
        size = os.fstat(self.file.fileno()).st_size
        if known is None:
            why = "the checkpoint does not identify its file"
            if size >= offset:  # a checkpoint written before files were identified
                log.warning("%s: %s; resuming at byte %d", self.path, why, offset)
                return epoch, offset
        elif size < offset:
            why = f"it is shorter ({size} bytes) than the saved position ({offset})"
        else:
            st = os.fstat(self.file.fileno())
            first = os.pread(self.file.fileno(), known["bytes"], 0)
            why = ("its device and inode differ" if (st.st_dev, st.st_ino)
                   != (known["dev"], known["ino"]) else "its first bytes differ"
                   if hashlib.sha256(first).hexdigest() != known["sha256"] else None)
            if why is None:
                return epoch, offset
        log.warning("%s is not the file of the checkpoint (%s): reading it from the start",
                    self.path, why)
        return epoch + 1, 0

    def _records(self, lines) -> list:
        return [Record(self.partition, (self.epoch, end), raw) for raw, end in lines
                if raw.strip()]

    def poll(self, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            batch = self._records(self.lines.lines(BATCH))
            if batch:
                return batch
            if self.follow:  # before reading on: what follows may be another file's bytes
                batch = self._rotate()
                if batch:
                    return batch
            if self.lines.fill():
                continue
            if not self.follow:
                rest = self.lines.rest()
                return self._records([rest]) if rest else None
            if time.monotonic() >= deadline:
                return []
            time.sleep(self.poll_interval)

    def _rotate(self) -> list:
        """At end of file with ``follow``: if the path now names another file, or this one
        was truncated or rewritten, switch to the new content (a new epoch); returns the
        old file's last records (a last line without a newline counts then)."""
        fd = self.file.fileno()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []  # renamed away, not yet replaced: keep waiting
        mine = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            why = "was rotated (renamed and replaced)"
        elif st.st_size < self.lines.offset + len(self.lines.buf) - self.lines.pos:
            why = "was truncated"
        elif self._rewritten():
            why = "was rewritten"
        else:
            return []
        if why.startswith("was rotated"):
            while self.lines.fill():  # what was written before the rename
                pass
        last = self._records(self.lines.lines(1 << 62) + [r for r in [self.lines.rest()] if r]) \
            if why.startswith("was rotated") else []
        self.identities[self.epoch] = self._identity(self.lines.offset)
        log.warning("%s %s at byte %d: reading the new content from its start", self.path,
                    why, self.lines.offset)
        if why.startswith("was rotated"):
            self.file.close()
            self.file = open(self.path, "rb")
        self.epoch += 1
        self.file.seek(0)
        self.lines = _Lines(self.file.fileno(), self.limits.max_line_bytes)
        return last

    def _rewritten(self) -> bool:
        """Whether the file's first bytes differ from those read (a copytruncate followed
        by at least as many new bytes as were read before)."""
        head = self.lines.head
        return bool(head) and os.pread(self.file.fileno(), len(head), 0) != head

    def state(self, positions: dict) -> dict:
        """What the checkpoint keeps besides ``positions``: the identity of the file each
        checkpointed position is in."""
        saved = positions.get(self.partition)
        if saved is None:
            return {}
        epoch, offset = saved
        identity = self.identities.get(epoch) if epoch != self.epoch \
            else self._identity(offset)
        return {"files": {str(epoch): identity}} if identity else {}

    @staticmethod
    def encode(position: tuple) -> list:
        return list(position)

    @staticmethod
    def decode(position) -> tuple:
        """(epoch, offset); a bare offset is a checkpoint from before epochs (epoch 0)."""
        if isinstance(position, list) and len(position) == 2:
            return int(position[0]), int(position[1])
        return 0, int(position)

    def ack(self, counts: dict) -> None:
        """Files need no acknowledgement: the checkpoint holds the offset."""

    def lag(self) -> dict:
        return {}

    def close(self) -> None:
        self.file.close()


class StdinSource:
    """Standard input, read without blocking for longer than ``poll``'s timeout. Not
    replayable: positions count lines of this run only, so a restart reads whatever stdin
    brings next (learner states are still resumed)."""

    name = "stdin"
    replayable = False
    failing = False
    partition = "stdin"

    def __init__(self, limits: Limits = Limits(), stream=None):
        self.fd = (stream or sys.stdin.buffer).fileno()
        self.lines = _Lines(self.fd, limits.max_line_bytes)
        self.line = 0
        self.ended = False

    def poll(self, timeout: float):
        """Lines as soon as they arrive, so an interactive producer sees each prediction at
        once; [] when nothing came within ``timeout``."""
        batch = self._records(self.lines.lines(BATCH))
        if batch or self.ended:
            return batch or None
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if not readable:
            return []
        if not self.lines.fill():
            self.ended = True
            rest = self.lines.rest()
            return self._records([rest]) if rest else None
        return self._records(self.lines.lines(BATCH))

    def _records(self, lines) -> list:
        out = []
        for raw, _ in lines:
            self.line += 1
            if raw.strip():
                out.append(Record(self.partition, self.line, raw))
        return out

    def state(self, positions: dict) -> dict:
        return {}

    @staticmethod
    def encode(position: int) -> int:
        return position

    @staticmethod
    def decode(position) -> int:
        return int(position)

    def ack(self, counts: dict) -> None:
        """Nothing to acknowledge."""

    def lag(self) -> dict:
        return {}

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
        timeout = float(query.get("timeout", ["0.5"])[0])
    except ValueError:
        raise ValueError(f"partitions must be an int and timeout a number in {url!r}") from None
    if partitions < 1 or not timeout > 0:
        raise ValueError("partitions must be >= 1 and timeout > 0")
    db = int(parts.path.strip("/") or 0)
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, stream, partitions, timeout


def _redis_client(url: str):
    """A client that fails fast (socket timeouts, no retries of its own: the source retries
    with backoff and stays responsive to SIGTERM), the stream names, and the timeout."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    host, port, db, stream, partitions, timeout = _parse_redis_url(url)
    client = redis.Redis(host=host, port=port, db=db, socket_timeout=timeout,
                         socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
    # entries as the protocol gives them, [id, [field, value, ...] or None]: redis-py's
    # reply parser builds a dict per entry, in Python, on the GIL the learners need
    client.set_response_callback("XREADGROUP", lambda response, **_: response)
    return client, stream, [f"{stream}:{p}" for p in range(partitions)], timeout


def owned_streams(url: str, owned: tuple) -> tuple:
    """(streams, state) of the partitions ``owned`` (all if empty) of a ``redis://`` URL:
    the names of their streams and the source state a checkpoint keeps, so that a
    checkpoint folder is never resumed with another partitioning."""
    _, _, _, stream, partitions, _ = _parse_redis_url(url)
    outside = [p for p in owned if p >= partitions]
    if outside:
        raise ValueError(f"partitions {outside} do not exist: the source {url!r} has "
                         f"partitions 0..{partitions - 1}")
    owned = tuple(sorted(owned)) or tuple(range(partitions))
    state = {"stream": stream, "partitions": partitions, "owned": list(owned)}
    return [f"{stream}:{p}" for p in owned], state


def _check_resumed(state: dict, saved: dict | None, positions: dict) -> None:
    """Refuse to resume a checkpoint written with another partitioning: its keys would now
    belong to other partitions, or its partitions' keys to another process."""
    def describe(s):
        return f"partitions {s['owned']} of {s['partitions']} of stream {s['stream']!r}"
    if saved and "owned" in saved:
        if saved != state:
            raise ValueError(f"this checkpoint folder was written with {describe(saved)}, "
                             f"not {describe(state)}: give each set of partitions its own "
                             "folder (changing the partitioning of a folder is not supported)")
        return
    mine = {f"{state['stream']}:{p}" for p in state["owned"]}
    others = sorted(p for p in positions if p.startswith(f"{state['stream']}:")
                    and p not in mine)
    if others:  # a folder written before sources kept their partitioning
        raise ValueError(f"this checkpoint folder holds positions of {others}, which "
                         f"{describe(state)} does not own")


def _create_groups(client, streams, positions: dict) -> None:
    """Create the consumer group on each stream at its position (id 0 when none), with
    MKSTREAM; a group that exists is left as it is."""
    import redis

    for name in streams:
        try:
            client.xgroup_create(name, GROUP, id=positions.get(name, "0"), mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _by_stream(reply):
    """(stream, entries) pairs of an XREADGROUP reply: a map in RESP3, pairs in RESP2,
    None when nothing came."""
    if not reply:
        return ()
    return reply.items() if isinstance(reply, dict) else reply


def _event_of(fields):
    """The ``event`` field's value among an entry's [field, value, ...], or None."""
    if not fields:
        return None
    if fields[0] == b"event":
        return fields[1]
    return dict(zip(fields[0::2], fields[1::2])).get(b"event")


def _entry_id(raw) -> tuple:
    ms, seq = (raw.decode() if isinstance(raw, bytes) else raw).split("-")
    return int(ms), int(seq)


class RedisSource:
    """Streams ``NAME:0`` .. ``NAME:P-1`` (or those of the partitions ``owned``) read
    through the consumer group ``streamlearn``. Processes that own disjoint partitions share
    the group: each stream has its own group state, so they never see each other's entries.

    On start, and after any fault, the consumer first re-reads its pending entries
    (delivered but not acknowledged: by a run that crashed, or in a reply lost with its
    connection), then new ones. Entries are acknowledged only after a durable checkpoint.
    Connection faults and timeouts are retried with capped exponential backoff; a deleted
    stream or consumer group is recreated at the last position applied, so nothing is read
    twice or skipped. Entries trimmed away while pending come back as lost records.

    A reader thread reads ahead (at most ``PREFETCH`` batches), so that the round trips
    to Redis overlap with learning; ``poll`` takes the batches it read. Batches read but not
    taken when the source closes were never applied nor acknowledged: Redis keeps them
    pending, and the next run reads them again.
    """

    name = "redis"
    replayable = True
    BACKOFF = (0.25, 5.0)  # first and longest wait between retries, seconds
    PREFETCH = 2

    def __init__(self, url: str, positions: dict | None = None, consumer: str = "streamlearn",
                 on_error=None, owned: tuple = (), saved_state: dict | None = None):
        self.streams, self._state = owned_streams(url, owned)
        _check_resumed(self._state, saved_state, positions or {})
        self.client, self.stream, _, self.timeout = _redis_client(url)
        self.consumer = consumer
        self.on_error = on_error
        self.delivered = {s: p for s, p in (positions or {}).items() if s in self.streams}
        self.pending: dict = {}  # pending-list cursor per stream (the reader's own)
        self._reread = True      # read the pending lists first: set at start, after faults
        self.wait = 0.0
        self.retry_at = 0.0
        self._batches: queue.Queue = queue.Queue(self.PREFETCH)
        # stream -> ids read and not acknowledged yet, (ms, seq) flat: 16 bytes an entry,
        # where the records would hold their bytes until the checkpoint
        self._read_ids: dict = {}
        self._read_lock = threading.Lock()
        self._closing = threading.Event()
        self._reader = None  # started by the first poll
        self._ack_script = self.client.register_script(ACK_SCRIPT)
        try:
            self._call(lambda: _create_groups(self.client, self.streams, self.delivered))
        except SourceError:
            pass  # created when Redis answers (a missing group is recreated on read)

    def _fault(self, kind: str, exc: Exception) -> None:
        self.wait = min(self.BACKOFF[1], max(self.BACKOFF[0], 2 * self.wait))
        self.retry_at = time.monotonic() + self.wait
        self._reread = True  # a lost reply may hold entries: the reader re-reads them
        log.warning("redis: %s (%s); retrying in %.2f s", kind, exc, self.wait)
        if self.on_error is not None:
            self.on_error(kind)

    def _call(self, action):
        """Run ``action`` against Redis; SourceError (after counting) on a fault, and at
        once while backing off from the last one (nothing waits on a dead server twice)."""
        import redis

        if time.monotonic() < self.retry_at:
            raise SourceError(f"redis is not answering; retrying in "
                              f"{self.retry_at - time.monotonic():.2f} s")
        try:
            result = action()
        except redis.TimeoutError as exc:
            self._fault("timeout", exc)
        except redis.ConnectionError as exc:
            self._fault("connection", exc)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._fault("missing_group", exc)
            try:  # the stream or its group was deleted: recreate at what was applied
                _create_groups(self.client, self.streams, self.delivered)
            except redis.RedisError:
                pass  # retried at the next fault
        else:
            self.wait = 0.0
            return result
        raise SourceError(f"redis is not answering as expected; retrying in {self.wait:.2f} s")

    @property
    def failing(self) -> bool:
        """Since the last fault, no call has answered."""
        return self.wait > 0

    def poll(self, timeout: float):
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_ahead, daemon=True,
                                            name="streamlearn-redis-reader")
            self._reader.start()
        try:
            batch = self._batches.get(timeout=timeout)
        except queue.Empty:
            return []
        if isinstance(batch, BaseException):  # what the reader could not handle
            raise batch
        return batch

    def _read_ahead(self) -> None:
        """The reader thread: batches into the queue until the source closes."""
        try:
            while not self._closing.is_set():
                batch = self._read_batch(0.2)
                while batch and not self._closing.is_set():
                    try:
                        self._batches.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # noqa: BLE001 - handed to poll, which raises it
            self._batches.put(exc)

    def _read_batch(self, timeout: float) -> list:
        now = time.monotonic()
        if now < self.retry_at:
            time.sleep(min(timeout, self.retry_at - now))
            return []
        try:
            return self._call(lambda: self._read(timeout))
        except SourceError:
            return []

    def _read(self, timeout: float) -> list:
        if self._reread:
            self._reread = False
            self.pending = {s: "0" for s in self.streams}
        if self.pending:
            stream, cursor = next(iter(self.pending.items()))
            reply = self.client.xreadgroup(GROUP, self.consumer, {stream: cursor}, count=BATCH)
            entries = next((entries for _, entries in _by_stream(reply)), [])
            if not entries:
                del self.pending[stream]
                return []
            self.pending[stream] = entries[-1][0]
            return self._records(stream, entries)
        block = max(1, int(min(timeout, self.timeout / 2) * 1000))  # below the socket timeout
        reply = self.client.xreadgroup(GROUP, self.consumer, {s: ">" for s in self.streams},
                                       count=BATCH, block=block)
        return [record for stream, entries in _by_stream(reply)
                for record in self._records(stream.decode(), entries)]

    def _records(self, stream: str, entries) -> list:
        """Records of one stream's entries; an entry whose fields are gone (trimmed while
        pending) is a lost record, logged with the range of ids."""
        out, lost = [], []
        for entry_id, fields in entries:
            raw = _event_of(fields)
            if raw is None:
                lost.append(entry_id)
            out.append(Record(stream, _entry_id(entry_id), raw))
        if lost:
            log.warning("redis: %d entries of %s were trimmed before they were applied (ids "
                        "%s to %s): lost", len(lost), stream, lost[0].decode(),
                        lost[-1].decode())
        if out:
            self.delivered[stream] = self.encode(out[-1].position)
            with self._read_lock:
                self._read_ids.setdefault(stream, array.array("Q")).extend(
                    itertools.chain.from_iterable(record.position for record in out))
        return out

    @staticmethod
    def encode(position: tuple) -> str:
        return f"{position[0]}-{position[1]}"

    @staticmethod
    def decode(position) -> tuple:
        return _entry_id(position)

    def state(self, positions: dict) -> dict:
        """The partitioning: the stream, its partition count and the partitions owned."""
        return self._state

    def ack(self, counts: dict) -> None:
        """Acknowledge the first ``counts[stream]`` entries read from each stream since the
        last ack (the service handles them in the order read), pipelined. If that fails,
        the reader reads the pending entries again: the service skips them as duplicates
        and acknowledges them with its next checkpoint."""
        by_stream: dict = {}
        with self._read_lock:
            for stream, count in counts.items():
                ids = self._read_ids.get(stream)
                if ids:
                    by_stream[stream] = ids[:2 * count]
                    del ids[:2 * count]

        def send(stream, chunk):
            self._ack_script(keys=[stream], args=[GROUP, " ".join(
                map("{}-{}".format, chunk[0::2], chunk[1::2]))])
        # a chunk at a time: a million ids as strings would take more memory than the
        # learners
        try:
            for stream, ids in by_stream.items():
                for start in range(0, len(ids), 2 * ACK_CHUNK):
                    self._call(lambda: send(stream, ids[start:start + 2 * ACK_CHUNK]))
        except SourceError:  # the reader reads the pending entries again: duplicates now
            self._reread = True

    def prediction_sink(self):
        """Predictions also go to the stream ``NAME:predictions`` (trimmed to about 1M)."""
        return _RedisSink(self, f"{self.stream}:predictions")

    def lag(self) -> dict:
        import redis

        out = {}

        def read():
            for stream in self.streams:
                try:
                    groups = self.client.xinfo_groups(stream)
                except redis.ResponseError:  # deleted: the next read recreates it
                    continue
                for group in groups:
                    if group["name"] in (GROUP, GROUP.encode()) and group.get("lag") is not None:
                        out[stream] = group["lag"]
        try:
            self._call(read)
        except SourceError:
            pass
        return out

    def close(self) -> None:
        self._closing.set()
        if self._reader is not None:
            self._reader.join(timeout=2 * self.timeout + 1)
        self.client.close()


class _RedisSink:
    """A write/flush file-like object that appends each line to a stream. Lines stay
    buffered until a flush has written them: a flush that fails (SourceError) keeps them for
    the next one, and the service does not checkpoint past unwritten predictions. A flush is
    one script call per CHUNK lines, joined into one argument (a pipeline of XADDs, and then
    one argument per line, spent most of a Redis run packing arguments)."""

    CHUNK = 10_000
    # KEYS[1]: the stream; ARGV[1]: its approximate maximum length; ARGV[2]: the lines, each
    # ended by a newline (JSON lines hold none)
    SCRIPT = r"""
        local n = 0
        for line in string.gmatch(ARGV[2], "([^\n]*)\n") do
            redis.call('XADD', KEYS[1], '*', 'prediction', line)
            n = n + 1
        end
        redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[1])
        return n
    """

    def __init__(self, source: RedisSource, stream: str, maxlen: int = 1_000_000):
        self.source, self.stream, self.maxlen = source, stream, maxlen
        self.lines: list = []
        self.script = source.client.register_script(self.SCRIPT)

    def write(self, line: str) -> None:
        self.lines.append(line)  # ends with its newline

    def flush(self) -> None:
        while self.lines:
            chunk = self.lines[:self.CHUNK]
            self.source._call(lambda: self.script(keys=[self.stream],
                                                  args=[self.maxlen, "".join(chunk)]))
            del self.lines[:len(chunk)]

    def close(self) -> None:
        try:
            self.flush()
        except SourceError:
            log.warning("redis: %d predictions were not written (they are written again "
                        "when their events are replayed)", len(self.lines))


class RedisTarget:
    """Publishes JSON lines into the partitioned streams (``streamlearn-service produce``)."""

    def __init__(self, url: str):
        self.client, self.stream, self.streams, _ = _redis_client(url)
        _create_groups(self.client, self.streams, {})

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
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return DEFAULT_KEY
    return key if isinstance(key, str) else DEFAULT_KEY


def open_source(spec: str, follow: bool, positions: dict, state: dict | None = None,
                limits: Limits = Limits(), on_error=None, partitions: tuple = ()):
    """A source from the ``--source`` argument: a path, ``-`` or a ``redis://`` URL, of
    which ``partitions`` (all if empty) are consumed."""
    if spec.startswith("redis://"):
        return RedisSource(spec, positions, on_error=on_error, owned=partitions,
                           saved_state=state)
    if partitions:
        raise ValueError("--partitions and --partition-range select partitions of a "
                         "redis:// source; a file or stdin has one")
    if spec == "-":
        return StdinSource(limits)
    return FileSource(spec, follow=follow, positions=positions, state=state, limits=limits)
