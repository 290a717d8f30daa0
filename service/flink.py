"""The service's per-key learners as an Apache Flink job (PyFlink; the README's "On Apache
Flink" says how to install it beside River).

The job is the service's loop spread over a cluster: JSON lines from files, the service's
own parser and limits, ``key_by(key)``, and per key a learner held in Flink's keyed state,
stepped by :func:`service.app.step` (predict, then learn or advance). Predictions go to a
file sink; events the parser or the learner refuses go to a side output of dead letters.
Every operator the job adds has a ``uid``, so savepoints survive upgrades and rescaling.

Flink owns the fault tolerance: checkpoints snapshot the keyed learners and the source's
position together, and the file sink commits its files when a checkpoint completes, so the
committed output holds every prediction once. A learner lives in a
``ValueState(PICKLED_BYTE_ARRAY)`` as the object itself: PyFlink caches it between events
(``python.state.cache-size``) and pickles it, through ``to_bytes`` (the learners'
``__reduce__``), only when a bundle ends or a checkpoint is taken. The pickle holds
nothing but the class's ``from_bytes`` and the learner's bytes; like every Flink
checkpoint it must live where only the cluster writes.

Each prediction line is ``{"key", "event", "prediction", "y"}``, ``event`` counting the
key's applied events from 0 (the service's order of that key's predictions);
``state_digests`` adds the SHA-256 of the learner's ``to_bytes()`` after the step.

    streamlearn-service flink --source events.jsonl --output out/ [--parallelism 2]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import signal
import sys
import threading

try:
    from pyflink.common import Configuration, Duration, Encoder, Types, WatermarkStrategy
    from pyflink.datastream import (KeyedProcessFunction, OutputTag, ProcessFunction,
                                    StreamExecutionEnvironment)
    from pyflink.datastream.connectors.file_system import (
        BucketAssigner, FileSink, FileSource, RollingPolicy, StreamFormat)
    from pyflink.datastream.state import ValueStateDescriptor
except ImportError as exc:  # an optional extra
    raise ImportError("the Flink job needs apache-flink: pip install apache-flink, then "
                      "streamlearn (README, Scaling out)") from exc

from .app import Refused, step
from .config import Config, build_model, parse_param
from .events import Invalid, parse
from .metrics import EVENTS, EVENTS_PER_SECOND, INVALID_EVENTS, LEARNER_RESETS

__all__ = ["LearnerFunction", "ParseFunction", "build_job", "committed_lines",
           "configuration", "main", "stop_with_savepoint"]

# Keyed learners a Python worker keeps as objects between bundles: a state cache smaller
# than the keys of a worker pickles learners in and out all the time.
STATE_CACHE = 100_000
# Events per bundle: a bundle ends at a checkpoint or after BUNDLE_MS anyway, so a large one
# writes each key's learner once per checkpoint instead of once per thousand events.
BUNDLE_SIZE = 1_000_000
BUNDLE_MS = 1_000


def configuration(checkpoint_dir: str, parallelism: int = 1, checkpoint_ms: int = 10_000,
                  restarts: int = 3, extra: dict | None = None):
    """The Flink configuration of the job: Python workers running this interpreter,
    exactly-once checkpoints every ``checkpoint_ms`` into the folder ``checkpoint_dir``
    (the job manager's memory holds at most 5 MB of state), ``restarts`` restarts from the
    last checkpoint after a failure, and ``extra`` (Flink keys) over that."""
    conf = Configuration()
    for key, value in {
            "execution.checkpointing.dir": "file://" + os.path.abspath(checkpoint_dir),
            # the local mini-cluster listens on loopback only (a cluster's own config says
            # where its processes listen)
            "jobmanager.bind-host": "127.0.0.1", "taskmanager.bind-host": "127.0.0.1",
            "rest.bind-address": "127.0.0.1", "taskmanager.host": "127.0.0.1",
            "jobmanager.rpc.address": "127.0.0.1",
            "python.executable": sys.executable,
            "python.client.executable": sys.executable,
            "python.state.cache-size": str(STATE_CACHE),
            "python.fn-execution.bundle.size": str(BUNDLE_SIZE),
            "python.fn-execution.bundle.time": str(BUNDLE_MS),
            "parallelism.default": str(parallelism),
            "execution.checkpointing.interval": f"{checkpoint_ms} ms",
            "execution.checkpointing.mode": "EXACTLY_ONCE",
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": str(restarts),
            "restart-strategy.fixed-delay.delay": "0 s",
            **(extra or {})}.items():
        conf.set_string(key, value)
    return conf


def _environment(reporter: bool = False):
    """What PyFlink reads from the environment, set before the JVM starts: workers as
    separate processes (thread mode fails on byte-array state in 2.3), logs out of
    site-packages; with ``reporter``, Flink's Prometheus reporter on the local
    mini-cluster's class path (it does not load reporters from the plugins folder, and
    PyFlink adds HADOOP_CLASSPATH to the class path it starts the JVM with)."""
    os.environ.setdefault("_python_worker_execution_mode", "process")
    os.environ.setdefault("FLINK_LOG_DIR", os.path.join(os.getcwd(), "flink-log"))
    if reporter:
        import glob

        import pyflink

        jars = glob.glob(os.path.join(os.path.dirname(pyflink.__file__), "plugins",
                                      "metrics-prometheus", "*.jar"))
        os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(
            filter(None, [os.environ.get("HADOOP_CLASSPATH"), *jars]))


# JSON of a str, without an encoder object per line (as service.app.prediction_line)
_escape = json.encoder.encode_basestring_ascii


def _dead_letter(invalid: Invalid, raw: str, key: str | None = None) -> str:
    letter = {"reason": invalid.reason, "detail": invalid.detail, "raw": raw}
    if key is not None:
        letter["key"] = key
    return json.dumps(letter)


def _metric_groups(context):
    """The service's metrics through PyFlink's metric group: counters named as the
    service's (``streamlearn_events_total``, ``streamlearn_invalid_events_total``,
    ``streamlearn_learner_resets_total``), their label as a key-value group."""
    group = context.get_metrics_group()
    events = {outcome: group.add_group("outcome", outcome).counter(EVENTS + "_total")
              for outcome in ("learned", "predicted", "invalid")}
    invalid = {}

    def reject(reason: str) -> None:
        if reason not in invalid:
            invalid[reason] = group.add_group("reason", reason).counter(
                INVALID_EVENTS + "_total")
        invalid[reason].inc()
        events["invalid"].inc()
    return group, events, reject


class ParseFunction(ProcessFunction):
    """A line to (key, line) if the service's parser takes it, else a dead letter."""

    def __init__(self, limits, dead_letters):
        self.limits, self.dead_letters = limits, dead_letters

    def open(self, context):
        _, _, self.reject = _metric_groups(context)

    def process_element(self, line, ctx):
        event = parse(line, self.limits)
        if isinstance(event, Invalid):
            self.reject(event.reason)
            yield self.dead_letters, _dead_letter(event, line[:self.limits.max_line_bytes + 1])
        else:
            yield event.key, line


