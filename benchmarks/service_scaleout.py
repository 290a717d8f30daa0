"""Aggregate events per second of 1, 2, ... ``streamlearn-service run`` processes sharing the
partitions of one Redis stream set (``--partitions``), each with its own checkpoint folder.

Events are published beforehand into a private redis-server (P partitions); then k processes
start at once, process j owning partitions j, j + k, ...; the clock runs from their start
(imports included) until their checkpoints together show every event applied.

    python benchmarks/service_scaleout.py [--events 200000] [--keys 10000] [--partitions 4]
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from common import Progress, add_quiet, machine

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from servers import start_redis  # noqa: E402
from service_helpers import (SERVICE, applied_events, event_lines, free_port,  # noqa: E402
                             run_cli, wait_for, write_lines)


def run(url: str, workdir: str, processes: int, partitions: int, events: int) -> float:
    """Seconds from the start of ``processes`` consumers until every event is applied."""
    folders = [os.path.join(workdir, f"ck-{processes}-{j}") for j in range(processes)]
    start = time.perf_counter()
    procs = [subprocess.Popen(
        [SERVICE, "run", "--source", url, "--checkpoint-dir", folder, "--metrics-address",
         "none", "--checkpoint-every", "20000",
         "--partitions", ",".join(str(p) for p in range(j, partitions, processes))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for j, folder in enumerate(folders)]
    try:
        wait_for(lambda: sum(applied_events(f) for f in folders) >= events, timeout=3600,
                 interval=0.02, what="every event applied")
        elapsed = time.perf_counter() - start
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--processes", default="1,2")
    add_quiet(parser)
    args = parser.parse_args()
    print(f"# machine: {machine()}; {args.events} events over {args.keys} keys, "
          f"{args.partitions} partitions, default ColumnarRegressor, checkpoint every "
          "20,000 events per process")
    print(f"{'processes':>9} {'seconds':>8} {'events/s':>10} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "events.jsonl")
        write_lines(path, event_lines(args.events, n_keys=args.keys, seed=0))
        first = None
        rows = list(map(int, args.processes.split(",")))
        bar = Progress(len(rows) * args.events, "event", args.quiet)
        for processes in rows:
            port = free_port()  # a fresh server per row: every row reads from the start
            server = start_redis(workdir, port)
            try:
                url = f"redis://127.0.0.1:{port}/0?stream=bench&partitions={args.partitions}"
                out = run_cli("produce", "--target", url, path, timeout=600)
                assert out.returncode == 0, out.stderr
                elapsed = run(url, workdir, processes, args.partitions, args.events)
            finally:
                server.terminate()
                server.wait()
            first = first or elapsed
            print(f"{processes:>9} {elapsed:>8.2f} {args.events / elapsed:>10,.0f} "
                  f"{first / elapsed:>9.2f}", flush=True)
            bar.update(args.events)
        bar.close()


if __name__ == "__main__":
    main()
