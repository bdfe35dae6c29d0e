"""What the console script guarantees about its output, whatever happens: run as Airbyte runs it.

The API token never reaches stdout or stderr (in any form, in any verb, with or without
`--debug`, whatever the server echoes back); SIGINT and SIGTERM end with the state flushed, a
TRACE, a non-zero exit and no file holding the token left behind; a state Airbyte would silently
ignore, or one of the wrong shape, is refused with a message (in-process but one case: those are not about the
process).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from commsmining_emulator import Emulator, Fault
from integration_tests.conftest import CONNECTOR, TRIAGE, _env, _parse, _write_files, configured_catalog, connector_config, run_connector
from source_commsmining.errors import secret_forms

pytestmark = pytest.mark.e2e

NON_ASCII_TOKEN = "tökén-secret-77"


def _run(tmp_path: Path, command: str, *flags: str, config=None, catalog=None, state=None, timeout: float = 120):
    args = [CONNECTOR, command, *flags] + _write_files(tmp_path, config, catalog, state)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())


def _leaks(token: str, *outputs: str) -> List[str]:
    return [form for form in secret_forms(token) for text in outputs if form in text]


@pytest.mark.parametrize(
    "token, debug, status",
    [("emulator-token", False, 401), ("emulator-token", True, 401), (NON_ASCII_TOKEN, False, 403), (NON_ASCII_TOKEN, True, 401)],
    ids=["ascii-401", "ascii-401-debug", "non-ascii-403", "non-ascii-401-debug"],
)
def test_a_token_the_server_echoes_is_masked_in_read(tmp_path, token, debug, status):
    """A 401/403 whose JSON message quotes the Authorization header, with `sources` and `stream_results` read."""
    with Emulator(seed=7, comments=50) as emu:
        emu.add_token(token)
        emu.inject(Fault(route="*", kind="status", status=status, body=f"bad token: Bearer {token}"))
        result = _run(
            tmp_path, "read", *(["--debug"] if debug else []),
            config=connector_config(emu, api_token=token, max_retries=0),
            catalog=configured_catalog("sources", "stream_results"),
        )
    messages = _parse(result.stdout)
    assert result.returncode != 0 and any(m["type"] == "TRACE" for m in messages), result.stdout[-2000:]
    assert "****" in result.stdout  # the echo reached the output, masked
    assert not _leaks(token, result.stdout, result.stderr)


@pytest.mark.parametrize("command", ["check", "discover"])
def test_a_non_ascii_token_is_masked_in_debug_logs_of_every_verb(tmp_path, command):
    with Emulator(seed=7, comments=50) as emu:
        emu.add_token(NON_ASCII_TOKEN)
        emu.inject(Fault(route="sources", kind="status", status=403, body=f"echo: Bearer {NON_ASCII_TOKEN}"))
        result = _run(tmp_path, command, "--debug", config=connector_config(emu, api_token=NON_ASCII_TOKEN, max_retries=0))
    if command == "check":  # discover sends no request
        assert "Bearer ****" in result.stdout  # the debug request log was printed, masked
    assert not _leaks(NON_ASCII_TOKEN, result.stdout, result.stderr)


# A successful --debug read with a non-ASCII (Latin-1) token, `sources` and `stream_results`, as a
# process: test_robustness.py::test_a_latin1_token_is_masked_in_the_debug_log_in_every_form.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_sync_ends_like_a_failure(tmp_path, signum):
    """Flushed state, a TRACE saying so, a non-zero exit, nothing advanced past the last STATE, no token on disk."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    with Emulator(seed=7, comments=600, latency_ms=50) as emu:
        cfg = connector_config(emu, max_results=8)
        args = [CONNECTOR, "read"] + _write_files(tmp_path, cfg, configured_catalog("stream_results"), None)
        out_path = tmp_path / "stdout"
        with out_path.open("w") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.PIPE, text=True, env=dict(_env(), TMPDIR=str(tmp)))
            deadline = time.monotonic() + 60
            while '"RECORD"' not in out_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # mid-sync: between batches or inside one
            proc.send_signal(signum)
            stderr = proc.communicate(timeout=60)[1]
        stream = emu.stream_state(*TRIAGE.values())
        consumed = emu.consumed_uids(*TRIAGE.values())
    messages = _parse(out_path.read_text())
    assert proc.returncode != 0
    assert "Traceback" not in stderr, stderr
    error = messages[-1]["trace"]["error"] if messages[-1]["type"] == "TRACE" else None
    assert error and "interrupted" in error["message"] and signal.Signals(signum).name in error["message"], messages[-1]
    # Nothing the server counts as consumed is missing from what was printed before the last STATE.
    covered, pending = [], []
    for m in messages:
        if m["type"] == "RECORD":
            pending.append(m["record"]["data"]["uid"])
        elif m["type"] == "STATE":
            covered, pending = covered + pending, []
    assert stream["position"] > 0 and set(consumed) <= set(covered)
    # No file left in the temporary directory holds the token (the CDK's config.json did).
    left = [path for path in tmp.rglob("*") if path.is_file() and cfg["api_token"] in path.read_text(errors="replace")]
    assert not left