class LearnerFunction(KeyedProcessFunction):
    """A key's learner in keyed state, stepped on each of the key's events: emits the
    prediction line, or a dead letter for an event the learner refuses. A learner that
    refuses ``reset_after`` events in a row (it diverged) starts again from the prototype,
    as the service's pool does."""

    def __init__(self, config: Config, dead_letters, state_digests: bool = False):
        self.config, self.dead_letters = config, dead_letters
        self.state_digests = state_digests

    # Keys whose state this instance also keeps at hand (0: none). Reading a ValueState
    # costs more than the learner's step; the entry at hand is the very object the state
    # holds (every step writes it back), and a new instance after a restore starts empty.
    read_cache = STATE_CACHE

    def open(self, context):
        self.prototype = build_model(self.config)
        # (learner, applied events, refusals in a row) of the current key
        self.state = context.get_state(ValueStateDescriptor("learner",
                                                            Types.PICKLED_BYTE_ARRAY()))
        self.at_hand = collections.OrderedDict()
        group, self.events, self.reject = _metric_groups(context)
        self.resets = group.counter(LEARNER_RESETS + "_total")
        self.per_second = group.meter(EVENTS_PER_SECOND, 10)

    def _store(self, key: str, entry: tuple) -> None:
        self.state.update(entry)
        if self.read_cache:
            self.at_hand[key] = entry
            self.at_hand.move_to_end(key)
            if len(self.at_hand) > self.read_cache:
                self.at_hand.popitem(last=False)

    def process_element(self, value, ctx):
        key, line = value
        self.per_second.mark_event()
        learner, applied, refused = self.at_hand.get(key) or self.state.value() or (
            self.prototype.spawn(self.config.seed), 0, 0)
        event = parse(line, self.config.limits)
        try:
            prediction, _, _ = step(learner, event, self.config.limits)
        except Refused as exc:
            self.reject(exc.invalid.reason)
            if exc.diverged:
                refused += 1
                if refused >= self.config.reset_after:
                    learner, refused = self.prototype.spawn(self.config.seed), 0
                    self.resets.inc()
            self._store(key, (learner, applied, refused))
            yield self.dead_letters, _dead_letter(exc.invalid, line, key)
            return
        self.events["predicted" if event.y is None else "learned"].inc()
        self._store(key, (learner, applied + 1, 0))
        line = (f'{{"key": {_escape(key)}, "event": {applied}, "prediction": {prediction!r}, '
                f'"y": {"null" if event.y is None else repr(event.y)}')
        if self.state_digests:
            line += f', "state_sha256": "{hashlib.sha256(learner.to_bytes()).hexdigest()}"'
        yield line + "}"


