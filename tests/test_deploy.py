"""What deploy/ ships: the alert rules under `promtool test rules`, and the Grafana dashboard
with every panel expression evaluated by a real Prometheus scraping a running service (which
also loads and evaluates the alert rules)."""

import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
import redis

from servers import prometheus_server, redis_server
from service_helpers import JUNK, event_lines, free_port, start_cli, wait_for
from streamlearn.service.sources import RedisTarget

DEPLOY = pathlib.Path(__file__).resolve().parent.parent / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "streamlearn.json"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
    return path


def test_the_alert_rules_pass_their_promtool_tests():
    for args in (["check", "rules", str(ALERTS)],
                 ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")]):
        out = subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
    alerts = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
    tested = set(re.findall(r"alertname: (\w+)",
                            (DEPLOY / "prometheus" / "alerts_test.yml").read_text()))
    assert len(alerts) == 8 and alerts == tested  # every alert has a test, firing and not


def panel_expressions(dashboard: dict) -> list:
    """(panel title, expr) of every target of every panel, rows' panels included."""
    found = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            found.extend((panel["title"], target["expr"]) for target in panel.get("targets", []))
    walk(dashboard["panels"])
    return found


def substitute(expr: str, variables: dict) -> str:
    """Grafana's variables as it would put them in a query."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${name}", variables[name])
    assert "$" not in expr, f"an unknown variable in {expr}"
    return expr


def test_the_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = panel_expressions(dashboard)
    assert len(expressions) >= 20
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = {name for _, expr in expressions for name in re.findall(r"\$(\w+)", expr)}
    assert used - {"__rate_interval"} <= defined
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for _, expr in expressions:  # no per-key series: 10^7 keys would sink Prometheus
        assert not re.search(r"\bkey\b", expr), expr


def _finite(result: list) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def test_every_panel_returns_data_from_a_real_prometheus(tmp_path):
    """A service on a Redis source with junk events, a small learner cache (evictions), a
    broker that pauses (a timeout fault) and a steady trickle of events; every panel expression must parse and
    return a finite value, and every alert rule must evaluate without error."""
    dashboard = json.loads(DASHBOARD.read_text())
    port, stop = free_port(), threading.Event()
    with redis_server(tmp_path) as redis_port:
        url = f"redis://127.0.0.1:{redis_port}/0?stream=ev&partitions=2"
        lines = event_lines(3_000, n_keys=40, seed=9)
        target = RedisTarget(url + "&timeout=10")  # rides out the pause below
        target.publish(line + b"\n" for line in lines[:1_000] + JUNK)

        def trickle():  # events keep coming, so rates and checkpoints keep moving
            for start in range(1_000, len(lines), 20):
                if stop.wait(0.2):
                    return
                target.publish(line + b"\n" for line in lines[start:start + 20])
        producer = threading.Thread(target=trickle, daemon=True)
        producer.start()
        proc = start_cli("run", "--source", url, "--checkpoint-dir", tmp_path / "ck",
                         "--checkpoint-interval", "1", "--max-learners", "10",
                         "--metrics-address", f"127.0.0.1:{port}")
        try:
            client = redis.Redis(port=redis_port)
            wait_for(lambda: client.xinfo_consumers("ev:0", "streamlearn"), timeout=60,
                     what="the service to read")
            client.client_pause(2_000)  # past the service's 0.5 s socket timeout: a fault
            client.close()
            with prometheus_server(tmp_path, f"127.0.0.1:{port}", [ALERTS]) as prometheus:
                variables = {"job": "streamlearn", "instance": f"127.0.0.1:{port}",
                             "__rate_interval": "15s"}
                pending = dict.fromkeys(
                    substitute(expr, variables) for _, expr in panel_expressions(dashboard))
                deadline = time.monotonic() + 120
                while pending and time.monotonic() < deadline:
                    for expr in list(pending):
                        if _finite(prometheus(expr)):
                            del pending[expr]
                    time.sleep(1)
                assert not pending, f"panels without data: {list(pending)}"
                rules = wait_for(lambda: (lambda d: d if d and all(
                    r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
                    for g in d["groups"] for r in g["rules"]) else None)(
                        prometheus.get("/api/v1/rules")), timeout=30, what="rules evaluated")
                evaluated = [r for g in rules["groups"] for r in g["rules"]]
                assert len(evaluated) == 8
                assert all(r["health"] == "ok" for r in evaluated), evaluated
                labels = {name for series in prometheus.get(
                    "/api/v1/series", **{"match[]": '{__name__=~"streamlearn_.*"}'})
                    for name in series}
                assert "key" not in labels
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
