"""PyAirbyte syncs of `stream_results` into a warehouse, each in a process of its own: the
destination side of `test_exactly_once.py`, which kills a sync's process with SIGKILL, or kills the
connector under it.

    python -m integration_tests.exactly_once_driver CONFIG_JSON_PATH

then `sync JOB_JSON_PATH` lines on stdin. CONFIG_JSON_PATH is a connector config for `spec` and
`discover` only (discover sends no request, and the catalog does not depend on the config); a JOB
is {"config": <the connector config of this sync>, "cache": CACHE}, where CACHE is {"kind": "duckdb",
"path": ..., "schema": ...} or {"kind": "postgres", "host": ..., "port": ..., "user": ...,
"database": ..., "schema": ...}. So one fork server serves both warehouses' runs, each with its
own emulator.

Why a fork server: importing PyAirbyte and its `spec`/`discover` calls cost 10-30 s on a loaded
2-core machine, more than a whole round. This process pays that once, then, for each `sync` line on
stdin, forks a child that runs one `source.read(cache=...)` and prints `started PID` at once and
`exit PID CODE` when the child ends (CODE 0: the sync and its commit finished; 1: PyAirbyte raised,
e.g. the connector died; -9: killed). The child is an ordinary PyAirbyte process: the connector
(`source-commsmining` next to this Python) is its subprocess, handed the state the cache holds, and
killing the child does not kill the connector (as with a destination killed under Airbyte).
"""

import json
import os
import sys
import threading
from pathlib import Path

# PyAirbyte reads these at import: no registry or telemetry calls.
os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

import airbyte as ab  # noqa: E402


def make_cache(spec: dict):
    if spec["kind"] == "duckdb":
        return ab.DuckDBCache(db_path=spec["path"], schema_name=spec["schema"])
    from airbyte.caches import PostgresCache

    return PostgresCache(
        host=spec["host"], port=spec["port"], username=spec["user"], password="unused",
        database=spec["database"], schema_name=spec["schema"],
    )


def _sync(source, job: dict) -> int:
    try:
        source.set_config(job["config"])  # validated against the spec fetched before the fork
        cache = make_cache(job["cache"])
        result = source.read(cache=cache)
    except Exception as e:  # noqa: BLE001  (the test reads the exit code; the reason goes to stderr)
        print(f"[{os.getpid()}] sync failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        return 1
    print(f"[{os.getpid()}] sync done: {result.processed_records} records", file=sys.stderr)
    return 0


def _child(source, job: dict) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # PyAirbyte's progress display must not reach the fork server's protocol
    try:
        code = _sync(source, job)
    finally:
        sys.stderr.flush()
    os._exit(code)


def serve(config_path: str) -> None:
    source = ab.get_source(
        "source-commsmining",
        config=json.loads(Path(config_path).read_text()),
        local_executable=str(Path(sys.executable).parent / "source-commsmining"),
        streams=["stream_results"],
    )
    # Pay for `spec` and `discover` once, before any fork: each child inherits them.
    source.validate_config()
    source.get_configured_catalog()
    lock = threading.Lock()
    live = threading.Semaphore(0)

    def say(line: str) -> None:
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def reap() -> None:
        while True:
            live.acquire()
            pid, status = os.waitpid(-1, 0)
            say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")

    threading.Thread(target=reap, daemon=True).start()
    say("ready")
    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] != "sync":
            break
        job = json.loads(Path(words[1]).read_text())
        with lock:  # no fork while the reaper thread writes
            pid = os.fork()
            if pid == 0:
                _child(source, job)
            sys.stdout.write(f"started {pid}\n")
            sys.stdout.flush()
        live.release()


if __name__ == "__main__":
    serve(sys.argv[1])
