"""Crash-safe checkpoints: learner states in append-only segment files plus an atomically
replaced manifest.

A learner's bytes (its ``to_bytes()``) are appended to the open segment ``DIR/segments/N``
and located by ``{"segment", "offset", "length", "sha256"}`` (verified on read). Committing
fsyncs the open segment, then writes ``DIR/manifest.json`` (the reference of every learner,
its event count and the last applied source positions) to a temp file, fsyncs it, renames it
over the old one and fsyncs the folder: that rename is the single commit point, so learner
states and positions always match, with one segment fsync per checkpoint whatever the number
of learners. The previous manifest is kept as ``manifest.prev.json``; a damaged manifest is
reported and the previous one used. Segments referenced by neither are deleted; learners still
living in a mostly-dead segment are copied forward first, so the folder stays within about
twice the live state. Nothing here unpickles anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os

__all__ = ["CheckpointStore", "CheckpointError"]

log = logging.getLogger(__name__)
FORMAT = 2
# A segment whose live bytes fall below this fraction is compacted into the open segment.
COMPACT_BELOW = 0.5


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back intact."""


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(body: dict) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"body": body, "sha256": digest}, sort_keys=True,
                      separators=(",", ":")).encode()


def _unseal(data: bytes) -> dict:
    try:
        outer = json.loads(data)
        body = outer["body"]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        ok = hashlib.sha256(text.encode()).hexdigest() == outer["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"unreadable manifest: {exc}") from None
    if not ok:
        raise CheckpointError("manifest checksum mismatch")
    if body.get("format") != FORMAT:
        raise CheckpointError(f"unsupported manifest format {body.get('format')!r}")
    return body


class CheckpointStore:
    """Segments and manifests in one folder."""

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        self.segments = os.path.join(self.directory, "segments")
        os.makedirs(self.segments, exist_ok=True)
        self.manifest_path = os.path.join(self.directory, "manifest.json")
        self.previous_path = os.path.join(self.directory, "manifest.prev.json")
        existing = [int(name) for name in os.listdir(self.segments) if name.isdigit()]
        self._next_segment = max(existing, default=-1) + 1
        self._open = None  # (name, file) of the segment being appended to

    def lock(self) -> None:
        """Take the folder for this process (an exclusive flock on ``DIR/lock``, released
        when the process ends, however it ends): two writers would corrupt each other."""
        self._lock = open(os.path.join(self.directory, "lock"), "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CheckpointError(f"{self.directory} is in use by another streamlearn-service "
                                  "process") from None

    def _segment_path(self, name: str) -> str:
        return os.path.join(self.segments, name)

    def put(self, data: bytes) -> dict:
        """Append bytes to the open segment (durable at the next commit); return their
        reference."""
        if self._open is None:
            name = str(self._next_segment)
            self._next_segment += 1
            self._open = (name, open(self._segment_path(name), "ab"))
        name, f = self._open
        offset = f.tell()
        f.write(data)
        return {"segment": name, "offset": offset, "length": len(data),
                "sha256": hashlib.sha256(data).hexdigest()}

    def get(self, ref: dict) -> bytes:
        """The bytes behind a reference, verified against its SHA-256."""
        if self._open is not None and self._open[0] == ref["segment"]:
            self._open[1].flush()
        try:
            with open(self._segment_path(ref["segment"]), "rb") as f:
                f.seek(ref["offset"])
                data = f.read(ref["length"])
        except OSError as exc:
            raise CheckpointError(f"segment {ref['segment']} is unreadable: {exc}") from None
        if hashlib.sha256(data).hexdigest() != ref["sha256"]:
            raise CheckpointError(f"learner bytes in segment {ref['segment']} are corrupt")
        return data

    def commit(self, positions: dict, learners: dict, source: str,
               source_state: dict | None = None) -> None:
        """Atomically make (positions, learners) the checkpoint; ``learners`` maps a key to
        its reference plus ``events``; ``source_state`` is what the source keeps besides
        positions (a file's identity)."""
        if self._open is not None:
            name, f = self._open
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._open = None
            _fsync_path(self.segments)
        data = _seal({"format": FORMAT, "source": source, "positions": positions,
                      "source_state": source_state or {}, "learners": learners})
        if os.path.exists(self.manifest_path):
            os.replace(self.manifest_path, self.previous_path)
        tmp = self.manifest_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.manifest_path)
        _fsync_path(self.directory)
        self._collect_garbage(learners)

    def _previous_learners(self) -> dict:
        try:
            with open(self.previous_path, "rb") as f:
                return _unseal(f.read())["learners"]
        except (OSError, CheckpointError):
            return {}

    def to_compact(self, refs: dict) -> list:
        """Keys (of ``refs``: key -> reference) whose bytes sit in a closed segment that is
        mostly dead; putting them again lets that segment be deleted."""
        live: dict = {}
        for ref in refs.values():
            live[ref["segment"]] = live.get(ref["segment"], 0) + ref["length"]
        open_name = self._open[0] if self._open else None
        sparse = {name for name, size in live.items() if name != open_name
                  and size < COMPACT_BELOW * os.path.getsize(self._segment_path(name))}
        return [key for key, ref in refs.items() if ref["segment"] in sparse]

    def _collect_garbage(self, learners: dict) -> None:
        keep = {ref["segment"] for ref in learners.values()}
        keep |= {ref["segment"] for ref in self._previous_learners().values()}
        for name in os.listdir(self.segments):
            if name not in keep:
                os.remove(self._segment_path(name))

    def load(self) -> dict | None:
        """The newest intact manifest (``positions``, ``learners``, ``source``), or None.

        A damaged newest manifest is logged and the previous one used; if no manifest exists
        at all the store is empty; if every one present is damaged, CheckpointError.
        """
        errors = []
        for path in (self.manifest_path, self.previous_path):
            if not os.path.exists(path):
                continue
            try:
                with open(path, "rb") as f:
                    body = _unseal(f.read())
                for ref in body["learners"].values():
                    size = os.path.getsize(self._segment_path(ref["segment"]))
                    if ref["offset"] + ref["length"] > size:
                        raise CheckpointError(f"segment {ref['segment']} is truncated")
            except (OSError, CheckpointError) as exc:
                log.error("checkpoint %s is damaged (%s); trying the previous one", path, exc)
                errors.append(f"{os.path.basename(path)}: {exc}")
                continue
            return body
        if errors:
            raise CheckpointError("no intact checkpoint in " + self.directory + ": "
                                  + "; ".join(errors))
        return None
