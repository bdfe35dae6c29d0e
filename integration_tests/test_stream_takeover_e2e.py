"""Where stream_results starts and resumes a stream, over real HTTP against the emulator, through the console script.

A stream has one position for all its readers. A first sync never takes a stream from another reader
unless start_position names that choice; a reset never moves a stream forward past comments it holds; a
selected table without a cursor never throws away the others' cursors; a refused start reset says what
to change. Each case below was measured losing comments (exit 0, no warning) before.
"""

from datetime import datetime, timezone

import pytest

from commsmining_emulator import Emulator
from commsmining_emulator.faults import Fault
from integration_tests.conftest import TRIAGE, configured_catalog, connector_config, run_connector

CATALOG = configured_catalog("stream_results")
WITH_LABELS = configured_catalog("stream_results")
WITH_LABELS["streams"].append(dict(WITH_LABELS["streams"][0], stream=dict(WITH_LABELS["streams"][0]["stream"], name="stream_result_labels"),
                                   primary_key=[["project"], ["dataset"], ["stream"], ["uid"], ["label_name"], ["occurrence"]]))
P, D, S = "acme", "collections", "triage"


def _error(run):
    [trace] = [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
    return trace


def _warnings(run):
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


def _check(cfg):
    run = run_connector("check", config=cfg)
    [status] = [m["connectionStatus"] for m in run.of_type("CONNECTION_STATUS")]
    return status, run


# ---------------------------------------------------------------- another reader: the robot read 320 of 400
def test_a_default_first_sync_leaves_a_stream_another_reader_advanced_where_it_was():
    with Emulator(seed=7, comments=400) as emu:
        taken = emu.consume(P, D, S, 320)  # the robot
        robot_next = emu.next_uid(P, D, S)
        cfg = connector_config(emu, max_results=32)
        status, check = _check(cfg)
        assert status["status"] == "SUCCEEDED"
        assert any("acme/collections/triage" in w and "may have been read" in w for w in _warnings(check))
        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode != 0 and first.uids() == []
        error = _error(first)
        assert error["failure_type"] == "config_error"
        created = emu.world.stream(P, D, S).to_json()["created_at"]
        next_created = emu.world.dataset(P, D).comment(320)["created_at"]
        for words in ("acme/collections/triage", created, next_created, "`current`", "`take_over_from_creation`",
                      "`take_over_from_date`", "replays those comments to every reader"):
            assert words in error["message"]
        state = emu.stream_state(P, D, S)
        assert state["position"] == 320 and state["resets"] == 0 and emu.next_uid(P, D, S) == robot_next
        # The old default, saved into the config by Airbyte's UI, is no consent either.
        again = run_connector("read", config=dict(cfg, start_position="stream_created"), catalog=CATALOG)
        assert again.returncode != 0 and emu.stream_state(P, D, S)["position"] == 320
        # `current`: start where it stands; the robot's comments are not replayed.
        current = run_connector("read", config=dict(cfg, start_position="current"), catalog=CATALOG)
        assert current.returncode == 0 and current.uids()[0] == robot_next and len(current.uids()) == 80
        assert emu.stream_state(P, D, S)["resets"] == 0 and len(taken) == 320


def test_take_over_from_creation_replays_the_stream_from_its_creation_by_name():
    with Emulator(seed=7, comments=400) as emu:
        taken = emu.consume(P, D, S, 320)
        run = run_connector("read", config=connector_config(emu, max_results=32, start_position="take_over_from_creation"),
                            catalog=CATALOG)
        assert run.returncode == 0 and set(run.uids()) >= set(taken) and len(run.uids()) == 400
        assert emu.stream_state(P, D, S)["resets"] == 1


def test_an_unread_stream_keeps_the_safe_first_sync_and_a_failed_one_is_refused_not_lost():
    with Emulator(seed=11, comments=300) as emu:
        cfg = connector_config(emu, max_results=16, max_retries=0)
        emu.inject(Fault(route="advance", kind="status", status=500, rate=0.1))  # fails after a batch was delivered
        failed = run_connector("read", config=cfg, catalog=CATALOG)
        emu.clear_faults()
        assert failed.returncode != 0 and failed.uids()
        assert emu.stream_state(P, D, S)["resets"] == 1  # the unread stream was reset to its creation first
        # Nothing committed: the re-run sees a stream read since its creation (by that failed sync): it refuses,
        # naming the choice that reads it again; nothing is moved.
        position = emu.stream_state(P, D, S)["position"]
        rerun = run_connector("read", config=cfg, catalog=CATALOG)
        assert rerun.returncode != 0 and "take_over_from_creation" in _error(rerun)["message"]
        assert emu.stream_state(P, D, S)["position"] == position
        taken_over = run_connector("read", config=dict(cfg, start_position="take_over_from_creation"), catalog=CATALOG)
        assert taken_over.returncode == 0
        assert set(emu.consumed_uids(P, D, S)) <= set(taken_over.uids())


# ---------------------------------------------------------------- the three forward resets
def test_a_stream_reset_by_hand_to_before_its_creation_is_never_reset_forward():
    """A backfill prepared before the first sync: 30 pending comments, the stream created at the 16th."""
    with Emulator(seed=7, comments=30) as emu:
        emu.create_stream(P, D, "backfill", at=15)
        emu.reset(P, D, "backfill", emu.world.dataset(P, D).comment(0)["created_at"])
        cfg = connector_config(emu, streams=[dict(TRIAGE, stream="backfill")], max_results=8)
        for position in ("from_creation_if_unread", "stream_created", "take_over_from_creation"):
            run = run_connector("read", config=dict(cfg, start_position=position), catalog=CATALOG)
            assert run.returncode != 0 and run.uids() == [] and _error(run)["failure_type"] == "config_error"
            assert emu.stream_state(P, D, "backfill")["position"] == 0
        current = run_connector("read", config=dict(cfg, start_position="current"), catalog=CATALOG)
        assert current.returncode == 0 and len(set(current.uids())) == 30


def test_a_stream_created_in_the_future_is_refused_at_check_and_read():
    with Emulator(seed=7, comments=30) as emu:
        emu.world.stream(P, D, S).created_ms = int(datetime(2099, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
        cfg = connector_config(emu, max_results=8)
        status, _ = _check(cfg)
        assert status["status"] == "FAILED" and "2099" in status["message"] and "in the future" in status["message"]
        for position in ("from_creation_if_unread", "take_over_from_creation"):
            run = run_connector("read", config=dict(cfg, start_position=position), catalog=CATALOG)
            assert run.returncode != 0 and "in the future" in _error(run)["message"]
        state = emu.stream_state(P, D, S)
        assert state["position"] == 0 and state["resets"] == 0


@pytest.mark.parametrize("position", ["take_over_from_date", "date"])
def test_a_start_date_in_the_future_is_refused_at_check_and_read(position):
    with Emulator(seed=7, comments=30) as emu:
        cfg = connector_config(emu, start_position=position, start_date_for_streams="2099-01-01T00:00:00Z")
        status, _ = _check(cfg)
        assert status["status"] == "FAILED" and "`start_date_for_streams`" in status["message"]
        run = run_connector("read", config=cfg, catalog=CATALOG)
        assert run.returncode != 0 and _error(run)["failure_type"] == "config_error"
        assert emu.stream_state(P, D, S)["position"] == 0 and emu.stream_state(P, D, S)["resets"] == 0


# ---------------------------------------------------------------- a table without a cursor, cursors out of step
def _committed_after(run, batches):
    """The state a destination committed after `batches` batches, and the uids delivered up to it."""
    states, uids, covered = [], [], []
    for m in run.messages:
        if m.get("type") == "RECORD" and m["record"]["stream"] == "stream_results":
            uids.append(m["record"]["data"]["uid"])
        elif m.get("type") == "STATE":
            states.append(m["state"])
            covered.append(list(uids))
    return [states[batches - 1]], set(covered[batches - 1])


@pytest.mark.parametrize("case", ["labels newly selected", "epochs out of step", "legacy stream_results state"])
def test_a_selected_table_without_a_cursor_never_throws_away_the_others_cursors(case):
    with Emulator(seed=7, comments=300) as emu:
        cfg = connector_config(emu, max_results=16, start_position="current")
        first = run_connector("read", config=cfg, catalog=CATALOG)
        assert first.returncode == 0 and len(first.uids()) == 300
        state, delivered = _committed_after(first, 3)  # the destination's commit stopped at batch 3 of 19
        cursor = state[0]["stream"]["stream_state"]["states"][0]["cursor"]
        if case == "legacy stream_results state":
            cursor.pop("batches"), cursor.pop("epoch")
        if case == "epochs out of step":
            later = dict(cursor, epoch="another-start", batches=1)
            labels = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_result_labels"},
                                                   "stream_state": {"states": [{"partition": TRIAGE, "cursor": later}]}}}
            state.append(labels)
        second = run_connector("read", config=cfg, catalog=WITH_LABELS, state=state)
        assert second.returncode == 0, second.stderr[-2000:]
        lost = set(emu.consumed_uids(P, D, S)) - delivered - set(second.uids())
        assert not lost, f"{len(lost)} consumed comments never delivered"
        logs = " ".join(m["log"]["message"] for m in second.of_type("LOG"))
        assert "no table has state" not in logs and "from its start" not in logs


# ---------------------------------------------------------------- a start reset refused with 400
def test_a_start_reset_refused_with_400_names_the_stream_the_reset_the_time_the_reason_and_the_setting():
    with Emulator(seed=7, comments=30) as emu:
        emu.inject(Fault(route="reset", kind="status", status=400, body="to_comment_created_at is out of range"))
        cfg = connector_config(emu, start_position="take_over_from_creation")
        run = run_connector("read", config=cfg, catalog=CATALOG)
        error = _error(run)
        created = emu.world.stream(P, D, S).to_json()["created_at"]
        assert error["failure_type"] == "config_error" and run.uids() == []
        for words in ("acme/collections/triage", f"the start reset (to its creation time {created}", "400",
                      "to_comment_created_at is out of range", "start_position"):
            assert words in error["message"]
        assert "HTTP Status Code: 400" not in error["message"]
        assert emu.stream_state(P, D, S)["position"] == 0
