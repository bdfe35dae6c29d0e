"""End-to-end helpers: an emulator on loopback and the connector's console script, run in-process or as a subprocess.

How to write a fast test here (`make test` must stay under 6 minutes on 2 cores):

- Run the connector with `run_connector(command, config, catalog, state)`: by default it calls the
  console script's own function (`source_commsmining.run.run(args)`) in this process, with stdout,
  stderr and the CDK's print buffer captured, so a run costs its work and not ~1.2 s of CDK imports.
  It is the same code path as the installed script (argument parsing, masking, TRACE on failure,
  the exit code as `Run.returncode`); only the interpreter around it is shared.
- Pass `process=True` (or use `run_and_kill`) only where the test is about the process itself:
  signals, kills, a closed pipe, what the interpreter prints at exit, the installed script's
  existence, the collector tuning (`run()` tunes gc only in a process of its own).
- Take `shared_emulator` (one per module) when the test only looks (check, discover, full-refresh
  streams), `emulator` (a fresh one per test: ~0.1 s to start and stop) when it reads
  stream_results, uploads, injects faults or counts requests.
- A heavy module (long chaos runs, process-death tests) runs in parallel with the others under
  pytest-xdist (`make test` runs `-n 4 --dist loadgroup`). A test that takes over ~10 s gets
  `@pytest.mark.runs_long(<seconds>)`, so that it starts first (root conftest.py). Tests that bind a fixed
  port or share an outside resource must run on one worker: mark them
  `@pytest.mark.xdist_group("<resource>")` (e.g. "port-18077", "pyairbyte").
"""

import io
import json
import os
import shutil
import signal
import traceback
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from commsmining_emulator import Emulator
from source_commsmining.config import as_migrated

BIN = Path(sys.executable).parent
CONNECTOR = str(BIN / "source-commsmining") if (BIN / "source-commsmining").exists() else shutil.which("source-commsmining")
TRIAGE = {"project": "acme", "dataset": "collections", "stream": "triage"}
RAW = {"project": "acme", "dataset": "collections", "stream": "raw"}
URGENT = {"project": "acme", "dataset": "collections", "stream": "urgent-only"}
CLAIMS = {"project": "globex", "dataset": "claims-ds", "stream": "claims"}


class LazyModule:
    """A module imported on its first attribute use, skipping the test when it is not installed.

    PyAirbyte costs ~5 s of CPU to import, and every pytest-xdist worker collects every test module:
    imported at collection, each of the four workers paid it; imported on use, only the worker that
    runs the PyAirbyte tests (one xdist_group, "pyairbyte") does.
    """

    def __init__(self, name: str, reason: str) -> None:
        self._name = name
        self._reason = reason

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith(("_", "pytest")):  # what collection probes every module-level name for
            raise AttributeError(attr)
        return getattr(pytest.importorskip(self._name, reason=self._reason), attr)


def connector_config(emu: Emulator, streams=(TRIAGE,), **extra: Any) -> Dict[str, Any]:
    cfg = {"api_endpoint": emu.url, "api_token": emu.token, "streams": list(streams), "retry_backoff_seconds": 0.05}
    cfg.update(extra)
    return cfg


def configured_catalog(*names: str) -> Dict[str, Any]:
    streams = []
    for name in names:
        incremental = name == "stream_results"
        streams.append(
            {
                "stream": {
                    "name": name,
                    "json_schema": {},
                    "supported_sync_modes": ["incremental"] if incremental else ["full_refresh"],
                    **({"source_defined_cursor": True, "default_cursor_field": ["created_at"]} if incremental else {}),
                },
                "sync_mode": "incremental" if incremental else "full_refresh",
                "destination_sync_mode": "append_dedup" if incremental else "overwrite",
                **({"cursor_field": ["created_at"], "primary_key": [["project"], ["dataset"], ["stream"], ["uid"]]} if incremental else {"primary_key": [["id"]]}),
            }
        )
    return {"streams": streams}


