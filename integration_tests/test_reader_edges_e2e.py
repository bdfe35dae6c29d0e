"""stream_results edge cases over real HTTP against the emulator: a refused advance at resume,
the record cap across several streams, how the end of a stream is recognised, and resets."""

import pytest

from commsmining_emulator import Emulator, Fault
from integration_tests.conftest import RAW, TRIAGE, URGENT, configured_catalog, connector_config, run_connector
from unit_tests.conftest import RESET_NEEDS as NEEDS

CATALOG = configured_catalog("stream_results")
# A reset needs what reading needs, so a token that reads can reset: the emulator refuses it by fault
# injection, as the API does for a token without those permissions on the project (or another reason).
RESET_REFUSAL = "Forbidden: missing permission 'View labels' on project 'acme'"


def _refuse_the_next_reset(emu):
    emu.inject(Fault(route="reset", kind="status", status=403, body=RESET_REFUSAL, times=1))


def _warnings(run):
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


def _trace(run):
    traces = [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
    return traces[-1] if traces else {}


def _error(run):
    return _trace(run).get("message", "")


def _results_calls(emu):
    return [entry for entry in emu.request_log if entry[0] == "GET" and "/results" in entry[1]]


def _position(emu, cm):
    return emu.stream_state(cm["project"], cm["dataset"], cm["stream"])["position"]


# ---------------------------------------------------------------- 1. a refused advance at resume


def _refusing_server_after_a_failed_commit(emu, cfg):
    """Sync 1 reads everything; the destination commits only its third state (48 records); 20 comments arrive."""
    first = run_connector("read", config=cfg, catalog=CATALOG)
    assert first.returncode == 0, first.stderr[-2000:]
    uploaded = emu.upload("acme", "inbox", 20)
    return first, uploaded


@pytest.mark.parametrize("why", ["reset refused", "rewind off"])
def test_a_stream_that_cannot_be_moved_back_to_the_committed_state_fails_and_skips_nothing(why):
    with Emulator(seed=5, comments=200, scenario="default", backward_advance="refuse") as emu:
        extra = {} if why == "reset refused" else {"rewind_on_resume": False}
        cfg = connector_config(emu, max_results=16, **extra)
        first, uploaded = _refusing_server_after_a_failed_commit(emu, cfg)
        position = _position(emu, TRIAGE)
        if why == "reset refused":
            _refuse_the_next_reset(emu)

        second = run_connector("read", config=cfg, catalog=CATALOG, state=[first.states[2]])
        assert second.returncode != 0
        error = _trace(second)
        assert error["failure_type"] == "config_error"
        assert "acme/collections/triage" in error["message"] and "HTTP 400" in error["message"]
        assert NEEDS in error["message"]
        assert "Modify streams" not in error["message"] and "skip_uncommitted_on_refused_resume" in error["message"]
        if why == "reset refused":
            assert RESET_REFUSAL in error["message"]  # the API's own reason, quoted
        assert second.records == [] and _position(emu, TRIAGE) == position  # nothing read, nothing consumed

        # The way back the message gives: a reset the API accepts, with rewind on.
        recovered = run_connector("read", config=connector_config(emu, max_results=16), catalog=CATALOG,
                                  state=[first.states[2]])
        assert recovered.returncode == 0, _error(recovered) or recovered.stderr[-2000:]
        assert set(first.uids()[48:]) | set(uploaded) <= set(recovered.uids())


@pytest.mark.parametrize("why", ["reset refused", "rewind off"])
def test_skip_uncommitted_on_refused_resume_goes_on_from_the_current_position_with_a_warning(why):
    with Emulator(seed=5, comments=200, scenario="default", backward_advance="refuse") as emu:
        extra = {} if why == "reset refused" else {"rewind_on_resume": False}
        cfg = connector_config(emu, max_results=16, skip_uncommitted_on_refused_resume=True, **extra)
        first, uploaded = _refusing_server_after_a_failed_commit(emu, cfg)
        if why == "reset refused":
            _refuse_the_next_reset(emu)
        second = run_connector("read", config=cfg, catalog=CATALOG, state=[first.states[2]])
        assert second.returncode == 0, _error(second) or second.stderr[-2000:]
        assert any("refused to advance to the state's continuation" in w and "HTTP 400" in w
                   and "are not delivered" in w for w in _warnings(second))
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


# ---------------------------------------------------------------- 2. the record cap and several streams


@pytest.mark.parametrize("parallel", [1, 2])
def test_the_cap_gives_every_stream_progress_in_every_sync(parallel):
    streams = [TRIAGE, RAW, URGENT]
    with Emulator(seed=5, comments=1000, scenario="default") as emu:
        cfg = connector_config(emu, streams=streams, max_results=16, max_records_per_sync=60, parallel_streams=parallel)
        state = None
        delivered = {cm["stream"]: [] for cm in streams}
        for sync in range(3):
            before = {cm["stream"]: _position(emu, cm) for cm in streams}
            run = run_connector("read", config=cfg, catalog=CATALOG, state=state)
            assert run.returncode == 0, _error(run) or run.stderr[-2000:]
            state = run.last_state()
            by_stream = {cm["stream"]: 0 for cm in streams}
            for record in run.records:
                by_stream[record["data"]["stream"]] += 1
                delivered[record["data"]["stream"]].append(record["data"]["uid"])
            moved = {cm["stream"]: _position(emu, cm) > before[cm["stream"]] for cm in streams}
            assert all(moved.values()), f"sync {sync}: {by_stream}"
            # Each stream's fair share is 20: a batch of 16, then one of 4 (the last call asks for what is left).
            assert by_stream == {"triage": 20, "raw": 20, "urgent-only": 20}, by_stream
        for cm in streams:  # nothing consumed was left undelivered, nothing delivered twice
            assert delivered[cm["stream"]] == emu.consumed_uids(cm["project"], cm["dataset"], cm["stream"])


@pytest.mark.parametrize("parallel", [1, 2])
def test_what_a_stream_leaves_of_its_share_goes_to_the_others(parallel):
    with Emulator(seed=5, comments=1000, scenario="default") as emu:
        emu.create_stream("acme", "collections", "fresh", at="end")
        uploaded = emu.upload("acme", "inbox", 5)  # all that `fresh` has; `triage` has a backlog of 1005
        fresh = {"project": "acme", "dataset": "collections", "stream": "fresh"}
        cfg = connector_config(emu, streams=[TRIAGE, fresh], max_results=16, max_records_per_sync=60, parallel_streams=parallel)
        run = run_connector("read", config=cfg, catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        by_stream = {"triage": 0, "fresh": 0}
        for record in run.records:
            by_stream[record["data"]["stream"]] += 1
        # Shares of 30: triage reads 16 + 14, fresh ends at 5; the 25 left go to triage (16 + 9): 60 in all.
        assert by_stream == {"triage": 55, "fresh": 5}
        assert [u for u in run.uids() if u in uploaded] == uploaded
        assert any("stopping at the cap of 60" in m["log"]["message"] and "triage" in m["log"]["message"] for m in run.of_type("LOG"))


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
        # A stalled stream shows nothing pending although comments were uploaded: the default would refuse it.
        cfg = connector_config(emu, max_results=16, start_position="take_over_from_creation")
        run = run_connector("read", config=cfg, catalog=CATALOG, timeout=60)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        continuation = emu.world.encode_seq(emu.world.stream("acme", "collections", "triage"), 0)
        assert any("stuck" in w and continuation in w for w in _warnings(run)), _warnings(run)
        assert len(_results_calls(emu)) <= 10 and run.uids() == []


def test_a_short_stall_is_read_through():
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        emu.inject(Fault(route="results", kind="stall", times=3))
        cfg = connector_config(emu, max_results=16, start_position="take_over_from_creation")
        run = run_connector("read", config=cfg, catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        assert len(run.uids()) == 100 and not _warnings(run)


def test_everything_filtered_is_advanced_past_and_reading_goes_on():
    with Emulator(seed=5, comments=300, scenario="default") as emu:
        # max_filtered 1 (the default, 1024, skips most filtered comments within one call): many empty batches.
        run = run_connector("read", config=connector_config(emu, streams=[URGENT], max_results=2, max_filtered=1), catalog=CATALOG)
        assert run.returncode == 0, _error(run) or run.stderr[-2000:]
        assert run.uids() == emu.consumed_uids("acme", "collections", "urgent-only") and run.uids()
        assert _position(emu, URGENT) == 300 and len(_results_calls(emu)) > len(run.uids())  # many empty batches


# ---------------------------------------------------------------- 5. a reset only where it is needed


def test_a_stream_is_reset_at_its_first_sync_and_after_an_unconfirmed_state_never_after_a_confirmed_one():
    """UiPath advises against routine resets, and a reset makes any other consumer re-read: the first sync resets
    to the start position, a sync from a state written at the clean end of a sync (position_confirmed) does not,
    and a sync from a state committed mid-sync does (the server may be ahead of it)."""
    with Emulator(seed=5, comments=100, scenario="default") as emu:
        cfg = connector_config(emu, streams=[TRIAGE, RAW], max_results=32)

        def resets():
            return [emu.stream_state("acme", "collections", s)["resets"] for s in ("triage", "raw")]

        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode == 0 and resets() == [1, 1] and len(first.uids()) == 200
        assert all(e["cursor"].get("position_confirmed") is True for e in first.states[-1]["stream"]["stream_state"]["states"])
        assert not any(e["cursor"].get("position_confirmed") for s in first.states[:-1] for e in s["stream"]["stream_state"]["states"])
        second = run_connector("read", config=cfg, catalog=CATALOG, state=first.last_state())
        assert second.returncode == 0 and resets() == [1, 1] and second.uids() == []
        third = run_connector("read", config={**cfg, "rewind_on_resume": False}, catalog=CATALOG, state=second.last_state())
        assert third.returncode == 0 and resets() == [1, 1] and third.uids() == []
        # A state committed after the first batch of one stream (no position_confirmed): that stream is reset to its
        # watermark and advanced to its continuation (its last 68 re-read); the other, without a cursor and read
        # since its creation, is refused by the default (nothing moved) and reset to its creation when taken over
        # by name (all 100 re-read).
        middle = [first.states[0]]
        assert len(middle[0]["stream"]["stream_state"]["states"]) == 1
        [entry] = middle[0]["stream"]["stream_state"]["states"]
        resumed = entry["partition"]["stream"]
        other = "raw" if resumed == "triage" else "triage"
        refused = run_connector("read", config=cfg, catalog=CATALOG, state=middle)
        assert refused.returncode != 0 and f"acme/collections/{other}" in _error(refused)
        assert emu.stream_state("acme", "collections", other)["resets"] == 1
        fourth = run_connector("read", config={**cfg, "start_position": "take_over_from_creation"}, catalog=CATALOG, state=middle)
        # The resumed stream was reset in the refused run too (streams are placed independently): 3 resets, the other 2.
        counts = {s: emu.stream_state("acme", "collections", s)["resets"] for s in ("triage", "raw")}
        assert fourth.returncode == 0 and counts == {resumed: 3, other: 2} and len(fourth.uids()) == 68 + 100
