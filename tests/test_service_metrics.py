"""Metrics: unit-checked on an injected registry, and scraped by a real Prometheus server."""

import json
import math
import signal

from prometheus_client import CollectorRegistry

from servers import prometheus_server
from service_helpers import JUNK, event_lines, free_port, start_cli, wait_for, write_lines
from streamlearn.service.cli import build
from streamlearn.service.config import Config
from streamlearn.service.metrics import ServiceMetrics
from streamlearn.service.sources import FileSource


def _run(config, registry, replay: bool = False) -> None:
    """The service as ``streamlearn-service run`` builds it, run to the end of its file;
    ``replay``: with a source that reads the file again from its start (as a broker
    re-delivers), the positions still those of the checkpoint."""
    service, outputs = build(config, registry)
    if replay:
        service.source.close()
        service.source = FileSource(config.source)
    try:
        service.run(stop=_Never())
    finally:
        for out in outputs:
            out.close()
        service.source.close()
        service.store.close()


def test_unsaved_events_count_up_to_a_checkpoint():
    import time

    registry = CollectorRegistry()
    before = time.time()
    metrics = ServiceMetrics(registry)
    value = registry.get_sample_value
    # before any checkpoint: the state on disk is as current as at the start
    assert before <= value("streamlearn_last_checkpoint_timestamp_seconds") <= time.time()
    for outcome in ("learned", "predicted", "invalid", "duplicate", "lost"):
        metrics.handled(outcome)
    assert value("streamlearn_unsaved_events") == 5
    metrics.checkpointed(0.01, 3)
    assert value("streamlearn_unsaved_events") == 0
    metrics.handled("learned")
    assert value("streamlearn_unsaved_events") == 1


def test_metrics_count_every_outcome(tmp_path):
    lines = event_lines(400, n_keys=3, seed=1) + JUNK[:3]
    write_lines(tmp_path / "e.jsonl", lines)
    config = Config(source=str(tmp_path / "e.jsonl"), checkpoint_dir=str(tmp_path / "ck"),
                    max_learners=2, metrics_address=None)
    registry = CollectorRegistry()
    _run(config, registry)
    value = registry.get_sample_value
    assert value("streamlearn_events_total", {"outcome": "learned"}) == 300
    assert value("streamlearn_events_total", {"outcome": "predicted"}) == 100
    assert value("streamlearn_events_total", {"outcome": "invalid"}) == 3
    assert value("streamlearn_invalid_events_total", {"reason": "malformed_json"}) == 2
    assert value("streamlearn_learn_seconds_count") == 300
    assert value("streamlearn_predict_seconds_count") == 400
    assert value("streamlearn_learners") == 2
    assert value("streamlearn_learner_evictions_total") > 0
    assert value("streamlearn_checkpoint_seconds_count") == 1
    assert value("streamlearn_unsaved_events") == 0  # the run ends with a checkpoint
    assert 0 < value("streamlearn_progressive_loss", {"metric": "mae"}) \
        <= value("streamlearn_progressive_loss", {"metric": "rmse"})
    assert math.isfinite(value("streamlearn_loss", {"metric": "rmse"}))

    # the same file delivered again: every event is at or before the checkpoint, a duplicate
    registry2 = CollectorRegistry()
    _run(config, registry2, replay=True)
    assert registry2.get_sample_value("streamlearn_events_total",
                                      {"outcome": "duplicate"}) == len(lines)


class _Never:
    def is_set(self):
        return False


def test_a_real_prometheus_scrapes_the_service(tmp_path):
    write_lines(tmp_path / "e.jsonl", event_lines(2_000, n_keys=4, seed=2))
    port = free_port()
    proc = start_cli("run", "--source", tmp_path / "e.jsonl", "--follow", "--checkpoint-dir",
                     tmp_path / "ck", "--metrics-address", f"127.0.0.1:{port}")
    try:
        with prometheus_server(tmp_path, f"127.0.0.1:{port}") as query:
            learned = wait_for(
                lambda: [r for r in query('streamlearn_events_total{outcome="learned"}')
                         if float(r["value"][1]) == 1_500],
                timeout=90, interval=0.5, what="Prometheus to see 1500 learned events")
            assert learned[0]["metric"]["job"] == "streamlearn"
            p99 = wait_for(
                lambda: query("histogram_quantile(0.99, streamlearn_learn_seconds_bucket)"),
                timeout=30, interval=0.5, what="a latency quantile")
            assert 0 < float(p99[0]["value"][1]) < 1.0
            print(json.dumps({"p99_learn_seconds": p99[0]["value"][1]}))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0  # SIGTERM: final checkpoint, clean exit
