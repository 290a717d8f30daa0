"""Embedded databases for the service's learner states: SQLite (the store in use), LMDB and
RocksDB, on the store's workload.

Each engine is used as ``service/store.py`` uses SQLite: one write transaction open at a
time, committed durably (SQLite WAL with ``synchronous=FULL``; LMDB with its default
``sync=True``; RocksDB with a ``WriteBatch`` written with ``sync=True`` and its WAL on).
Printed per engine, in a fresh folder each:

- a checkpoint: 10,000 changed default learners (their row states, 11.3 KB each)
  written and committed, three times over the same keys; MB/s of state, best and worst;
- the same with 95,000 learners, once (the 10^5-key run's final checkpoint);
- with 200,000 small learners (4 columns, 2.4 KB) stored: a read of a random stored key
  and a write of one learner into the open transaction (an eviction), us per call;
- reopening the folder, seconds, and its size on disk.

    python benchmarks/store_engines.py [--engines sqlite,lmdb,rocksdict]

LMDB (``pip install lmdb``) and RocksDB (``pip install rocksdict``) are measured where
installed; they are not dependencies of streamlearn.
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

from common import Progress, add_quiet, machine, row_states

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


class SqliteEngine:
    name = "sqlite"

    def __init__(self, path):
        from streamlearn.service.store import StateStore

        self.store = StateStore(path)

    def put_many(self, rows):
        self.store.put_many((key, state, 1, 0) for key, state in rows)

    def commit(self):
        self.store.commit({"file": [0, 1]}, "file")

    def get(self, key):
        return self.store.get(key)

    def close(self):
        self.store.close()


class LmdbEngine:
    name = "lmdb"

    def __init__(self, path):
        import lmdb

        os.makedirs(path, exist_ok=True)
        self.env = lmdb.open(path, map_size=1 << 36, sync=True, metasync=True)
        self.txn = self.env.begin(write=True)

    def put_many(self, rows):
        for key, state in rows:
            self.txn.put(key.encode(), state)

    def commit(self):
        self.txn.commit()
        self.txn = self.env.begin(write=True)

    def get(self, key):
        return self.txn.get(key.encode())

    def close(self):
        self.txn.abort()
        self.env.close()


class RocksEngine:
    name = "rocksdict"

    def __init__(self, path):
        import rocksdict

        self.rocksdict = rocksdict
        self.db = rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))
        self.sync = rocksdict.WriteOptions()
        self.sync.sync = True
        self.batch = rocksdict.WriteBatch(raw_mode=True)

    def put_many(self, rows):
        for key, state in rows:
            self.batch.put(key.encode(), state)

    def commit(self):
        self.db.write(self.batch, self.sync)
        self.batch = self.rocksdict.WriteBatch(raw_mode=True)

    def get(self, key):
        return self.db.get(key.encode())

    def close(self):
        self.db.close()


ENGINES = {engine.name: engine for engine in (SqliteEngine, LmdbEngine, RocksEngine)}


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files)


def run(engine_class, big: list, small: list, workdir: str) -> None:
    path = os.path.join(workdir, engine_class.name)
    engine = engine_class(path)
    rates = []
    for repeat in range(3):
        start = time.perf_counter()
        engine.put_many((f"k{i}", big[(i + repeat) % len(big)]) for i in range(10_000))
        engine.commit()
        rates.append(10_000 * len(big[0]) / (time.perf_counter() - start) / 1e6)
    start = time.perf_counter()
    engine.put_many((f"m{i}", big[i % len(big)]) for i in range(95_000))
    engine.commit()
    rate95 = 95_000 * len(big[0]) / (time.perf_counter() - start) / 1e6
    for start_key in range(0, 200_000, 20_000):
        engine.put_many((f"s{i}", small[i % len(small)])
                        for i in range(start_key, start_key + 20_000))
        engine.commit()
    keys = [f"s{random.randrange(200_000)}" for _ in range(20_000)]
    start = time.perf_counter()
    for key in keys:
        engine.get(key)
    read = (time.perf_counter() - start) / len(keys) * 1e6
    start = time.perf_counter()
    for i, key in enumerate(keys):
        engine.put_many([(key, small[i % len(small)])])
    write = (time.perf_counter() - start) / len(keys) * 1e6
    engine.commit()
    engine.close()
    start = time.perf_counter()
    engine = engine_class(path)
    engine.get("s1")
    reopen = time.perf_counter() - start
    engine.close()
    print(f"{engine_class.name:>10} {min(rates):>8.0f} {max(rates):>8.0f} {rate95:>10.0f} "
          f"{read:>8.1f} {write:>8.1f} {reopen:>8.3f} {folder_bytes(path) / 1e6:>9.0f}",
          flush=True)
    shutil.rmtree(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,lmdb,rocksdict")
    add_quiet(parser)
    args = parser.parse_args()
    random.seed(0)
    big, small = row_states(20, 64), row_states(4, 64)
    print(f"# machine: {machine()}")
    print(f"{'engine':>10} {'ck10k MB/s':>17} {'ck95k MB/s':>10} {'read us':>8} "
          f"{'write us':>8} {'reopen s':>8} {'folder MB':>9}")
    names = args.engines.split(",")
    bar = Progress(len(names), "engine", args.quiet)
    for name in names:
        try:
            engine_class = ENGINES[name]
            if name != "sqlite":
                __import__(name)
        except (KeyError, ImportError):
            print(f"{name:>10} not installed (pip install {name})")
        else:
            with tempfile.TemporaryDirectory(dir=os.environ.get("SL_BENCH_DIR")) as workdir:
                run(engine_class, big, small, workdir)
        bar.update()
    bar.close()


if __name__ == "__main__":
    main()
