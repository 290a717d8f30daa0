"""Real servers for integration tests, each on a free 127.0.0.1 port, stopped afterwards."""

import contextlib
import json
import shutil
import subprocess
import urllib.error
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


class Prometheus:
    """A running Prometheus's HTTP API: ``prometheus(expr)`` is an instant query's result
    list (empty while it cannot answer); a query it rejects fails the test with its error."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["data"]
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                pytest.fail(f"Prometheus rejected {params or path}: {exc.read().decode()}")
            return None
        except OSError:
            return None

    def __call__(self, expr: str) -> list:
        data = self.get("/api/v1/query", query=expr)
        return data["result"] if data else []


@contextlib.contextmanager
def prometheus_server(tmp_path, target: str, rule_files=()):
    """A Prometheus scraping ``target`` (job "streamlearn") and evaluating ``rule_files``
    every second; yields a :class:`Prometheus`."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    rules = "".join(f"  - '{path}'\n" for path in rule_files)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n  - job_name: streamlearn\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    proc = subprocess.Popen([_require("prometheus"), f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield Prometheus(port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
