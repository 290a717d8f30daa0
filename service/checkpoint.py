"""Crash-safe checkpoints: content-addressed learner blobs plus an atomically replaced manifest.

``DIR/learners/<sha256>`` holds one learner's ``to_bytes()``, named by its SHA-256 (immutable,
verified on read). ``DIR/manifest.json`` names the blob and event count of every learner and
the last applied source positions: replacing it (temp file, fsync, ``os.replace``, fsync of
the folder) is the single commit point, so learner states and positions always match. The
previous manifest is kept as ``manifest.prev.json``: a damaged manifest is reported and the
previous one used. Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

__all__ = ["CheckpointStore", "CheckpointError"]

log = logging.getLogger(__name__)
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read back intact."""


def _write_atomic(path: str, data: bytes, sync: bool = True) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(body: dict) -> bytes:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"body": body, "sha256": digest}, sort_keys=True, indent=1).encode()


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
    """Learner blobs and manifests in one folder."""

    def __init__(self, directory: str):
        self.directory = os.path.abspath(directory)
        self.blobs = os.path.join(self.directory, "learners")
        os.makedirs(self.blobs, exist_ok=True)
        self.manifest_path = os.path.join(self.directory, "manifest.json")
        self.previous_path = os.path.join(self.directory, "manifest.prev.json")
        self._unsynced: set = set()

    def put_blob(self, data: bytes) -> str:
        """Store bytes under their SHA-256 (made durable by the next commit); return the digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.blobs, digest)
        if not os.path.exists(path):
            _write_atomic(path, data, sync=False)
            self._unsynced.add(path)
        return digest

    def get_blob(self, digest: str) -> bytes:
        try:
            with open(os.path.join(self.blobs, digest), "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CheckpointError(f"learner blob {digest} is missing: {exc}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"learner blob {digest} is corrupt")
        return data

    def commit(self, positions: dict, learners: dict, source: str) -> None:
        """Atomically make (positions, learners) the checkpoint. Blobs must be stored first."""
        for key, entry in learners.items():
            if not os.path.exists(os.path.join(self.blobs, entry["sha256"])):
                raise CheckpointError(f"learner {key!r} refers to a blob that was never stored")
        for path in self._unsynced:
            if os.path.exists(path):
                _fsync_file(path)
        self._unsynced.clear()
        _fsync_file(self.blobs)
        data = _seal({"format": FORMAT, "source": source, "positions": positions,
                      "learners": learners})
        if os.path.exists(self.manifest_path):
            os.replace(self.manifest_path, self.previous_path)
        _write_atomic(self.manifest_path, data)
        _fsync_file(self.directory)
        self._collect_garbage(learners)

    def _collect_garbage(self, learners: dict) -> None:
        keep = {entry["sha256"] for entry in learners.values()}
        try:
            with open(self.previous_path, "rb") as f:
                keep |= {e["sha256"] for e in _unseal(f.read())["learners"].values()}
        except (OSError, CheckpointError):
            pass
        for name in os.listdir(self.blobs):
            if name not in keep and not name.endswith(".tmp"):
                os.remove(os.path.join(self.blobs, name))

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
                for entry in body["learners"].values():
                    if not os.path.exists(os.path.join(self.blobs, entry["sha256"])):
                        raise CheckpointError(f"blob {entry['sha256']} is missing")
            except (OSError, CheckpointError) as exc:
                log.error("checkpoint %s is damaged (%s); trying the previous one", path, exc)
                errors.append(f"{os.path.basename(path)}: {exc}")
                continue
            return body
        if errors:
            raise CheckpointError("no intact checkpoint in " + self.directory + ": "
                                  + "; ".join(errors))
        return None
