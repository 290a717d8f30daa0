"""Progress bars. ``run`` over a file: on a terminal (a pseudo-terminal here) it shows
percent, events/s and ETA, and log lines print whole above it; with --quiet, or when stderr
is not a terminal, stderr holds the log lines and nothing else. A benchmark: the same, its
table's lines whole on stdout."""

import fcntl
import io
import os
import pathlib
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time

from service_helpers import SERVICE, event_lines, run_cli, wait_for, write_lines
from streamlearn.service.progress import FileProgress
from streamlearn.service.sources import Record

# the service's log format: "%(asctime)s %(name)s %(message)s"
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} streamlearn\.\S+ \S.*")


BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


class Terminal:
    """``streamlearn-service ARGS`` (or ``command``) with stderr, and stdout if ``both``, on a
    pseudo-terminal 120 columns wide; ``read`` gives what it printed so far."""

    def __init__(self, *args, command=(SERVICE,), both=False, **popen):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
        self.proc = subprocess.Popen([*command, *map(str, args)], stderr=slave,
                                     stdout=slave if both else subprocess.DEVNULL, **popen)
        os.close(slave)
        self.master, self.data = master, b""

    def read(self, seconds: float = 0.1) -> str:
        import select
        while select.select([self.master], [], [], seconds)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the command ended
                break
            if not chunk:
                break
            self.data += chunk
        return self.data.decode("utf-8", "replace")

    def finish(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
        assert self.proc.wait(timeout=5) == 0
        text = self.read(0.2)
        os.close(self.master)
        return text


def screen_lines(text: str) -> list:
    """The lines as a terminal ends up showing them: a carriage return starts the line over
    (the bar redraws itself in place)."""
    return [line.rsplit("\r", 1)[-1] for line in text.replace("\r\n", "\n").split("\n")
            if line.rsplit("\r", 1)[-1]]


def _log_lines_whole(text: str) -> list:
    """Every log line starts a line of its own and matches the format."""
    pieces = re.split(r"[\r\n]+", text)
    logged = [p for p in pieces if "streamlearn.service" in p]
    assert logged and all(LOG_LINE.fullmatch(p) for p in logged), logged
    return logged


def test_a_terminal_shows_percent_rate_and_eta(tmp_path):
    write_lines(tmp_path / "events.jsonl", event_lines(20_000, n_keys=20))
    term = Terminal("run", "--source", tmp_path / "events.jsonl", "--checkpoint-dir",
                    tmp_path / "ck", "--metrics-address", "none")
    text = term.finish()
    bars = [p for p in re.split(r"[\r\n]+", text) if p.startswith("events.jsonl:")]
    assert bars, text
    last = bars[-1]
    assert re.search(r"100%\|.*\| [\d.]+M/[\d.]+M \[\d\d:\d\d<\d\d:\d\d, .*B/s, "
                     r"[\d,]+ events/s\]", last), last
    assert any(re.search(r"\d+%\|.*<\d\d:\d\d", b) for b in bars[:-1])  # an ETA on the way
    logged = _log_lines_whole(text)
    assert "stopped after" in logged[-1]
    # the finished bar stays on its line; the last log line follows it
    assert screen_lines(text)[-2:] == [last, logged[-1]]


def test_log_lines_print_whole_above_the_bar(tmp_path):
    """A warning while the bar is drawn (the followed file rewritten in place) has a line
    of its own."""
    path = tmp_path / "events.jsonl"
    write_lines(path, event_lines(2_000, n_keys=4, seed=1))
    term = Terminal("run", "--source", path, "--follow", "--checkpoint-dir", tmp_path / "ck",
                    "--metrics-address", "none")
    try:
        wait_for(lambda: "100%" in term.read(), timeout=60, what="the file read")
        write_lines(path, event_lines(3_000, n_keys=4, seed=2))  # rewritten: a new epoch
        wait_for(lambda: "reading the new content" in term.read(), timeout=60,
                 what="the rewrite noticed")
    finally:
        term.proc.send_signal(signal.SIGTERM)
    text = term.finish()
    logged = _log_lines_whole(text)
    assert any("reading the new content from its start" in line for line in logged)


def test_quiet_and_a_pipe_show_only_log_lines(tmp_path):
    write_lines(tmp_path / "events.jsonl", event_lines(5_000, n_keys=5))
    term = Terminal("run", "--source", tmp_path / "events.jsonl", "--checkpoint-dir",
                    tmp_path / "quiet", "--metrics-address", "none", "--quiet")
    quiet = term.finish().replace("\r\n", "\n")
    piped = run_cli("run", "--source", tmp_path / "events.jsonl", "--checkpoint-dir",
                    tmp_path / "pipe", "--metrics-address", "none").stderr.decode()
    for text in (quiet, piped):
        assert "\r" not in text and "%|" not in text
        lines = text.splitlines()
        assert lines and all(LOG_LINE.fullmatch(line) for line in lines), lines


def test_predictions_on_stdout_keep_the_terminal_to_themselves(tmp_path):
    write_lines(tmp_path / "events.jsonl", event_lines(2_000, n_keys=5))
    term = Terminal("run", "--source", tmp_path / "events.jsonl", "--checkpoint-dir",
                    tmp_path / "ck", "--metrics-address", "none", "--predictions", "-")
    assert "%|" not in term.finish()


def test_the_bar_follows_a_growing_and_a_rotated_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * 1000)
    stream = io.StringIO()

    def batch(end, count=10):
        return [Record("file", (0, end), b"{}")] * count
    with FileProgress(str(path), 200, stream,
                      clock=iter([0.0, 1.0, 2.0, 3.0]).__next__) as bar:
        assert (bar.bar.n, bar.bar.total) == (200, 1000)  # resumed at byte 200
        bar(batch(600))
        assert (bar.bar.n, bar.events) == (600, 10)
        path.write_bytes(b"x" * 3000)  # the followed file grew
        bar(batch(1500))
        assert (bar.bar.n, bar.bar.total) == (1500, 3000)
        path.write_bytes(b"y" * 500)  # rotated: a new file, read from its start
        bar(batch(100))
        assert (bar.bar.n, bar.bar.total) == (100, 500)
        bar([])  # idle: the last position is drawn
    assert "events/s" in stream.getvalue() and "100/500" in stream.getvalue()


def _scaling(*flags, **where):
    return dict(command=(sys.executable, "scaling.py", "--min-seconds", "0.01", "--repeats",
                         "1", *flags), cwd=BENCHMARKS, **where)


def test_a_benchmark_shows_progress_and_keeps_its_table_whole():
    piped = subprocess.run(_scaling()["command"], cwd=BENCHMARKS, capture_output=True,
                           text=True, timeout=300)
    assert piped.returncode == 0 and piped.stderr == ""  # not a terminal: no bar at all
    table = piped.stdout.splitlines()
    text = Terminal(**_scaling(both=True)).finish(timeout=300)
    assert re.search(r"\d+%\|.*\| \d/6 \[\d\d:\d\d<\d\d:\d\d, .*size/s\]", text), text
    shown = screen_lines(text)
    # the same lines as in the pipe, each whole on its own line (the timings differ)
    assert [line.split()[0] for line in shown] == [line.split()[0] for line in table]
    assert len(shown) == len(table) and "%|" not in "".join(shown)  # the bar is gone


def test_a_quiet_benchmark_writes_nothing_to_the_terminal():
    text = Terminal(**_scaling("--quiet")).finish(timeout=300)
    assert text == ""
