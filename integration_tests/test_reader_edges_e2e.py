"""stream_results edge cases over real HTTP against the emulator."""

import pytest

from commsmining_emulator import Emulator, Fault
from integration_tests.conftest import TRIAGE, URGENT, configured_catalog, connector_config, run_connector

CATALOG = configured_catalog("stream_results")
NO_RESET = ["View sources", "Consume streams", "View labels"]


def _warnings(run):
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


def _error(run):
    traces = [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
    return traces[-1]["message"] if traces else ""


def _results_calls(emu):
    return [entry for entry in emu.request_log if entry[0] == "GET" and "/results" in entry[1]]


def _position(emu, cm):
    return emu.stream_state(cm["project"], cm["dataset"], cm["stream"])["position"]


# ---------------------------------------------------------------- 1. a refused advance at resume


@pytest.mark.parametrize("why", ["no reset permission", "rewind off"])
def test_a_refused_advance_to_an_older_state_warns_and_goes_on(why):
    with Emulator(seed=5, comments=200, scenario="default", backward_advance="refuse") as emu:
        extra = {"api_token": emu.add_token(permissions=NO_RESET)} if why == "no reset permission" else {"rewind_on_resume": False}
        cfg = connector_config(emu, max_results=16, **extra)
        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode == 0, first.stderr[-2000:]
        uploaded = emu.upload("acme", "inbox", 20)
        second = run_connector("read", config=cfg, catalog=CATALOG, state=[first.states[2]])
        assert second.returncode == 0, _error(second) or second.stderr[-2000:]
        assert any("refused to advance to the state's continuation" in w and "HTTP 400" in w for w in _warnings(second))
        assert second.uids() == uploaded  # went on from the stream's position
        assert [entry for entry in emu.stream_state("acme", "collections", "triage")["log"] if entry.get("outcome") == "refused"]


def test_a_400_on_a_normal_advance_fails_the_sync_naming_the_stream_and_the_status():
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        emu.inject(Fault(route="advance", kind="status", status=400, body="Invalid sequence_id", times=1))
        run = run_connector("read", config=connector_config(emu, max_results=16), catalog=CATALOG)
        assert run.returncode != 0
        message = _error(run)
        assert "acme/collections/triage" in message and "HTTP 400" in message and "Invalid sequence_id" in message
        assert len(run.uids()) == 16 and run.states  # the batch was delivered with its state, then not advanced
        assert _position(emu, TRIAGE) == 0


# ---------------------------------------------------------------- 3. the end of a stream


def test_a_missing_more_results_is_unknown_and_reading_goes_on_to_the_end():
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        emu.inject(Fault(route="results", kind="omit_more_results"))
        run = run_connector("read", config=connector_config(emu, max_results=16), catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        assert run.uids() == emu.consumed_uids("acme", "collections", "triage") and len(run.uids()) == 100
        assert _position(emu, TRIAGE) == 100


def test_a_stream_stuck_at_one_continuation_stops_with_a_warning():
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        emu.inject(Fault(route="results", kind="stall"))
        run = run_connector("read", config=connector_config(emu, max_results=16), catalog=CATALOG, timeout=60)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        continuation = emu.world.encode_seq(emu.world.stream("acme", "collections", "triage"), 0)
        assert any("stuck" in w and continuation in w for w in _warnings(run)), _warnings(run)
        assert len(_results_calls(emu)) <= 10 and run.uids() == []


def test_a_short_stall_is_read_through():
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        emu.inject(Fault(route="results", kind="stall", times=3))
        run = run_connector("read", config=connector_config(emu, max_results=16), catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        assert len(run.uids()) == 100 and not _warnings(run)


def test_everything_filtered_is_advanced_past_and_reading_goes_on():
    with Emulator(seed=5, comments=300, scenario="default") as emu:
        run = run_connector("read", config=connector_config(emu, streams=[URGENT], max_results=2), catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        assert run.uids() == emu.consumed_uids("acme", "collections", "urgent-only") and run.uids()
        assert _position(emu, URGENT) == 300 and len(_results_calls(emu)) > len(run.uids())  # many empty batches
