"""Prometheus metrics of the service, on an injected registry (DESIGN.md section 3).

Counters and histograms are updated in the loop; gauges that are cheap to compute at scrape
time (learners, throughput, rolling loss) are read then, through ``set_function``.
"""

from __future__ import annotations

import bisect
import collections
import math
import socket
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import HistogramMetricFamily

from .health import Health

__all__ = ["ServiceMetrics", "OUTCOMES", "LATENCY_BUCKETS", "serve_metrics"]

# Connections the metrics endpoint queues before it refuses one (socketserver's default is 5:
# a burst of dashboards and scrapers got refused). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096

OUTCOMES = ("learned", "predicted", "invalid", "duplicate", "lost")
# Names that the Flink job's metrics share (counters as exported, with their "_total").
EVENTS = "streamlearn_events"
INVALID_EVENTS = "streamlearn_invalid_events"
LEARNER_RESETS = "streamlearn_learner_resets"
EVENTS_PER_SECOND = "streamlearn_events_per_second"
# Seconds, from 1 microsecond to 1 second.
LATENCY_BUCKETS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3,
                   1e-2, 0.1, 1.0)


class LatencyHistogram:
    """A histogram for the hot loop: ``observe`` is a bisect and two additions, with no lock
    (prometheus_client's Histogram takes one per observation); exposed at scrape time as a
    collector."""

    def __init__(self, name: str, documentation: str, buckets=LATENCY_BUCKETS, registry=None):
        self.name, self.documentation = name, documentation
        self.bounds = list(buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        if registry is not None:
            registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self):
        counts, total = list(self.counts), self.sum
        cumulative, running = [], 0
        for bound, count in zip(self.bounds + [math.inf], counts):
            running += count
            cumulative.append(("+Inf" if bound == math.inf else repr(bound), running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, total)
        yield family

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation)]


class _Loss:
    """Absolute and squared errors: progressive (since start) and over the last ``window``."""

    def __init__(self, window: int):
        self.window = collections.deque(maxlen=window)
        self.lock = threading.Lock()
        self.n = 0
        self.abs_sum = 0.0
        self.sq_sum = 0.0

    def update(self, error: float) -> None:
        with self.lock:
            self.n += 1
            self.abs_sum += abs(error)
            self.sq_sum += error * error
            self.window.append(error)

    def progressive(self, metric: str) -> float:
        with self.lock:
            if not self.n:
                return math.nan
            return self.abs_sum / self.n if metric == "mae" else math.sqrt(self.sq_sum / self.n)

    def rolling(self, metric: str) -> float:
        with self.lock:
            errors = list(self.window)
        if not errors:
            return math.nan
        if metric == "mae":
            return sum(abs(e) for e in errors) / len(errors)
        return math.sqrt(sum(e * e for e in errors) / len(errors))


