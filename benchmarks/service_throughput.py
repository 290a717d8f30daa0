"""End-to-end events per second of streamlearn-service, and learn latency quantiles.

Runs the service in-process exactly as ``streamlearn-service run`` builds it (default model,
checkpoints every 10,000 events and at the end), on a file and on Redis Streams (4 partitions,
a private redis-server on a free port), with 1 key and with 10,000 keys. Latency quantiles
are interpolated within the histogram buckets, as Prometheus' histogram_quantile does.

    python benchmarks/service_throughput.py [--events 100000] [--no-redis]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from prometheus_client import CollectorRegistry

from common import Progress, add_quiet, machine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from service_helpers import event_lines, free_port, wait_for, write_lines  # noqa: E402

from streamlearn.service.cli import build  # noqa: E402
from streamlearn.service.config import Config  # noqa: E402
from streamlearn.service.sources import RedisTarget  # noqa: E402


def quantile(registry, name: str, q: float) -> float:
    buckets = sorted(
        (float(s.labels["le"]), s.value) for m in registry.collect() if m.name == name
        for s in m.samples if s.name == f"{name}_bucket")
    total = buckets[-1][1]
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1)
        prev_le, prev_count = le, count
    return float("nan")


class _Never:
    def is_set(self):
        return False


def measure(source: str, workdir: str) -> tuple:
    registry = CollectorRegistry()
    config = Config(source=source, metrics_address=None,
                    checkpoint_dir=os.path.join(workdir, "ck"))
    service, _ = build(config, registry)
    stop = threading.Event()
    if source.startswith("redis://"):  # the broker has no end: stop once everything is applied
        n = sum(1 for _ in open(os.path.join(workdir, "events.jsonl"), "rb"))
        counter = registry.get_sample_value
        watcher = threading.Thread(target=lambda: (wait_for(
            lambda: (counter("streamlearn_events_total", {"outcome": "learned"}) or 0)
            + (counter("streamlearn_events_total", {"outcome": "predicted"}) or 0) >= n,
            timeout=3600, interval=0.01), stop.set()))
        watcher.start()
    start = time.perf_counter()
    service.run(stop)
    elapsed = time.perf_counter() - start
    service.source.close()
    applied = sum(registry.get_sample_value("streamlearn_events_total", {"outcome": o}) or 0
                  for o in ("learned", "predicted"))
    return (applied / elapsed, quantile(registry, "streamlearn_learn_seconds", 0.5),
            quantile(registry, "streamlearn_learn_seconds", 0.99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--no-redis", action="store_true")
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; {args.events} events, default ColumnarRegressor")
    print(f"{'source':>7} {'keys':>6} {'events/s':>10} {'learn p50 us':>13} {'learn p99 us':>13}")
    redis_bin = shutil.which("redis-server")
    kinds = ("file",) if args.no_redis or not redis_bin else ("file", "redis")
    bar = Progress(2 * len(kinds) * args.events, "event", args.quiet)
    for keys in (1, 10_000):
        lines = event_lines(args.events, n_keys=keys, seed=0)
        for kind in kinds:
            with tempfile.TemporaryDirectory() as workdir:
                path = os.path.join(workdir, "events.jsonl")
                write_lines(path, lines)
                server = None
                source = path
                if kind == "redis":
                    port = free_port()
                    server = subprocess.Popen([redis_bin, "--bind", "127.0.0.1", "--port",
                                               str(port), "--save", "", "--appendonly", "no"],
                                              stdout=subprocess.DEVNULL)
                    source = f"redis://127.0.0.1:{port}/0?stream=bench&partitions=4"
                    wait_for(lambda: _ping(port), timeout=20)
                    with open(path, "rb") as f:
                        RedisTarget(source).publish(f)
                try:
                    rate, p50, p99 = measure(source, workdir)
                finally:
                    if server is not None:
                        server.terminate()
                        server.wait()
            print(f"{kind:>7} {keys:>6} {rate:>10.0f} {p50 * 1e6:>13.1f} {p99 * 1e6:>13.1f}")
            bar.update(args.events)
    bar.close()


def _ping(port: int) -> bool:
    import redis

    try:
        return redis.Redis(port=port).ping()
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    main()
