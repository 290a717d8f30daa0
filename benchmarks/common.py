"""Helpers shared by the benchmark scripts: machine description, timing, progress, and
learner states as the service stores them."""

import os
import platform
import sys
import time


def machine() -> str:
    """One line naming the CPU (model name, family and model), core count, the clones of the
    kernel's loops that the loader picks (AVX-512, AVX2 or baseline x86-64, from the CPU's
    flags as GCC's target_clones test them) and Python, for benchmark tables: two machines
    that both report "AMD EPYC" may differ in all of these."""
    cpu, fields = platform.processor() or "unknown CPU", {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" in fields:
        cpu = (f"{fields['model name']} (family {fields.get('cpu family')}, "
               f"model {fields.get('model')})")
    flags = set(fields.get("flags", "").split())
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags:
        clones = "AVX-512 clones"
    elif {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"} <= flags:
        clones = "AVX2 clones"
    else:
        clones = "baseline x86-64 loops"
    return f"{cpu}, {os.cpu_count()} cores, {clones}, Python {platform.python_version()}"


def add_quiet(parser) -> None:
    """The ``--quiet`` flag of every benchmark that shows progress."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (there is one only when stderr is a terminal)")


class Progress:
    """A bar on stderr over ``total`` units of a benchmark's work: percent, units per second
    and ETA (tqdm). Off when stderr is not a terminal or with ``quiet``: the output is then
    exactly what it is without it. While it is on, stdout's lines print whole above it."""

    def __init__(self, total: int, unit: str, quiet: bool = False):
        from tqdm import tqdm

        self.stdout, self.pending = sys.stdout, ""
        on = not quiet and sys.stderr.isatty()
        self.bar = tqdm(total=total, unit=unit, unit_scale=total >= 10_000, file=sys.stderr,
                        dynamic_ncols=True, disable=not on, leave=False)
        if on:
            sys.stdout = self

    def write(self, text: str) -> int:
        """stdout while the bar is on: whole lines go out with the bar cleared, then it is
        drawn again below them."""
        lines, newline, self.pending = (self.pending + text).rpartition("\n")
        if newline:
            self.bar.clear()
            self.stdout.write(lines + newline)
            self.stdout.flush()
            self.bar.refresh()
        return len(text)

    def flush(self) -> None:
        self.stdout.flush()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
        if sys.stdout is self:
            sys.stdout = self.stdout
            self.stdout.write(self.pending)  # a line printed without its end


def best_of(fn, repeats: int) -> list:
    """Wall-clock seconds of ``repeats`` calls of fn()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def row_states(n_columns: int, count: int, seed: int = 0) -> list:
    """``count`` distinct row states (what the service stores per key) of a learner with
    ``n_columns`` columns and features a and b, one learned event apart."""
    import random

    from streamlearn import ColumnarRegressor
    from streamlearn.table import LearnerTable

    fresh = ColumnarRegressor(n_columns=n_columns).spawn(seed)
    fresh.add_features(["a", "b"])
    table, rng = LearnerTable(fresh), random.Random(seed)
    row = table.new_row()
    out = []
    for i in range(count):
        table.use(row, i).learn_one({"a": rng.gauss(0, 1), "b": rng.random()}, float(i % 7))
        out.append(table.dump(row, i + 1))
    return out
