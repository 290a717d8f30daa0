"""Helpers for the service tests: event files, free ports, running the real CLI."""

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

SERVICE = shutil.which("streamlearn-service") or "streamlearn-service"

JUNK = [
    b"not json at all",
    b'{"key": "k", "x": {"a": 1.0}',
    b"[1, 2, 3]",
    b'{"key": 7, "x": {"a": 1.0}, "y": 1}',
    b'{"key": "sensor-1", "y": 2.0}',
    b'{"key": "sensor-1", "x": [1, 2], "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": "warm"}, "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": true}, "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": null}, "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": NaN}, "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": 1e400}, "y": 2.0}',
    b'{"key": "sensor-1", "x": {"a": 1.0}, "y": "2.0"}',
    b'{"key": "sensor-1", "x": {"a": 1.0}, "y": Infinity}',
    b"\xff\xfe\x00binary\x80junk",
]


def event_lines(n: int, n_keys: int, seed: int = 0) -> list:
    """``n`` valid JSON event lines over ``n_keys`` keys; every 4th unlabelled."""
    rng = random.Random(seed)
    lines = []
    for t in range(n):
        x = {"a": rng.gauss(0, 1), "b": rng.random()}
        event = {"key": f"sensor-{rng.randrange(n_keys)}", "x": x}
        if t % 4:
            event["y"] = 3 * x["a"] + rng.gauss(0, 0.1)
        lines.append(json.dumps(event).encode())
    return lines


def write_lines(path, lines) -> None:
    with open(path, "wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([SERVICE, *map(str, args)], capture_output=True, timeout=timeout,
                          **kwargs)


def start_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([SERVICE, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kwargs)


def inspect(directory) -> dict:
    out = run_cli("inspect", directory, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def python() -> str:
    return sys.executable


def applied_events(checkpoint_dir) -> int:
    """Events applied according to the checkpoint in ``checkpoint_dir`` (0 if none yet)."""
    from streamlearn.service.store import StateStore, StoreError

    try:
        store = StateStore(checkpoint_dir, writer=False)
    except StoreError:
        return 0
    try:
        return store.events()
    except StoreError:  # the schema is being created
        return 0
    finally:
        store.close()


def kill_when(proc, checkpoint_dir, events: int) -> None:
    """SIGKILL ``proc`` once its checkpoint shows at least ``events`` applied events."""
    wait_for(lambda: applied_events(checkpoint_dir) >= events or proc.poll() is not None,
             timeout=120, interval=0.005, what=f"{events} events applied")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
