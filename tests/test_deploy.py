"""What deploy/ ships: the alert rules under `promtool test rules`; the Grafana dashboard
with every panel expression evaluated by a real Prometheus scraping a running service (which
also loads and evaluates the alert rules); the example config run for real; the systemd
unit under `systemd-analyze verify`; the container recipe's command and config."""

import argparse
import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
import redis

from servers import prometheus_server, redis_server
from service_helpers import (JUNK, applied_events, event_lines, free_port, run_cli, start_cli,
                             wait_for, write_lines)
from streamlearn.service.config import Config
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


def test_the_example_config_runs_the_service_on_a_real_redis(tmp_path):
    """deploy/streamlearn.toml as the systemd unit uses it, with only the addresses and
    folders moved into the test's: it learns, answers /readyz, and stops cleanly."""
    port = free_port()
    with redis_server(tmp_path) as redis_port:
        url = f"redis://127.0.0.1:{redis_port}/0?stream=events&partitions=4"
        write_lines(tmp_path / "e.jsonl", event_lines(500, n_keys=10, seed=3) + JUNK[:2])
        assert run_cli("produce", "--target", url, tmp_path / "e.jsonl").returncode == 0
        proc = start_cli("run", "--config", DEPLOY / "streamlearn.toml", "--source", url,
                         "--checkpoint-dir", tmp_path / "ck", "--dead-letter",
                         tmp_path / "dead.jsonl", "--metrics-address", f"127.0.0.1:{port}")
        try:
            wait_for(lambda: applied_events(tmp_path / "ck") == 500, timeout=90,
                     interval=0.2, what="every event learned and checkpointed")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                assert r.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == 2


def _cli_flags(argv: list) -> None:
    """``streamlearn-service`` arguments as its parser reads them (SystemExit if unknown)."""
    from streamlearn.service.cli import _parser

    args = _parser().parse_args(argv)
    assert args.command == "run"


def test_the_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify finds nothing to say (it prints every line it cannot parse),
    with ExecStart pointed at this streamlearn-service; its flags are the CLI's."""
    unit = (DEPLOY / "systemd" / "streamlearn.service").read_text()
    command = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    _cli_flags(command.group(2).split())
    assert "--config /etc/streamlearn/streamlearn.toml" in command.group(2)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (Debian's systemd package)")
    local = tmp_path / "streamlearn.service"
    local.write_text(unit.replace(command.group(1), shutil.which("streamlearn-service")))
    out = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr


def test_the_container_recipe_runs_its_own_config():
    recipe = (DEPLOY / "container" / "Containerfile").read_text()
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", recipe, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", recipe, re.M).group(1))
    assert entry[0] == "streamlearn-service"
    _cli_flags(entry[1:] + cmd)
    copied = re.search(r"^COPY (deploy/container/streamlearn\.toml) (\S+)$", recipe, re.M)
    assert copied.group(2) == cmd[cmd.index("--config") + 1]
    config = Config.build(argparse.Namespace(), str(DEPLOY.parent / copied.group(1)))
    assert config.checkpoint_dir.startswith("/data/")  # on the volume
    assert "VOLUME /data" in recipe and "STOPSIGNAL SIGTERM" in recipe
    assert config.metrics_address.endswith(":9464") and "EXPOSE 9464" in recipe