@dataclass
class Run:
    returncode: Optional[int]
    messages: List[Dict[str, Any]]
    stderr: str = ""
    raw: str = ""

    def of_type(self, kind: str) -> List[Dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def records(self) -> List[Dict[str, Any]]:
        return [m["record"] for m in self.of_type("RECORD")]

    def uids(self, stream: str = "stream_results") -> List[str]:
        key = "uid" if stream == "stream_results" else "id"
        return [r["data"][key] for r in self.records if r["stream"] == stream]

    @property
    def states(self) -> List[Dict[str, Any]]:
        return [m["state"] for m in self.of_type("STATE")]

    def last_state(self) -> Optional[List[Dict[str, Any]]]:
        states = self.states
        return [states[-1]] if states else None

    def uids_covered_by_last_state(self) -> List[str]:
        """Records printed before the last STATE: the ones a destination could have committed."""
        covered: List[str] = []
        pending: List[str] = []
        for m in self.messages:
            if m.get("type") == "RECORD" and m["record"]["stream"] == "stream_results":
                pending.append(m["record"]["data"]["uid"])
            elif m.get("type") == "STATE":
                covered.extend(pending)
                pending = []
        return covered


def _parse(text: str) -> List[Dict[str, Any]]:
    """Whole lines only: a line cut by a kill is not a message the platform would read."""
    messages = []
    for line in text.split("\n")[:-1] if not text.endswith("\n") else text.splitlines():
        if line.startswith("{"):
            try:
                messages.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return messages


def _write_files(tmp: Path, config=None, catalog=None, state=None) -> List[str]:
    args = []
    for flag, content in (("config", config), ("catalog", catalog), ("state", state)):
        if content is not None:
            path = tmp / f"{flag}.json"
            path.write_text(json.dumps(content))
            args += [f"--{flag}", str(path)]
    return args


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return env


def run_connector(
    command: str, config=None, catalog=None, state=None, timeout: float = 300, *,
    process: bool = False, env: Optional[Dict[str, str]] = None, extra_args: List[str] = (),
) -> Run:
    """One run of `source-commsmining <command>`: in this process (default) or, `process=True`, as a subprocess.

    `env` adds environment variables for the run; `extra_args` (e.g. ["--debug"]) follow the file arguments.
    """
    with tempfile.TemporaryDirectory() as tmp:
        args = [command] + _write_files(Path(tmp), config, catalog, state) + list(extra_args)
        if not process:
            return _run_in_process(args, timeout, env or {})
        proc = subprocess.run([CONNECTOR] + args, capture_output=True, text=True, timeout=timeout, env=dict(_env(), **(env or {})))
    return Run(proc.returncode, _parse(proc.stdout), proc.stderr, proc.stdout)


class _Stream(io.StringIO):
    """stdout or stderr of an in-process run.

    The CDK's PrintBuffer (airbyte_cdk.utils.print_buffer) steps aside when sys.stdout looks like
    pytest's capture; this stream does not, so the run writes through the PrintBuffer to
    sys.__stdout__, as the console script does in a process of its own.
    """


class TimedOut(BaseException):
    """An in-process run exceeded its timeout (a BaseException, so the run's `except Exception` cannot swallow it)."""


def _run_in_process(args: List[str], timeout: float, env: Dict[str, str]) -> Run:
    from source_commsmining.run import run

    out, err = _Stream(), _Stream()
    saved_streams = sys.stdout, sys.stderr, sys.__stdout__
    saved_env = {key: os.environ.get(key) for key in env}

    def on_alarm(signum, frame):
        raise TimedOut(f"source-commsmining {' '.join(args)} ran longer than {timeout} s")

    previous_alarm = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    returncode: Optional[int] = 0
    try:
        os.environ.update(env)
        sys.stdout, sys.stderr, sys.__stdout__ = out, err, out
        run(args)
    except SystemExit as exit_:
        returncode = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except TimedOut:
        raise
    except BaseException:  # what the interpreter would print before exiting 1
        err.write(traceback.format_exc())
        returncode = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alarm)
        sys.stdout, sys.stderr, sys.__stdout__ = saved_streams
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    raw = out.getvalue()
    return Run(returncode, _parse(raw), err.getvalue(), raw)


def run_and_kill(config, catalog, state, kill_after: float, timeout: float = 120) -> Run:
    """Starts a read and SIGKILLs it after `kill_after` seconds (or lets it finish first)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "stdout"
        args = [CONNECTOR, "read"] + _write_files(Path(tmp), config, catalog, state)
        with out_path.open("w") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, env=_env())
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=timeout)
        raw = out_path.read_text()
    return Run(proc.returncode, _parse(raw), "", raw)


@pytest.fixture
def emulator():
    with Emulator(seed=7, comments=300, scenario="default") as emu:
        yield emu


@pytest.fixture(scope="module")
def shared_emulator():
    """The `emulator` world, one per module (per xdist worker), for tests that only look at it.

    Such a test must leave it as it found it for the next: spec, check, discover, the full-refresh
    streams; no stream_results read, upload, fault, latency or request-log assertion.
    """
    with Emulator(seed=7, comments=300, scenario="default") as emu:
        yield emu


@pytest.fixture(scope="session")
def pyairbyte_source():
    """`configure(config, streams)`: the session's one PyAirbyte Source, given a test's config and streams.

    PyAirbyte runs the connector's `spec` (to validate a config) and `discover` once per Source and
    keeps both: one Source per test paid two connector processes (~5 s of CPU on 2 cores) each time.
    `set_config` and `select_streams` are PyAirbyte's own way to point a Source at another config.
    The catalog does not depend on the config (discover sends no request and lists every stream
    whatever `streams` holds), so the first discover serves every test. The tests using it share the
    "pyairbyte" xdist_group, so one worker pays for it once.
    """
    ab = pytest.importorskip("airbyte", reason="PyAirbyte is in the [demo] extra")
    source = ab.get_source("source-commsmining", local_executable=CONNECTOR)

    def configure(config: Dict[str, Any], streams: List[str]):
        # Validated against the spec PyAirbyte fetched once, before the connector could migrate a top-level
        # api_token: PyAirbyte is given the `credentials` shape (README, "Use it with PyAirbyte").
        source.set_config(as_migrated(config))
        source.select_streams(streams)
        return source

    return configure


@pytest.fixture
def proxied_emulator(tmp_path):
    """`start(mode="forward", **emulator_args)`: an emulator served over TLS behind a CONNECT proxy on loopback
    (integration_tests/connect_proxy.py), with the environment (HTTPS_PROXY, REQUESTS_CA_BUNDLE) that routes a
    connector process through both. Stopped at the test's end."""
    from contextlib import ExitStack

    from integration_tests.connect_proxy import ConnectProxy, proxied_tls_emulator

    with ExitStack() as stack:
        def start(mode: str = "forward", **emulator_args: Any):
            emu = stack.enter_context(Emulator(**{"seed": 7, "comments": 300, "scenario": "default", **emulator_args}))
            proxy = stack.enter_context(ConnectProxy(mode))
            directory = Path(tempfile.mkdtemp(dir=tmp_path))
            return proxied_tls_emulator(emu, proxy, directory, _env())

        yield start
