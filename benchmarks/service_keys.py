"""The service at many keys: throughput, checkpoint cost, memory, disk and restart time.

Each run is a fresh process that builds the service as ``streamlearn-service run`` does
(default checkpoint settings), on a JSON-lines file or on Redis Streams (a private
redis-server, 4 partitions), with events spread uniformly over the keys (2 features, 3 of 4
labelled). Printed per run:

- events/s up to the last applied event, and the final checkpoint's seconds apart;
- checkpoint seconds p50/p99, with the learners and bytes each wrote (evictions between two
  checkpoints are written into the same transaction and counted with it), and the state
  bytes per second of checkpoint time;
- peak RSS, and the bytes of the learners in memory at the end;
- the checkpoint folder's bytes against the live states' bytes;
- the seconds a restart with nothing new to read takes to exit (file runs).

    python benchmarks/service_keys.py [--scale 1.0] [--only KEYS,...] [--no-redis]
    python benchmarks/service_keys.py --run SOURCE TOTAL CK [--param K=V ...] [--max-learners N]
    python benchmarks/service_keys.py --checkpoint-scaling [--stored 1000,1000000]
    python benchmarks/service_keys.py --costs

``--checkpoint-scaling`` times a checkpoint that writes 1,000 changed default learners into
a store already holding 10^3 or 10^6 learners (of 4 columns), as the store is used between
checkpoints (row states written into the open transaction, then one commit).

``--scale`` multiplies every run's event count (0.1 for a quick look); the targets of the
issue are ratios within one invocation.
"""

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from common import Progress, add_quiet, machine, row_states

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from service_helpers import free_port, wait_for  # noqa: E402

RUNS = [  # (source, keys, events, extra arguments)
    ("file", 1, 1_000_000, []),
    ("file", 10_000, 1_000_000, []),
    ("file", 100_000, 1_000_000, []),
    ("file", 1, 3_000_000, ["--param", "n_columns=4"]),
    ("file", 1_000_000, 3_000_000, ["--param", "n_columns=4", "--max-learners", "100000"]),
    ("redis", 1, 1_000_000, []),
    ("redis", 10_000, 1_000_000, []),
]


def write_events(path: str, n: int, keys: int, seed: int = 0) -> None:
    import random

    rng = random.Random(seed)
    with open(path, "w") as f:
        for t in range(n):
            a, b = rng.gauss(0, 1), rng.random()
            key = rng.randrange(keys)
            y = f', "y": {3 * a + rng.gauss(0, 0.1)!r}' if t % 4 else ""
            f.write(f'{{"key": "k{key}", "x": {{"a": {a!r}, "b": {b!r}}}{y}}}\n')


class _Never:
    def is_set(self):
        return False


def run_one(source: str, total: int, extra: list) -> dict:
    """One run in this process: the measurements as a dict."""
    from prometheus_client import CollectorRegistry

    from streamlearn.service.cli import _parser, build
    from streamlearn.service.config import Config

    args = _parser().parse_args(["run", "--source", source, "--metrics-address", "none",
                                 "--checkpoint-dir", os.environ["SL_BENCH_CK"], *extra])
    args.params = tuple(sorted(args.params)) if args.params else None
    config = Config.build(args)
    registry = CollectorRegistry()
    service, _ = build(config, registry)
    store, pool = service.store, service.pool
    written = {"rows": 0, "bytes": 0}
    put_many = store.put_many

    def counting(rows):
        def counted():
            for row in rows:
                written["rows"] += 1
                written["bytes"] += len(row[1])
                yield row
        put_many(counted())
    store.put_many = counting
    checkpoints = []  # (seconds, learners, bytes)
    checkpoint = service.checkpoint

    def timed():
        start = time.perf_counter()
        saved = checkpoint()
        checkpoints.append((time.perf_counter() - start, written["rows"], written["bytes"]))
        written.update(rows=0, bytes=0)
        return saved
    service.checkpoint = timed
    stop = threading.Event() if source.startswith("redis://") else _Never()
    applied = lambda: sum(registry.get_sample_value("streamlearn_events_total",  # noqa: E731
                                                    {"outcome": o}) or 0
                          for o in ("learned", "predicted"))
    done = {}
    if source.startswith("redis://"):  # a broker has no end: stop once all is applied
        def watch():
            wait_for(lambda: applied() >= total, timeout=36_000, interval=0.005)
            done["at"] = time.perf_counter()
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    start = time.perf_counter()
    service.run(stop)
    end = done.get("at") or time.perf_counter() - checkpoints[-1][0]
    live = sum(len(pool._row(key)[1]) for key in list(pool._live))
    service.source.close()
    store.close()
    state_bytes = sum(len(row[3]) for row in _summary(os.environ["SL_BENCH_CK"]))
    folder = sum(os.path.getsize(os.path.join(d, f))
                 for d, _, files in os.walk(os.environ["SL_BENCH_CK"]) for f in files)
    durations = [c[0] for c in checkpoints[:-1]] or [checkpoints[-1][0]]
    return {"events_per_second": applied() / (end - start),
            "final_checkpoint_seconds": checkpoints[-1][0],
            "checkpoint_p50": statistics.median(durations),
            "checkpoint_p99": sorted(durations)[math.ceil(0.99 * (len(durations) - 1))],
            "checkpoints": len(checkpoints),
            "learners_per_checkpoint": statistics.median(c[1] for c in checkpoints),
            "bytes_per_checkpoint": statistics.median(c[2] for c in checkpoints),
            "state_mb_per_second": sum(c[2] for c in checkpoints)
            / max(sum(c[0] for c in checkpoints), 1e-9) / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "live_learner_mb": live / 1e6, "folder_mb": folder / 1e6,
            "state_mb": state_bytes / 1e6}


