"""``streamlearn-service``: run | produce | inspect | reset (DESIGN.md section 3)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading

from prometheus_client import CollectorRegistry

from .app import Service
from .config import (Config, build_model, parse_param, parse_partition_range,
                     parse_partitions)
from .health import Health
from .layouts import StoredLayouts
from .metrics import OUTCOMES, ServiceMetrics, serve_metrics
from .pool import LearnerPool
from .progress import FileProgress
from .sources import FileSource, RedisTarget, open_source
from .store import StateStore, StoreError

log = logging.getLogger("streamlearn.service")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlearn-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="learn from an event stream")
    run.add_argument("--source", help="JSON-lines file, - for stdin, or "
                     "redis://HOST:PORT/DB?stream=NAME&partitions=P")
    run.add_argument("--config", help="TOML file with the same keys as these flags")
    run.add_argument("--model", help="model name (default: columnar)")
    run.add_argument("--param", action="append", type=parse_param, dest="params",
                     metavar="KEY=VALUE", help="model parameter (repeatable)")
    run.add_argument("--seed", type=int, help="base seed of the per-key learners (default 0)")
    run.add_argument("--metrics-address", help="HOST:PORT of /metrics (default "
                     "127.0.0.1:9464; 'none' to disable)")
    run.add_argument("--checkpoint-dir", help="default ./streamlearn-checkpoint")
    run.add_argument("--checkpoint-every", type=int, help="events between checkpoints "
                     "(default 0: by time only)")
    run.add_argument("--checkpoint-interval", type=float, help="seconds between checkpoints "
                     "(default 30; at least 9 times the last checkpoint's duration)")
    run.add_argument("--max-learners", type=int, help="learners kept in memory (default "
                     "100000)")
    run.add_argument("--predictions", help="file for predictions as JSON lines, - for stdout")
    run.add_argument("--dead-letter", help="file for rejected events as JSON lines")
    run.add_argument("--follow", action="store_true", help="keep reading a growing file")
    run.add_argument("--max-features", type=int, help="features an event (and a learner) may "
                     "have (default 1000)")
    run.add_argument("--max-line-bytes", type=int, help="bytes an event's line may have "
                     "(default 1048576)")
    run.add_argument("--reset-after", type=int, help="reset a learner that refused this many "
                     "events in a row (default 10)")
    run.add_argument("--quiet", action="store_true", help="no progress bar (shown only "
                     "for a file source when stderr is a terminal)")
    run.add_argument("--stall-seconds", type=float, help="/healthz answers 503 once the loop, "
                     "the broker or checkpoints have stalled this long (default 60)")
    owned = run.add_mutually_exclusive_group()
    owned.add_argument("--partitions", help="consume only these partitions of a redis:// "
                       "source, e.g. 0,2 (default: all)")
    owned.add_argument("--partition-range", help="consume only partitions FIRST..LAST of a "
                       "redis:// source, e.g. 0-1")
    produce = sub.add_parser("produce", help="publish JSON lines into partitioned streams")
    produce.add_argument("--target", required=True, help="redis://HOST:PORT/DB?stream=NAME"
                         "&partitions=P")
    produce.add_argument("file", help="JSON-lines file, - for stdin")
    inspect = sub.add_parser("inspect", help="summarise a checkpoint folder")
    inspect.add_argument("directory")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--verify", action="store_true", help="read back every stored "
                         "state; list the keys whose state is damaged (exit 1 if any)")
    sub.add_parser("flink", add_help=False, help="run the learners as an Apache Flink job "
                   "(needs apache-flink; 'streamlearn-service flink --help')")
    reset = sub.add_parser("reset", help="forget the stored state of keys (while no run "
                           "uses the folder): their next events start fresh learners")
    reset.add_argument("directory")
    reset.add_argument("keys", nargs="+", metavar="KEY")
    return parser


def _open_output(path: str | None):
    if path is None:
        return None
    if path == "-":
        return sys.stdout
    return open(path, "a", encoding="utf-8")


def build(config: Config, registry: CollectorRegistry, health: Health | None = None):
    """The service of ``config`` on ``registry``, resumed from its checkpoint, reporting to
    ``health``; also returns the output files to close."""
    store = StateStore(config.checkpoint_dir)
    pool = LearnerPool(build_model(config), config.seed, store, config.max_learners)
    metrics = ServiceMetrics(registry, learners=lambda: len(pool))
    pool.on_evict = metrics.learner_evicted

    def corrupt(key, why):
        metrics.learner_corrupt()
        log.error("%s; its events are dead-lettered (learner_corrupt) until "
                  "'streamlearn-service reset %s KEY'", why, config.checkpoint_dir)
    pool.on_corrupt = corrupt
    saved = store.positions()
    source = open_source(config.source, config.follow, saved, store.meta("source_state", {}),
                         config.limits, on_error=metrics.source_error,
                         partitions=config.partitions)
    positions = {p: source.decode(v) for p, v in saved.items()} if source.replayable else {}
    predictions = [_open_output(config.predictions)] if config.predictions else []
    if hasattr(source, "prediction_sink"):
        predictions.append(source.prediction_sink())
    dead = _open_output(config.dead_letter)
    service = Service(source, pool, store, metrics, positions, predictions=predictions,
                      dead_letters=dead, checkpoint_every=config.checkpoint_every,
                      checkpoint_interval=config.checkpoint_interval,
                      limits=config.limits, reset_after=config.reset_after, health=health)
    return service, [out for out in [*predictions, dead]
                     if out is not None and out is not sys.stdout]


def run(config: Config) -> int:
    registry, health = CollectorRegistry(), Health(config.stall_seconds)
    if config.metrics_address and config.metrics_address != "none":
        # before the state loads: /readyz says 503 until it has, /healthz 200 meanwhile
        host, _, port = config.metrics_address.rpartition(":")
        serve_metrics(registry, host or "127.0.0.1", int(port), health)
    service, outputs = build(config, registry, health)
    stop = threading.Event()

    def stopping(*_):
        health.set_ready(False)  # draining: no new traffic
        stop.set()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    health.set_ready(True)
    bar = contextlib.nullcontext()
    if isinstance(service.source, FileSource) and not config.quiet and sys.stderr.isatty() \
            and "-" not in (config.predictions, config.dead_letter):  # not over stdout's lines
        offset = service.positions.get(service.source.partition, (0, 0))[1]
        bar = service.progress = FileProgress(config.source, offset, sys.stderr)
    try:
        with bar:  # gone before the last log line, which then prints whole
            saved = service.run(stop)
        sample = registry.get_sample_value
        counts = {o: int(sample("streamlearn_events_total", {"outcome": o}) or 0)
                  for o in OUTCOMES}
        log.info("stopped after %s; progressive MAE %.4g; checkpoint in %s", counts,
                 sample("streamlearn_progressive_loss", {"metric": "mae"}),
                 service.store.directory)
        if not saved:
            log.error("the final checkpoint was not written (a prediction sink did not "
                      "answer): the events since the last one are applied again next run")
    finally:
        for out in outputs:
            out.close()
        service.source.close()
        service.store.close()
    return 0 if saved else 1


def inspect(directory: str, as_json: bool, verify: bool) -> int:
    store = StateStore(directory, writer=False)
    layouts, learners, damaged = StoredLayouts(store), {}, []
    for key, events, digest, state in store.summary():
        learners[key] = {"events": events, "sha256": digest}
        if verify:
            try:
                layouts.learner_bytes(state)
            except ValueError as exc:
                damaged.append((key, str(exc)))
    summary = {"source": store.meta("source"), "source_state": store.meta("source_state", {}),
               "positions": store.positions(), "learners": learners}
    if verify:
        summary["damaged"] = {key: why for key, why in damaged}
    if as_json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(f"source: {summary['source']}")
        owned = summary["source_state"].get("owned")
        if owned is not None:
            print(f"partitions: {','.join(map(str, owned))} of "
                  f"{summary['source_state']['partitions']}")
        for partition, position in sorted(summary["positions"].items()):
            print(f"position {partition}: {position}")
        print(f"learners: {len(learners)}, events applied: "
              f"{sum(v['events'] for v in learners.values())}")
        for key, why in damaged:
            print(f"damaged: {key!r}: {why}")
    return 1 if damaged else 0


def reset(directory: str, keys: list) -> int:
    store = StateStore(directory)
    try:
        for key in keys:
            if not store.delete(key):
                print(f"no stored state for key {key!r}", file=sys.stderr)
        store.commit(store.positions(), store.meta("source", ""),
                     store.meta("source_state", {}))
    finally:
        store.close()
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["flink"]:  # its own flags, and an optional dependency
        try:
            from .flink import main as flink
        except ImportError as exc:
            print(f"streamlearn-service: error: {exc}", file=sys.stderr)
            return 2
        return flink(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            if args.params is not None:
                args.params = tuple(sorted(args.params))
            args.partitions = parse_partitions(args.partitions) if args.partitions else \
                parse_partition_range(args.partition_range) if args.partition_range else None
            return run(Config.build(args, args.config))
        if args.command == "produce":
            stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
            with stream:
                count = RedisTarget(args.target).publish(stream)
            print(f"published {count} events", file=sys.stderr)
            return 0
        if args.command == "reset":
            return reset(args.directory, args.keys)
        return inspect(args.directory, args.json, args.verify)
    except (ValueError, OSError, StoreError) as exc:
        print(f"streamlearn-service: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