def build_job(env, config: Config, output: str, dead_letter_output: str | None = None,
              follow_ms: int = 0, state_digests: bool = False, learner_function=None):
    """Add the job to ``env``: ``config.source`` (a file or a folder of files; with
    ``follow_ms``, new files are picked up every that many ms), predictions to the folder
    ``output``, dead letters to ``dead_letter_output`` (default ``output/dead-letters``).
    ``learner_function``: a subclass of :class:`LearnerFunction` to use instead."""
    if config.source == "-" or "://" in config.source:
        raise ValueError("the Flink job reads files: give --source a file or a folder")
    dead_letters = OutputTag("dead-letters", Types.STRING())
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(),
                                                 config.source)
    if follow_ms:
        source = source.monitor_continuously(Duration.of_millis(follow_ms))
    lines = env.from_source(source.build(), WatermarkStrategy.no_watermarks(), "events") \
        .uid("streamlearn-source")
    parsed = lines.process(ParseFunction(config.limits, dead_letters),
                           output_type=Types.TUPLE([Types.STRING(), Types.STRING()])) \
        .uid("streamlearn-parse").name("parse")
    function = (learner_function or LearnerFunction)(config, dead_letters, state_digests)
    predictions = parsed.key_by(lambda pair: pair[0], key_type=Types.STRING()) \
        .process(function, output_type=Types.STRING()).uid("streamlearn-learn").name("learn")

    def sink(stream, folder, uid):
        stream.sink_to(FileSink.for_row_format(folder, Encoder.simple_string_encoder())
                       .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
                       .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
                       .build()).uid(uid).name(uid)
    sink(predictions, output, "streamlearn-predictions")
    dead_folder = dead_letter_output or os.path.join(output, "dead-letters")
    sink(parsed.get_side_output(dead_letters).union(predictions.get_side_output(dead_letters)),
         dead_folder, "streamlearn-dead-letters")