def _summary(directory):
    from streamlearn.service.store import StateStore

    store = StateStore(directory, writer=False)
    try:
        yield from store.summary()
    finally:
        store.close()


def checkpoint_scaling(stored_counts, repeats: int = 5) -> None:
    """Seconds of a checkpoint of 1,000 changed default learners against stored keys, as
    the service stores them (row states)."""
    from streamlearn.service.store import StateStore

    (filler,) = row_states(4, 1)
    states = row_states(20, 1_000)
    print(f"{'stored':>9} {'checkpoint s (1,000 learners, min/median/max of ' + str(repeats) + ')':>52}")
    for stored in stored_counts:
        with tempfile.TemporaryDirectory() as workdir:
            store = StateStore(workdir)
            for start in range(0, stored, 10_000):
                store.put_many((f"k{i}", filler, 1, 0)
                               for i in range(start, min(stored, start + 10_000)))
                store.commit({}, "file")
            times = []
            for r in range(repeats):
                start = time.perf_counter()
                store.put_many((f"k{i * (stored // 1_000)}", state, 2 + r, 0)
                               for i, state in enumerate(states))
                store.commit({"file": [0, r]}, "file")
                times.append(time.perf_counter() - start)
            store.close()
        times.sort()
        print(f"{stored:>9} {times[0]:>18.3f} {times[len(times) // 2]:>10.3f} "
              f"{times[-1]:>10.3f}", flush=True)


def key_costs(calls: int = 2_000, repeats: int = 5) -> None:
    """Microseconds per call (best of ``repeats``) of what a key costs the default model:
    as a table row (``streamlearn.table``) and as a learner object."""
    import random

    from streamlearn import ColumnarRegressor
    from streamlearn.table import LearnerTable

    prototype = ColumnarRegressor(seed=0)
    fresh = prototype.spawn(0)
    fresh.add_features(["a", "b"])
    table = LearnerTable(fresh)
    learner, rng = prototype.spawn(0), random.Random(0)
    rows = [table.new_row() for _ in range(2)]
    for t in range(200):
        x = {"a": rng.gauss(0, 1), "b": rng.random()}
        for row in rows:
            table.use(row, t).learn_one(x, x["a"])
        learner.learn_one(x, x["a"])
    data, row_state = table.pack(rows[0], 200), table.dump(rows[0], 200)

    def best(call) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times.append((time.perf_counter() - start) / calls)
        return min(times) * 1e6
    print(f"# machine: {machine()}; us per call, best of {repeats} x {calls:,}")
    print(f"row: new {best(table.new_row):.2f}, switch rows "
          f"{best(lambda: (table.use(rows[0], 200), table.use(rows[1], 200))) / 2:.2f}, "
          f"row state (stored) dump {best(lambda: table.dump(rows[0], 200)):.2f}, "
          f"load {best(lambda: table.load(row_state)):.2f}, "
          f"to_bytes {best(lambda: table.pack(rows[0], 200)):.2f}, "
          f"read to_bytes {best(lambda: table.read(data)):.2f}; bytes: row {len(rows[0]):,}, "
          f"row state {len(row_state):,}, to_bytes {len(data):,}")
    print(f"object: spawn {best(lambda: prototype.spawn(1)):.2f}, "
          f"to_bytes {best(learner.to_bytes):.2f}, "
          f"from_bytes {best(lambda: ColumnarRegressor.from_bytes(data)):.2f}")


