"""`comments` read in time windows, several at a time, against the emulator over HTTP: nothing lost or
read twice at a window's edge, and a sync that fails or is killed part-way is made whole by the next."""

import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Set
from urllib.parse import parse_qs, urlsplit

import pytest

from commsmining_emulator import Emulator, Fault
from integration_tests.conftest import CONNECTOR, _env, _parse, _write_files, connector_config, run_connector
from integration_tests.test_context_streams_e2e import comments_catalog

START = "2024-01-01T00:00:00Z"
# With 30-day windows from START, a window ends at 2024-01-30T23:59:59.999Z and the next starts at EDGE.
WINDOW_DAYS = 30
EDGE = "2024-01-31T00:00:00.000Z"


def comments_config(emu: Emulator, **extra: Any) -> Dict[str, Any]:
    cfg = connector_config(emu, project="acme", start_date=START, comments_window_days=WINDOW_DAYS, comments_lookback_days=0)
    cfg.update(extra)
    return cfg


def comment_uids(run) -> List[str]:
    return [r["data"]["uid"] for r in run.records if r["stream"] == "comments"]


def exports(emu: Emulator) -> List[Dict[str, List[str]]]:
    return [parse_qs(urlsplit(path).query) for method, path, status in emu.request_log if "/_private/sources/" in path]


def one_window_uids(emu: Emulator) -> Set[str]:
    run = run_connector("read", comments_config(emu, comments_window_days=36500), comments_catalog())
    assert run.returncode == 0, run.stderr
    return set(comment_uids(run))


def test_comments_dated_exactly_on_a_window_edge_are_read_once():
    with Emulator(seed=7, comments=200) as emu:
        # On the edge, a millisecond before and after it, at the next edge, and in the middle of a window.
        edge_uids = {
            when: emu.upload("acme", "inbox", 2, timestamp=when)
            for when in (EDGE, "2024-01-30T23:59:59.999Z", "2024-01-31T00:00:00.001Z", "2024-03-01T00:00:00.000Z", "2024-02-15T12:00:00Z")
        }
        expected = one_window_uids(emu)
        before = len(emu.request_log)
        run = run_connector("read", comments_config(emu), comments_catalog())
        assert run.returncode == 0, run.stderr
        uids = comment_uids(run)
        assert len(uids) == len(set(uids)) and set(uids) == expected
        for when, placed in edge_uids.items():
            assert all(uids.count(uid) == 1 for uid in placed), when
        # The windows of a source meet at the edge without a gap: [..., EDGE - 1 ms] and [EDGE, ...], both bounds inclusive.
        queries = exports(emu)[-(len(emu.request_log) - before):]
        inbox_windows = {(q["from_timestamp"][0], q["to_timestamp"][0]) for q in queries if "from_timestamp" in q}
        assert ("2024-01-01T00:00:00.000000Z", "2024-01-30T23:59:59.999000Z") in inbox_windows
        assert any(start == "2024-01-31T00:00:00.000000Z" for start, _ in inbox_windows)


def test_comments_windows_of_one_source_are_read_in_parallel_with_one_cursor_per_source():
    with Emulator(seed=7, comments=200, latency_ms=40) as emu:
        for day in range(2, 300, 3):  # one comment every 3 days over ten windows
            emu.upload("acme", "inbox", 1, timestamp=_day(day))
        run = run_connector("read", comments_config(emu), comments_catalog())
        assert run.returncode == 0, run.stderr
        uids = comment_uids(run)
        assert len(uids) == len(set(uids))
        # Records of later windows come before those of earlier ones: the windows overlap in time.
        inbox = [r["data"]["timestamp"] for r in run.records if r["stream"] == "comments" and r["data"]["source"] == "inbox"]
        assert inbox != sorted(inbox)
        states = run.last_state()[0]["stream"]["stream_state"]["states"]
        assert len(states) == 2  # acme's two sources, one cursor each, whatever the number of windows
        assert max(inbox) in {entry["cursor"]["timestamp"] for entry in states}


def _day(day: int) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=day, hours=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_comments_failed_window_leaves_the_state_before_it_and_the_next_sync_delivers_everything():
    with Emulator(seed=7, comments=200) as emu:
        for day in range(2, 300, 5):
            emu.upload("acme", "inbox", 2, timestamp=_day(day))
        expected = one_window_uids(emu)
        # One export call fails for good (a 404 is not retried): one window of one source is not read.
        emu.inject(Fault(route="comments", status=404, times=1))
        failed = run_connector("read", comments_config(emu), comments_catalog())
        assert failed.returncode != 0
        first = comment_uids(failed)
        assert set(first) < expected
        state = failed.last_state()
        resumed = run_connector("read", comments_config(emu), comments_catalog(), state=state)
        assert resumed.returncode == 0, resumed.stderr
        assert set(first) | set(comment_uids(resumed)) == expected


@pytest.mark.runs_long(12)
def test_comments_sync_killed_mid_history_resumes_from_its_last_state_and_loses_nothing():
    with Emulator(seed=7, comments=200, latency_ms=30) as emu:
        for day in range(2, 600, 4):
            emu.upload("acme", "inbox", 3, timestamp=_day(day))
        expected = one_window_uids(emu)
        with tempfile.TemporaryDirectory() as tmp:
            args = [CONNECTOR, "read"] + _write_files(Path(tmp), comments_config(emu), comments_catalog())
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(), text=True)
            lines = []
            for line in proc.stdout:  # killed once the first comments state is out
                lines.append(line)
                if '"STATE"' in line and '"comments"' in line:
                    proc.send_signal(signal.SIGKILL)
                    break
            proc.wait(timeout=60)
        killed = _parse("".join(lines))
        assert proc.returncode == -signal.SIGKILL
        delivered = [m["record"]["data"]["uid"] for m in killed if m.get("type") == "RECORD"]
        state = [[m["state"] for m in killed if m.get("type") == "STATE"][-1]]
        assert set(delivered) < expected
        resumed = run_connector("read", comments_config(emu), comments_catalog(), state=state)
        assert resumed.returncode == 0, resumed.stderr
        # What a destination committed (the records before the state) plus the next sync: every comment.
        committed = []
        for m in killed:
            if m.get("type") == "STATE":
                break
            if m.get("type") == "RECORD":
                committed.append(m["record"]["data"]["uid"])
        assert set(committed) | set(comment_uids(resumed)) == expected



def test_comments_source_new_since_the_last_sync_is_exported_from_the_start_not_from_the_other_sources_cursor():
    with Emulator(seed=7, comments=200) as emu:
        first = run_connector("read", comments_config(emu), comments_catalog())
        assert first.returncode == 0, first.stderr
        everything = set(comment_uids(first))
        state = first.last_state()
        blob = state[0]["stream"]["stream_state"]
        assert blob.get("state")  # the CDK's global cursor: the latest comment of every source
        # As if acme/support-mailbox had been created since: its entry is not in the state.
        support = {r["data"]["uid"] for r in first.records if r["data"]["source"] == "support-mailbox"}
        kept = [e for e in blob["states"] if not any(uid.startswith(e["partition"]["source_id"]) for uid in support)]
        assert len(kept) == len(blob["states"]) - 1
        blob["states"] = kept
        second = run_connector("read", comments_config(emu), comments_catalog(), state=state)
        assert second.returncode == 0, second.stderr
        assert support <= set(comment_uids(second)) <= everything
