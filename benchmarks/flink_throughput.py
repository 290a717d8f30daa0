"""Events per second of the Flink job (PyFlink's local mini-cluster) at parallelism 1 and 2,
next to the single-process service on the same file and a Flink job that only parses.

Each row is a fresh process tree (client, JVM, Python workers): its wall time on the events,
its start-up time (the same command on a file of one event), events/s net of that start-up,
and the peak resident memory of the whole tree. The job runs as ``streamlearn-service flink``
runs it (checkpoints every 10 s). "parse only" is the same job with a keyed function that
parses each event and emits a line for it (key and label): what the job costs without the
learners. "learner as bytes per event" keeps each key's learner as its ``to_bytes()`` in
the keyed state and rebuilds it with ``from_bytes`` for every event, instead of the object
that PyFlink's state cache keeps between events. Run it with
the python of a venv that has apache-flink (README, Scaling out):

    python benchmarks/flink_throughput.py [--events 100000] [--keys 1000] [--parallelism 1,2]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from common import Progress, add_quiet, machine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from service_helpers import SERVICE, event_lines, write_lines  # noqa: E402


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    children, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, ()))
    return total


def timed(argv: list, cwd: str) -> tuple:
    """(seconds, peak MB of the process tree) of a command."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{argv[:3]} failed: {err.decode()[-2000:]}")
    return elapsed, peak[0] / 2**20


def variant_job(variant: str, source: str, output: str, parallelism: int) -> None:
    """The job with another keyed function (``--variant``): "parse-only" parses each event
    and emits a line for it; "bytes" keeps each key's learner as its to_bytes() and
    rebuilds it with from_bytes for every event (the design without PyFlink's object
    cache)."""
    from streamlearn.service.config import Config
    from streamlearn.service.events import parse
    from streamlearn.service.flink import (LearnerFunction, _environment, build_job,
                                           configuration)

    class ParseOnly(LearnerFunction):
        def process_element(self, value, ctx):
            event = parse(value[1], self.config.limits)
            yield json.dumps({"key": event.key, "y": event.y})

    class _BytesState:
        """The keyed state as the function sees it, holding (bytes, applied, refused)."""

        def __init__(self, state, cls):
            self.state, self.cls = state, cls

        def value(self):
            stored = self.state.value()
            return stored and (self.cls.from_bytes(stored[0]), *stored[1:])

        def update(self, value):
            self.state.update((value[0].to_bytes(), *value[1:]))

    class Bytes(LearnerFunction):
        read_cache = 0  # every event reads the state

        def open(self, context):
            super().open(context)
            self.state = _BytesState(self.state, type(self.prototype))

    _environment()
    from pyflink.datastream import StreamExecutionEnvironment

    env = StreamExecutionEnvironment.get_execution_environment(
        configuration(output + "-checkpoints", parallelism))
    build_job(env, Config(source=source), output,
              learner_function={"parse-only": ParseOnly, "bytes": Bytes}[variant])
    env.execute(variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--parallelism", default="1,2")
    parser.add_argument("--variant", nargs=4,
                        metavar=("VARIANT", "SOURCE", "OUTPUT", "PARALLELISM"),
                        help=argparse.SUPPRESS)
    add_quiet(parser)
    args = parser.parse_args()
    if args.variant:
        variant, source, output, parallelism = args.variant
        return variant_job(variant, source, output, int(parallelism))
    import pyflink.version

    print(f"# machine: {machine()}; {args.events:,} events over {args.keys:,} keys, default "
          f"ColumnarRegressor; apache-flink {pyflink.version.__version__}")
    print("| job | parallelism | seconds | start-up s | events/s | events/s net of start-up "
          "| peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        big, small = os.path.join(work, "events.jsonl"), os.path.join(work, "one.jsonl")
        lines = event_lines(args.events, n_keys=args.keys, seed=0)
        write_lines(big, lines)
        write_lines(small, lines[:1])
        runs = [("service", 1, lambda src, out, p: [
            SERVICE, "run", "--source", src, "--checkpoint-dir", out, "--metrics-address",
            "none"])]
        for p in map(int, args.parallelism.split(",")):
            runs.append(("flink job", p, lambda src, out, p: [
                SERVICE, "flink", "--source", src, "--output", out, "--checkpoint-dir",
                out + "-ck", "--parallelism", str(p)]))
            runs.append(("flink parse only", p, lambda src, out, p: [
                sys.executable, os.path.abspath(__file__), "--variant", "parse-only", src, out,
                str(p)]))
            runs.append(("flink job, learner as bytes per event", p, lambda src, out, p: [
                sys.executable, os.path.abspath(__file__), "--variant", "bytes", src, out,
                str(p)]))
        bar = Progress(len(runs) * args.events, "event", args.quiet)
        for n, (label, p, argv) in enumerate(runs):
            startup, _ = timed(argv(small, os.path.join(work, f"s{n}"), p), work)
            seconds, peak = timed(argv(big, os.path.join(work, f"b{n}"), p), work)
            net = args.events / max(seconds - startup, 1e-9)
            print(f"| {label} | {p} | {seconds:.2f} | {startup:.2f} | "
                  f"{args.events / seconds:,.0f} | {net:,.0f} | {peak:,.0f} |", flush=True)
            bar.update(args.events)
        bar.close()


if __name__ == "__main__":
    main()
