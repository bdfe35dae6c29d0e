"""Over real HTTP: a failed first sync is idempotent, a reset never moves a
stream forward past comments not delivered, and no advance is sent once the reader or the parent is gone."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commsmining_emulator import Emulator
from commsmining_emulator.faults import Fault
from integration_tests.conftest import CONNECTOR, TRIAGE, RAW, _env, _parse, _write_files, configured_catalog, connector_config, run_connector

CATALOG = configured_catalog("stream_results")


def _advances(emu):
    return [entry for entry in emu.request_log if entry[0] == "POST" and entry[1].split("?")[0].endswith("/advance")]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if _gone(pid):
            return time.monotonic() - start
        time.sleep(0.02)
    return float("inf")


# ---------------------------------------------------------------- 17.1: a failed first sync loses nothing
@pytest.mark.parametrize("start_position, loses", [("take_over_from_creation", False), ("current", True)])
def test_a_failed_first_sync_run_again_without_state_delivers_everything_consumed(start_position, loses):
    """PyAirbyte commits nothing of a failed sync, state included: the re-run has no state. Reset to the start
    position, it reads again what the failed sync consumed; from `current` (opt-in) those comments are lost.
    (The default refuses the re-run, moving nothing: test_stream_takeover_e2e.py.)"""
    with Emulator(seed=11, comments=300, scenario="default") as emu:
        cfg = connector_config(emu, max_results=16, max_retries=0, start_position=start_position)
        emu.inject(Fault(route="advance", kind="status", status=500, rate=0.1))  # fails after a batch was delivered
        failed = run_connector("read", config=cfg, catalog=CATALOG)
        emu.clear_faults()
        assert failed.returncode != 0 and failed.uids(), "the first sync must fail after delivering some comments"
        rerun = run_connector("read", config=cfg, catalog=CATALOG)  # no state: nothing was committed
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        consumed = set(emu.consumed_uids("acme", "collections", "triage"))
        missing = consumed - set(rerun.uids())
        if loses:
            assert missing and any("this sync fails" in m["log"]["message"] for m in rerun.of_type("LOG"))
        else:
            assert not missing and emu.stream_state("acme", "collections", "triage")["position"] == 300


# ---------------------------------------------------------------- 18.6: a watermark ahead never moves the stream
def test_a_refused_continuation_with_a_watermark_ahead_fails_and_never_moves_the_stream_forward():
    with Emulator(seed=5, comments=300, scenario="default") as emu:
        cfg = connector_config(emu, max_results=32, max_records_per_sync=64)
        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode == 0 and len(first.uids()) == 64
        position = emu.stream_state("acme", "collections", "triage")["position"]
        state = json.loads(json.dumps(first.last_state()))
        [entry] = state[0]["stream"]["stream_state"]["states"]
        # A continuation the API does not know (another stream's, edited by hand) and a watermark 200 comments ahead.
        ahead = emu.world.dataset("acme", "collections").comment(260)["created_at"]
        entry["cursor"] = {"continuation": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "created_at": ahead}
        second = run_connector("read", config=cfg, catalog=CATALOG, state=state)
        assert second.returncode != 0 and second.uids() == []
        [trace] = [m for m in second.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
        assert trace["trace"]["error"]["failure_type"] == "config_error"
        assert "after the stream's next pending comment" in trace["trace"]["error"]["message"]
        after = emu.stream_state("acme", "collections", "triage")
        assert after["position"] == position and after["resets"] == 1  # the first sync's start reset only
        # Clearing the state and taking the stream over (the documented way out) reads everything again from its creation.
        third = run_connector("read", config=dict({k: v for k, v in cfg.items() if k != "max_records_per_sync"},
                                                  start_position="take_over_from_creation"), catalog=CATALOG)
        assert third.returncode == 0 and set(third.uids()) >= set(emu.consumed_uids("acme", "collections", "triage"))


# ---------------------------------------------------------------- 17.2: no advance after the reader is gone
def test_a_source_whose_parent_is_killed_ends_at_once_and_advances_nothing_undelivered(tmp_path: Path):
    with Emulator(seed=3, comments=400, scenario="default") as emu:
        cfg = connector_config(emu, streams=[TRIAGE, RAW], max_results=8, parallel_streams=2)
        emu.inject(Fault(route="advance", kind="delay", seconds=1.0))  # every advance takes a second
        args = [CONNECTOR, "read"] + _write_files(tmp_path, cfg, CATALOG, None)
        out = tmp_path / "stdout"
        parent_code = (
            "import subprocess, sys\n"
            "out = open(sys.argv[1], 'w')\n"
            "child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)\n"
            "print(child.pid, flush=True)\n"
            "child.wait()\n"
        )
        parent = subprocess.Popen([sys.executable, "-c", parent_code, str(out)] + args, stdout=subprocess.PIPE, env=_env())
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 60
        while len(_advances(emu)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_advances(emu)) >= 3
        time.sleep(0.3)  # well inside the next slow advances
        parent.kill()
        parent.wait()
        took = _wait_gone(child, 2.0)
        assert took <= 2.0, "the orphaned source outlived its parent"
        seen = len(_advances(emu))
        time.sleep(2.5)  # advances in flight at the kill finish on the server; no new one may start
        assert len(_advances(emu)) - seen <= 2  # at most the one in flight per stream
        printed = {m["record"]["data"]["uid"] for m in _parse(out.read_text()) if m.get("type") == "RECORD"}
        for stream in ("triage", "raw"):
            consumed = set(emu.consumed_uids("acme", "collections", stream))
            assert consumed <= printed, f"{stream}: {len(consumed - printed)} consumed but never printed"
            assert len(consumed) < 400


def test_a_closed_stdout_during_a_slow_retried_advance_ends_the_process_and_sends_no_more_advances():
    with Emulator(seed=3, comments=200, scenario="default") as emu, __import__("tempfile").TemporaryDirectory() as tmp:
        cfg = connector_config(emu, max_results=8, max_retries=8, retry_backoff_seconds=1)
        args = [CONNECTOR, "read"] + _write_files(Path(tmp), cfg, CATALOG, None)
        emu.inject(Fault(route="advance", kind="status", status=503, retry_after=1))  # every advance: 503, wait 1 s
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env())
        for line in proc.stdout:
            if line.startswith(b'{"type":"STATE"'):
                break
        deadline = time.monotonic() + 30
        while not _advances(emu) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _advances(emu), "the first advance was never tried"
        proc.stdout.close()  # the reader goes away while the advance is being retried
        closed = len(_advances(emu))
        start = time.monotonic()
        proc.wait(timeout=30)
        took = time.monotonic() - start
        time.sleep(1.5)
        assert took < 1.5, f"the process lived {took:.1f} s after its stdout was closed"
        assert proc.returncode != 0
        assert len(_advances(emu)) - closed <= 1  # a retry already on the wire at the close, no later one
        assert emu.stream_state("acme", "collections", "triage")["position"] == 0  # every advance failed: none applied


# ---------------------------------------------------------------- 17.3: a confirmed state handed back after a lost commit
@pytest.mark.parametrize("backward_advance", ["accept", "refuse"])
def test_a_confirmed_state_handed_back_after_a_later_sync_was_not_committed_delivers_that_sync_again(backward_advance):
    """The destination lost sync 2's commit and hands sync 1's last (confirmed) state back: sync 3 needs no
    reset where the server honours the older token, and recovers with a safe reset where it refuses it."""
    with Emulator(seed=5, comments=200, scenario="default", backward_advance=backward_advance) as emu:
        cfg = connector_config(emu, max_results=16)
        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode == 0 and first.states[-1]["stream"]["stream_state"]["states"][0]["cursor"]["position_confirmed"]
        emu.upload("acme", "inbox", 40)
        second = run_connector("read", config=cfg, catalog=CATALOG, state=first.last_state())
        assert second.returncode == 0 and len(second.uids()) == 40
        resets = emu.stream_state("acme", "collections", "triage")["resets"]
        third = run_connector("read", config=cfg, catalog=CATALOG, state=first.last_state())
        assert third.returncode == 0, third.stderr[-2000:]
        assert set(second.uids()) <= set(third.uids()) and len(third.uids()) <= 40 + 16
        assert emu.stream_state("acme", "collections", "triage")["resets"] == resets + (backward_advance == "refuse")