def stop_with_savepoint(client, directory: str) -> str:
    """Stop the job of ``client`` (a PyFlink JobClient) with a savepoint in ``directory``;
    returns its path, which ``--restore`` takes. PyFlink 2.3's own ``stop_with_savepoint``
    calls a Java method that no longer exists (the format type became an argument)."""
    from pyflink.common.completable_future import CompletableFuture
    from pyflink.java_gateway import get_gateway

    canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return CompletableFuture(client._j_job_client.stopWithSavepoint(
        False, "file://" + os.path.abspath(directory), canonical), str).result()


def committed_lines(folder: str) -> list:
    """The lines of the files a file sink committed in ``folder`` (not its in-progress or
    pending files, whose names start with a dot), sorted by file name."""
    out = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not name.startswith(".") and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out.extend(line.rstrip("\n") for line in f if line.strip())
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlearn-service flink", description=(
        "Run the per-key learners as a Flink job on the local mini-cluster, or print the "
        "command that submits it to a cluster."))
    parser.add_argument("--source", help="a JSON-lines file or a folder of them")
    parser.add_argument("--output", required=True, help="folder of the prediction files")
    parser.add_argument("--dead-letter", help="folder of the dead-letter files (default "
                        "OUTPUT/dead-letters)")
    parser.add_argument("--config", help="the service's TOML file")
    parser.add_argument("--model", help="model name (default: columnar)")
    parser.add_argument("--param", action="append", type=parse_param, dest="params",
                        metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--checkpoint-dir", help="Flink's checkpoints go to DIR/flink "
                        "(default ./streamlearn-checkpoint)")
    parser.add_argument("--checkpoint-ms", type=int, default=10_000)
    parser.add_argument("--follow-ms", type=int, default=0, help="watch the folder for new "
                        "files every that many ms (the job then runs until cancelled)")
    parser.add_argument("--restore", help="a savepoint or retained checkpoint to start from")
    parser.add_argument("--flink-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Flink configuration entry (repeatable), e.g. "
                        "state.backend.type=rocksdb")
    parser.add_argument("--metrics-port", type=int, help="serve Flink's metrics, the job's "
                        "streamlearn_* among them, to Prometheus on this port (Flink's "
                        "reporter listens on every interface)")
    parser.add_argument("--state-digests", action="store_true",
                        help="add the SHA-256 of the key's learner state to each prediction")
    parser.add_argument("--print-cluster-command", action="store_true",
                        help="print the 'flink run' command for a cluster and exit")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.params is not None:
        args.params = tuple(sorted(args.params))
    config = Config.build(args, args.config)
    if args.print_cluster_command:
        argv = [a for a in (argv if argv is not None else sys.argv[1:])
                if a != "--print-cluster-command"]
        print(" ".join(["flink", "run", "--pyModule", __name__, "--pyExecutable",
                        sys.executable, *argv]))
        return 0
    extra = dict(entry.split("=", 1) for entry in args.flink_conf)
    if args.restore:
        extra["execution.state-recovery.path"] = args.restore
    if args.metrics_port:
        extra.update({"metrics.reporter.prom.factory.class":
                      "org.apache.flink.metrics.prometheus.PrometheusReporterFactory",
                      "metrics.reporter.prom.port": str(args.metrics_port)})
    _environment(reporter=bool(args.metrics_port))
    env = StreamExecutionEnvironment.get_execution_environment(configuration(
        os.path.join(config.checkpoint_dir, "flink"), args.parallelism, args.checkpoint_ms,
        extra=extra))
    build_job(env, config, args.output, args.dead_letter, args.follow_ms, args.state_digests)
    if not args.follow_ms:
        env.execute("streamlearn")
        return 0
    # a job that watches a folder runs until SIGTERM/SIGINT stop it with a savepoint
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client = env.execute_async("streamlearn")
    while not stop.wait(1.0):
        if client.get_job_status().result().is_globally_terminal_state():
            return 1  # failed past its restarts, or cancelled from outside
    path = stop_with_savepoint(client, os.path.join(config.checkpoint_dir, "flink",
                                                    "savepoints"))
    print(f"stopped with a savepoint; resume with --restore {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