def restart_seconds(path: str, ck: str, extra: list) -> float:
    start = time.perf_counter()
    out = subprocess.run([shutil.which("streamlearn-service"), "run", "--source", path,
                          "--checkpoint-dir", ck, "--metrics-address", "none", *extra],
                         capture_output=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--only", help="run only the rows whose keys are listed, e.g. 1,10000")
    parser.add_argument("--run", nargs=3, metavar=("SOURCE", "TOTAL", "CK"))
    parser.add_argument("--checkpoint-scaling", action="store_true")
    parser.add_argument("--costs", action="store_true", help="what a key costs, per call")
    parser.add_argument("--stored", default="1000,1000000")
    add_quiet(parser)
    args, extra = parser.parse_known_args()
    if args.checkpoint_scaling:
        print(f"# machine: {machine()}")
        checkpoint_scaling([int(n) for n in args.stored.split(",")])
        return
    if args.costs:
        key_costs()
        return
    if args.run:
        source, total, ck = args.run
        os.environ["SL_BENCH_CK"] = ck
        print(json.dumps(run_one(source, int(total), extra)))
        return
    print(f"# machine: {machine()}; scale {args.scale}")
    print(f"{'source':>6} {'keys':>8} {'events':>8} {'model':>10} {'ev/s':>8} {'final s':>8} "
          f"{'ck p50 s':>8} {'ck p99 s':>8} {'lrn/ck':>7} {'MB/ck':>6} {'MB/s':>6} "
          f"{'RSS MB':>7} {'live MB':>8} {'dir MB':>7} {'state MB':>8} {'restart s':>9}")
    only = {int(k) for k in args.only.split(",")} if args.only else None
    runs = [(source, keys, max(1, int(events * args.scale)), extra)
            for source, keys, events, extra in RUNS
            if not (source == "redis" and (args.no_redis or not shutil.which("redis-server")))
            and not (only and keys not in only)]
    bar = Progress(sum(events for _, _, events, _ in runs), "event", args.quiet)
    for source, keys, events, extra in runs:
        with tempfile.TemporaryDirectory() as workdir:
            path, ck = os.path.join(workdir, "events.jsonl"), os.path.join(workdir, "ck")
            write_events(path, events, keys)
            server, spec = None, path
            if source == "redis":
                port = free_port()
                server = subprocess.Popen([shutil.which("redis-server"), "--bind",
                                           "127.0.0.1", "--port", str(port), "--save", "",
                                           "--appendonly", "no", "--dir", workdir],
                                          stdout=subprocess.DEVNULL)
                spec = f"redis://127.0.0.1:{port}/0?stream=bench&partitions=4"
                time.sleep(0.5)
                out = subprocess.run([shutil.which("streamlearn-service"), "produce",
                                      "--target", spec, path], capture_output=True)
                assert out.returncode == 0, out.stderr
            try:
                out = subprocess.run([sys.executable, __file__, "--run", spec, str(events), ck,
                                      *extra], capture_output=True, text=True)
                assert out.returncode == 0, out.stderr[-3000:]
                r = json.loads(out.stdout.strip().splitlines()[-1])
                restart = restart_seconds(path, ck, extra) if source == "file" else float("nan")
            finally:
                if server is not None:
                    server.terminate()
                    server.wait()
        model = "4 columns" if "n_columns=4" in extra else "default"
        print(f"{source:>6} {keys:>8} {events:>8} {model:>10} {r['events_per_second']:>8.0f} "
              f"{r['final_checkpoint_seconds']:>8.3f} {r['checkpoint_p50']:>8.3f} "
              f"{r['checkpoint_p99']:>8.3f} {r['learners_per_checkpoint']:>7.0f} "
              f"{r['bytes_per_checkpoint'] / 1e6:>6.1f} {r['state_mb_per_second']:>6.0f} "
              f"{r['peak_rss_mb']:>7.0f} {r['live_learner_mb']:>8.1f} {r['folder_mb']:>7.1f} "
              f"{r['state_mb']:>8.1f} {restart:>9.2f}", flush=True)
        bar.update(events)
    bar.close()


if __name__ == "__main__":
    main()
