"""Real servers for integration tests, each on a free 127.0.0.1 port, stopped afterwards."""

import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest

from service_helpers import free_port, wait_for


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed (.ci/run installs it)")
    return path


def start_redis(directory, port: int, durable: bool = False) -> subprocess.Popen:
    """A redis-server on 127.0.0.1:``port`` keeping its data in ``directory`` (with
    ``durable``, an append-only file synced at every write: it survives SIGKILL), ready."""
    import redis

    proc = subprocess.Popen([_require("redis-server"), "--bind", "127.0.0.1", "--port",
                             str(port), "--save", "", "--appendonly",
                             "yes" if durable else "no", "--appendfsync", "always",
                             "--dir", str(directory)], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)

    def ready():
        try:
            return client.ping()
        except (redis.ConnectionError, redis.ResponseError):  # LOADING the AOF
            return False

    try:
        wait_for(ready, timeout=20, what="redis-server")
    finally:
        client.close()
    return proc


@contextlib.contextmanager
def redis_server(tmp_path):
    """A private redis-server; yields its port."""
    port = free_port()
    proc = start_redis(tmp_path, port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextlib.contextmanager
def prometheus_server(tmp_path, target: str):
    """A Prometheus scraping ``target`` every second; yields a query function."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: streamlearn\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    proc = subprocess.Popen([_require("prometheus"), f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(expr: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["data"]["result"]
        except OSError:
            return []

    try:
        yield query
    finally:
        proc.terminate()
        proc.wait(timeout=30)