@pytest.mark.parametrize(
    "state, words",
    [
        ({"stream_results": {"states": []}}, "legacy state shape"),
        ([{"type": "LEGACY", "data": {"stream_results": {}}}], "type LEGACY"),
        ([{"stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": []}}}], "no `type`"),
    ],
    ids=["dict", "LEGACY", "typeless"],
)
def test_a_state_airbyte_would_ignore_is_refused_with_what_to_do(emulator, state, words):
    """In-process (conftest.run_connector, the console script's own function): nothing here is about the process."""
    result = run_connector("read", config=connector_config(emulator), catalog=configured_catalog("stream_results"), state=state)
    messages = result.messages
    assert result.returncode != 0
    assert not any(m["type"] == "RECORD" for m in messages)
    error = next(m["trace"]["error"] for m in messages if m["type"] == "TRACE")
    assert error["failure_type"] == "config_error" and words in error["message"] and "Clear" in error["message"]
    assert emulator.stream_state(*TRIAGE.values())["position"] == 0


_SD = {"stream_descriptor": {"name": "stream_results"}}
_PARTITION = {"project": "acme", "dataset": "collections", "stream": "triage"}


@pytest.mark.parametrize(
    "state, where",
    [
        ([1, 2], "$[0]"),
        ("x", "at $:"),
        (5, "at $:"),
        ([{"type": "STREAM", "stream": {**_SD, "stream_state": [1]}}], "$[0].stream.stream_state"),
        ([{"type": "STREAM", "stream": {**_SD, "stream_state": "x"}}], "$[0].stream.stream_state"),
        ([{"type": "STREAM", "stream": [1]}], "$[0].stream"),
        ([{"type": "STREAM", "stream": {"stream_descriptor": "stream_results", "stream_state": {}}}], "$[0].stream.stream_descriptor"),
        ([{"type": "GLOBAL", "global": {"stream_states": {"stream_results": {}}}}], "$[0].global.stream_states"),
        ([{"type": 5, "stream": {}}], "$[0].type"),
        ([{"type": "STREAM", "stream": {**_SD, "stream_state": {"states": [[1]]}}}], "stream_state.states[0]"),
        ([{"type": "STREAM", "stream": {**_SD, "stream_state": {"states": [{"partition": _PARTITION, "cursor": "c"}]}}}],
         "stream_state.states[0].cursor"),
    ],
    ids=["list-of-numbers", "string", "number", "stream_state-list", "stream_state-string", "stream-list", "descriptor-string",
         "global-stream_states-object", "type-number", "states-entry-list", "cursor-string"],
)
def test_a_state_file_of_the_wrong_shape_is_a_config_error_saying_where_and_how_to_clear_it(tmp_path, emulator, state, where):
    # In-process but one shape: the message is built before any read; the process's own exit code is checked once.
    result = run_connector("read", connector_config(emulator), configured_catalog("sources", "stream_results"), state,
                           process=state == [1, 2])
    messages = result.messages
    errors = [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"].get("type") == "ERROR"]
    assert result.returncode != 0 and errors, result.raw[-2000:] + result.stderr[-2000:]
    message = errors[-1]["message"]
    assert errors[-1]["failure_type"] == "config_error", message
    assert "wrong shape" in message and where in message and "Clear" in message, message
    assert "TypeError" not in message and "instance_path" not in message, message
    assert not any(m["type"] == "RECORD" for m in messages)
    assert emulator.stream_state(*TRIAGE.values())["position"] == 0