class ServiceMetrics:
    """All ``streamlearn_*`` metrics; ``learners`` is a callable giving the live count."""

    def __init__(self, registry: CollectorRegistry, learners=lambda: 0, window: int = 1000,
                 clock=time.monotonic):
        self.clock = clock
        self._events = Counter(EVENTS, "Events by outcome", ["outcome"],
                               registry=registry)
        self._outcome = {o: self._events.labels(outcome=o) for o in OUTCOMES}
        self._invalid = Counter(INVALID_EVENTS, "Rejected events by reason",
                                ["reason"], registry=registry)
        self._learn_seconds = LatencyHistogram("streamlearn_learn_seconds",
                                               "Time of one learn step", registry=registry)
        self._predict_seconds = LatencyHistogram("streamlearn_predict_seconds",
                                                 "Time of one prediction", registry=registry)
        self._checkpoint_seconds = Histogram("streamlearn_checkpoint_seconds",
                                             "Time to write a checkpoint", registry=registry)
        # the state on disk is current when the service starts (it resumes from it)
        self._last_checkpoint = Gauge("streamlearn_last_checkpoint_timestamp_seconds",
                                      "Unix time of the last durable checkpoint (or of the "
                                      "start)", registry=registry)
        self._last_checkpoint.set(time.time())
        self._unsaved = 0
        Gauge("streamlearn_unsaved_events", "Events handled since the last durable "
              "checkpoint", registry=registry).set_function(lambda: self._unsaved)
        self._evictions = Counter("streamlearn_learner_evictions",
                                  "Learners evicted to the store", registry=registry)
        self._lag = Gauge("streamlearn_consumer_lag", "Entries not yet delivered, per partition",
                          ["partition"], registry=registry)
        self._resets = Counter(LEARNER_RESETS, "Learners reset after refusing "
                               "events in a row", registry=registry)
        self._corrupt = Counter("streamlearn_learner_corrupt", "Keys whose stored state could "
                                "not be read back", registry=registry)
        self._checkpoint_learners = Histogram(
            "streamlearn_checkpoint_learners", "Learners written by one checkpoint",
            buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000), registry=registry)
        self._source_errors = Counter("streamlearn_source_errors", "Broker faults by kind "
                                      "(each retried)", ["kind"], registry=registry)
        Gauge("streamlearn_learners", "Learners in memory",
              registry=registry).set_function(learners)
        self._loss = _Loss(window)
        rolling = Gauge("streamlearn_loss", f"Loss over the last {window} labelled events",
                        ["metric"], registry=registry)
        progressive = Gauge("streamlearn_progressive_loss", "Loss since the service started",
                            ["metric"], registry=registry)
        for metric in ("mae", "rmse"):
            rolling.labels(metric=metric).set_function(lambda m=metric: self._loss.rolling(m))
            progressive.labels(metric=metric).set_function(
                lambda m=metric: self._loss.progressive(m))
        self._applied = 0
        self._marks = collections.deque([(clock(), 0)], maxlen=11)  # (time, events) per second
        Gauge(EVENTS_PER_SECOND, "Events handled per second over the last ~10 s",
              registry=registry).set_function(self._throughput)

    def handled(self, outcome: str) -> None:
        """Count one event; mark throughput at most once a second."""
        self._outcome[outcome].inc()
        self._applied += 1
        self._unsaved += 1
        now = self.clock()
        if now - self._marks[-1][0] >= 1.0:
            self._marks.append((now, self._applied))

    def applied(self, predict_seconds: float, learn_seconds: float | None = None,
                error: float | None = None) -> None:
        """An event applied to its learner: predicted only (``learn_seconds`` None), or
        learned from, with the error of the prediction it was scored on."""
        self._predict_seconds.observe(predict_seconds)
        if learn_seconds is None:
            self.handled("predicted")
            return
        self._learn_seconds.observe(learn_seconds)
        self.handled("learned")
        self._loss.update(error)

    def rejected(self, reason: str) -> None:
        """An invalid event, by the reason it was rejected for."""
        self.handled("invalid")
        self._invalid.labels(reason=reason).inc()

    def checkpointed(self, seconds: float, learners: int) -> None:
        """A durable checkpoint that took ``seconds`` and wrote ``learners`` learners."""
        self._unsaved = 0
        self._checkpoint_learners.observe(learners)
        self._checkpoint_seconds.observe(seconds)
        self._last_checkpoint.set(time.time())

    def consumer_lag(self, partition: str, entries: int) -> None:
        self._lag.labels(partition=partition).set(entries)

    def learner_reset(self) -> None:
        self._resets.inc()

    def learner_evicted(self) -> None:
        self._evictions.inc()

    def learner_corrupt(self) -> None:
        self._corrupt.inc()

    def source_error(self, kind: str) -> None:
        self._source_errors.labels(kind=kind).inc()

    def _throughput(self) -> float:
        (t0, n0), (t1, n1) = self._marks[0], (self.clock(), self._applied)
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Scrapes are not logged."""


def serve_metrics(registry: CollectorRegistry, host: str, port: int,
                  health: Health | None = None) -> WSGIServer:
    """Serve ``/metrics`` of ``registry`` (and ``/healthz``, ``/readyz`` of ``health``) on
    host:port from a daemon thread, a thread per request, with a deep listen queue
    (``LISTEN_BACKLOG``). Returns the server (its ``server_address`` has the port when 0
    was asked for)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]

    class Server(ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True  # a scrape in progress does not keep the process alive
        request_queue_size = LISTEN_BACKLOG

    app = make_wsgi_app(registry)
    if health is not None:
        app = health.app(app)
    server = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
