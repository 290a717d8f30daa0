"""The prequential loop: per event predict, emit, learn; checkpoint; acknowledge.

Source, pool, store, metrics and clock are arguments, so tests can inject them.
"""

from __future__ import annotations

import json
import logging
import os
import time

from .events import Invalid, Limits, parse
from .health import Health
from .pool import CorruptLearner
from .sources import SourceError

__all__ = ["Service", "Refused", "step"]

log = logging.getLogger("streamlearn.service")

LEARNER_ERRORS = (ValueError, TypeError, FloatingPointError)
# Seconds before a checkpoint that could not be written (a sink did not answer) is tried again.
CHECKPOINT_RETRY_SECONDS = 1.0
# Timed checkpoints take at most this share of the time: after one that took d seconds, the
# next waits at least d * (1 / share - 1). With 10^5 changed learners a checkpoint writes
# about 1.1 GB, which no fixed interval of seconds would amortise.
CHECKPOINT_SHARE = 0.1


class Refused(Exception):
    """An event the key's learner cannot take (``invalid``); ``diverged``: a step that
    would diverge (FloatingPointError), which counts towards a reset."""

    def __init__(self, invalid: Invalid, diverged: bool = False):
        super().__init__(invalid.detail)
        self.invalid, self.diverged = invalid, diverged


def step(learner, event, limits: Limits) -> tuple:
    """Predict ``event``, then learn from it (advance only, when it has no label): returns
    (prediction, predict seconds, learn seconds). Raises :class:`Refused`, the learner
    unchanged, for an event that would grow it past ``limits.max_features`` or that it
    refuses. The one step of the service and of the Flink job."""
    known = learner.n_features
    if known + len(event.x) > limits.max_features:  # the exact count, when close
        grown = known + len(set(event.x).difference(learner.feature_names))
        if grown > limits.max_features:
            raise Refused(Invalid("too_many_features", f"the learner of {event.key!r:.80} "
                                  f"would grow to {grown} features, more than the limit of "
                                  f"{limits.max_features}"))
    try:
        t0 = time.perf_counter()
        prediction = learner.predict_one(event.x)
        t1 = time.perf_counter()
        if event.y is None:
            learner.observe_one(event.x)
        else:
            learner.learn_one(event.x, event.y)
        t2 = time.perf_counter()
    except LEARNER_ERRORS as exc:  # the learner refused the step and kept its state
        raise Refused(Invalid("learner_error", f"{type(exc).__name__}: {exc}"),
                      diverged=isinstance(exc, FloatingPointError)) from None
    return prediction, t1 - t0, t2 - t1


def prediction_line(key: str, partition: str, position, prediction: float, y) -> str:
    """``json.dumps`` of the prediction record plus a newline, formatted directly (no
    encoder object per line): str values JSON-escaped, numbers as their repr, which is their
    JSON for int and finite float."""
    escape = json.encoder.encode_basestring_ascii
    where = escape(position) if type(position) is str else json.dumps(position)
    return (f'{{"key": {escape(key)}, "partition": {escape(partition)}, "position": {where}, '
            f'"prediction": {prediction!r}, "y": {"null" if y is None else repr(y)}}}\n')


