"""Liveness and readiness of the service, answered on the metrics address.

``/readyz`` is 200 once the state is loaded and the source is open, and 503 before that and
while the service stops (an orchestrator sends it no more traffic then). ``/healthz`` is 200
while the loop makes progress and 503 once one of these has lasted ``stall_seconds``:

- the loop has not turned while ready (a sink whose writes block, a hung checkpoint);
- the broker has not answered (every read failing, past the source's own backoff);
- checkpoints fail (a prediction sink that does not take its lines).

An idle loop (no events) still turns, so idleness is healthy; so is loading the state.
Each 503 names its reasons in the JSON body, so a probe's log says what stalled.
"""

from __future__ import annotations

import json
import threading
import time

__all__ = ["Health", "STALL_SECONDS"]

# Default: well past a checkpoint interval's retries and the broker's longest backoff (5 s),
# so a probe only fails a service that will not recover on its own.
STALL_SECONDS = 60.0


class Health:
    """What the loop reports (``beat``, ``failing``, ``set_ready``) and the probes read
    (``problems``, ``ready``); thread-safe, one writer (the loop) and many readers."""

    def __init__(self, stall_seconds: float = STALL_SECONDS, clock=time.monotonic):
        self.stall_seconds = stall_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._ready = False
        self._beat = clock()
        self._failing: dict = {}  # what -> since when it fails (cleared when it works)

    def set_ready(self, ready: bool) -> None:
        with self._lock:
            self._ready = ready
            self._beat = self.clock()

    def beat(self) -> None:
        """The loop turned."""
        self._beat = self.clock()

    def failing(self, what: str, failed: bool) -> None:
        """``what`` ("source", "checkpoint") failed or worked just now; a failure counts from
        the first of a run of failures."""
        with self._lock:
            if not failed:
                self._failing.pop(what, None)
            elif what not in self._failing:
                self._failing[what] = self.clock()

    def ready(self) -> bool:
        return self._ready

    def problems(self) -> list:
        """Why the service is not live: empty when it is."""
        now = self.clock()
        with self._lock:
            failing = dict(self._failing)
        found = []
        if self._ready and now - self._beat > self.stall_seconds:
            found.append(f"loop: no progress for {now - self._beat:.1f} s")
        for what, since in sorted(failing.items()):
            if now - since > self.stall_seconds:
                found.append(f"{what}: failing for {now - since:.1f} s")
        return found

    def app(self, metrics_app):
        """A WSGI app: ``/healthz`` and ``/readyz`` here, everything else ``metrics_app``."""
        def answer(start_response, ok: bool, body: dict):
            status = "200 OK" if ok else "503 Service Unavailable"
            data = json.dumps(body).encode()
            start_response(status, [("Content-Type", "application/json"),
                                    ("Content-Length", str(len(data)))])
            return [data]

        def wsgi(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                problems = self.problems()
                return answer(start_response, not problems,
                              {"status": "stalled" if problems else "ok",
                               "problems": problems})
            if path == "/readyz":
                ready = self.ready()
                return answer(start_response, ready,
                              {"status": "ready" if ready else "not ready"})
            return metrics_app(environ, start_response)
        return wsgi
