"""The Flink cases of test_flink.py, each run as its own process (the mini-cluster's JVM and
Python workers end with it):

    python flink_job.py failure SOURCE OUTPUT MARKER PARALLELISM FAIL_AFTER
        the job on SOURCE with checkpoints every 500 ms; the learner function of the subtask
        that reaches FAIL_AFTER events first raises once (MARKER records that it did), and
        Flink restarts the job from its last checkpoint.
    python flink_job.py savepoint FOLDER OUTPUT SAVEPOINTS SECOND_FILE FIRST_COUNT TOTAL
        the job watching FOLDER at parallelism 1 until FIRST_COUNT predictions are
        committed, stopped with a savepoint; then SECOND_FILE moved into FOLDER and the job
        restored from the savepoint at parallelism 2 until TOTAL predictions are committed.
"""

import os
import sys
import time

from streamlearn.service.config import Config
from streamlearn.service.flink import (LearnerFunction, _environment, build_job,
                                       committed_lines, configuration, stop_with_savepoint)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def _env(output: str, parallelism: int, extra: dict | None = None):
    from pyflink.datastream import StreamExecutionEnvironment

    return StreamExecutionEnvironment.get_execution_environment(
        configuration(output + "-checkpoints", parallelism, checkpoint_ms=500, extra=extra))


def failure(source, output, marker, parallelism, fail_after) -> None:
    class Failing(LearnerFunction):
        def open(self, context):
            super().open(context)
            self.seen = 0

        def process_element(self, value, ctx):
            self.seen += 1
            if self.seen == int(fail_after):
                try:  # one subtask, once: the first to create the marker fails
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    raise RuntimeError("injected failure")
            yield from super().process_element(value, ctx)

    env = _env(output, int(parallelism))
    build_job(env, Config(source=source), output, state_digests=True,
              learner_function=Failing)
    env.execute("streamlearn-failure")


def savepoint(folder, output, savepoints, second, first_count, total) -> None:
    def committed():
        return len(committed_lines(output)) if os.path.isdir(output) else 0

    env = _env(output, 1)
    build_job(env, Config(source=folder), output, follow_ms=200, state_digests=True)
    client = env.execute_async("streamlearn-savepoint-1")
    _wait(lambda: committed() >= int(first_count), 120, "the first file's predictions")
    path = stop_with_savepoint(client, savepoints)
    os.replace(second, os.path.join(folder, os.path.basename(second)))
    env = _env(output, 2, {"execution.state-recovery.path": path})
    build_job(env, Config(source=folder), output, follow_ms=200, state_digests=True)
    client = env.execute_async("streamlearn-savepoint-2")
    _wait(lambda: committed() >= int(total), 120, "every prediction")
    client.cancel().result()


if __name__ == "__main__":
    _environment()
    {"failure": failure, "savepoint": savepoint}[sys.argv[1]](*sys.argv[2:])