class Service:
    """Consumes ``source`` into per-key learners, checkpointing every ``checkpoint_every``
    events (0: never by count), every ``checkpoint_interval`` seconds (or longer: see
    :data:`CHECKPOINT_SHARE`) and when idle for ``idle_seconds`` with unsaved progress, and
    at the end.
    ``predictions`` is a list of sinks (write/flush), ``dead_letters`` one or None.
    ``limits`` bound each event (and the features a learner may grow to); a learner that
    refuses ``reset_after`` events in a row is reset (see ``LearnerPool.refused``).
    ``health`` hears each turn of the loop, source faults and failed checkpoints;
    ``progress``, if given, each batch once handled (an empty one when idle)."""

    def __init__(self, source, pool, store, metrics, positions: dict, predictions=(),
                 dead_letters=None, checkpoint_every: int = 0,
                 checkpoint_interval: float = 30.0, idle_seconds: float = 1.0,
                 limits: Limits = Limits(), reset_after: int = 10, health: Health | None = None,
                 progress=None, clock=time.monotonic):
        self.source = source
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.positions = dict(positions)
        self.predictions = list(predictions or [])
        self.dead_letters = dead_letters
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.idle_seconds = idle_seconds
        self.limits = limits
        self.reset_after = reset_after
        self.clock = clock
        self.health = health if health is not None else Health(clock=clock)
        self.progress = progress
        self._unacked: dict = {}  # partition -> records handled since the last ack
        self._since_checkpoint = 0
        self._last_activity = clock()
        self._last_lag = 0.0
        self._retry_at = 0.0  # no checkpoint attempt before this (a failed one waits)
        self._checkpointed = clock()
        self._pause = 0.0     # the least seconds after the last checkpoint (CHECKPOINT_SHARE)

    def run(self, stop) -> bool:
        """Until ``stop`` is set or a finite source ends; ends with a checkpoint. Returns
        whether that last checkpoint was written (it is not when a sink does not answer:
        the events since the previous one are then replayed by the next run)."""
        while not stop.is_set():
            batch = self.source.poll(timeout=0.2)
            if batch is None:
                break
            self.health.beat()
            self.health.failing("source", self.source.failing)
            now = self.clock()
            if (self._since_checkpoint or self._unacked) and (
                    now - self._checkpointed >= max(self.checkpoint_interval, self._pause)
                    or not batch and now - self._last_activity >= self.idle_seconds):
                self.checkpoint()
            for record in batch:
                self.handle(record)
                if self.checkpoint_every and self._since_checkpoint >= self.checkpoint_every:
                    self.checkpoint()
            if batch:
                self._last_activity = now
                self._flush()
            if self.progress is not None:
                self.progress(batch)
            if now - self._last_lag >= 1.0:
                self._last_lag = now
                for partition, lag in self.source.lag().items():
                    self.metrics.consumer_lag(partition, lag)
        self._retry_at = 0.0
        return self.checkpoint()

    def handle(self, record) -> None:
        """Apply one record exactly once (records at or before the saved position are
        duplicates; a record without its bytes was lost at the source)."""
        last = self.positions.get(record.partition)
        if last is not None and record.position <= last:
            self.metrics.handled("duplicate")
            self._unacked[record.partition] = self._unacked.get(record.partition, 0) + 1
            return
        if record.raw is None:
            self.metrics.handled("lost")
        else:
            event = parse(record.raw, self.limits)
            if not isinstance(event, Invalid):
                event = self._apply(record, event)
            if isinstance(event, Invalid):
                self._reject(record, event)
        self.positions[record.partition] = record.position
        self._unacked[record.partition] = self._unacked.get(record.partition, 0) + 1
        self._since_checkpoint += 1

    def _apply(self, record, event):
        try:
            learner = self.pool.get(event.key, event.x)
        except CorruptLearner as exc:
            return Invalid("learner_corrupt", str(exc))
        try:
            prediction, predict_seconds, learn_seconds = step(learner, event, self.limits)
        except Refused as exc:
            if exc.diverged and self.pool.refused(event.key, self.reset_after):
                self.metrics.learner_reset()
                log.warning("learner of key %r refused %d events in a row (%s): reset to a "
                            "fresh learner", event.key, self.reset_after, exc)
            return exc.invalid
        self.pool.applied(event.key)
        if event.y is None:
            self.metrics.applied(predict_seconds)
        else:
            self.metrics.applied(predict_seconds, learn_seconds, event.y - prediction)
        if self.predictions:
            line = prediction_line(event.key, record.partition,
                                   self.source.encode(record.position), prediction, event.y)
            for sink in self.predictions:
                sink.write(line)
        return event

    def _reject(self, record, invalid: Invalid) -> None:
        self.metrics.rejected(invalid.reason)
        if self.dead_letters is not None:
            raw = record.raw[:self.limits.max_line_bytes + 1]  # a line_too_long: its start
            self.dead_letters.write(json.dumps(
                {"reason": invalid.reason, "detail": invalid.detail,
                 "raw": raw.decode("utf-8", "backslashreplace").rstrip("\n"),
                 "partition": record.partition,
                 "position": self.source.encode(record.position)}) + "\n")

    def _flush(self) -> bool:
        """Flush the prediction sinks; False if one did not answer (it keeps its lines)."""
        try:
            for sink in self.predictions:
                sink.flush()
        except SourceError as exc:
            log.warning("predictions not written yet: %s", exc)
            return False
        return True

    def checkpoint(self) -> bool:
        """Write the learners changed since the last checkpoint and the positions in one
        transaction, then acknowledge to the source. Not while a prediction sink holds
        unwritten lines: a checkpoint past them would lose them. Returns whether the state
        on disk is now current. A store that fails (StoreError) stops the service: the
        last checkpoint is intact, and the next run replays from it."""
        if not self._since_checkpoint and not self._unacked and not self.pool.dirty:
            return True
        if self.clock() < self._retry_at:
            return False
        start = time.perf_counter()
        if not self._flush():
            self._retry_at = self.clock() + CHECKPOINT_RETRY_SECONDS
            self.health.failing("checkpoint", True)
            return False
        for stream in [self.dead_letters, *self.predictions]:
            if stream is not None and hasattr(stream, "fileno"):
                stream.flush()
                if stream.fileno() > 2:
                    os.fsync(stream.fileno())
        positions = {p: self.source.encode(v) for p, v in self.positions.items()}
        written = self.pool.flush()
        self.store.commit(positions, self.source.name, self.source.state(self.positions))
        self._checkpointed = self.clock()
        self._pause = (time.perf_counter() - start) * (1 / CHECKPOINT_SHARE - 1)
        self.source.ack(self._unacked)
        self._unacked = {}
        self._since_checkpoint = 0
        self.metrics.checkpointed(time.perf_counter() - start, written)
        self.health.failing("checkpoint", False)
        return True
