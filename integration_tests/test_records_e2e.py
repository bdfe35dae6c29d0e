"""Keys, promoted columns, untimed created_at and the comments lookback, end to end against the emulator.

The console script runs as a subprocess against the emulator over loopback HTTP. Each test says
what it would catch: a second sync blocked by a garbage watermark, a late upload or an updated
comment an incremental `comments` sync never exports, two streams' rows collapsed by a key without
the stream, promoted columns empty on every record.
"""

from collections import Counter
from typing import Any, Dict, List

import pytest

from commsmining_emulator import Emulator
from integration_tests.conftest import TRIAGE, URGENT, configured_catalog, connector_config, run_connector
from integration_tests.test_context_streams_e2e import comments_catalog

PROMOTED = ("comment_id", "source_id", "thread_id", "created_at", "timestamp", "last_modified", "subject", "sender",
            "message_count", "model_version", "labels", "stream_labels", "general_fields")


@pytest.fixture
def emu():
    with Emulator(seed=7, comments=400, scenario="default") as emu:
        yield emu


def data(run, stream: str) -> List[Dict[str, Any]]:
    return [r["data"] for r in run.records if r["stream"] == stream]


def errors(run) -> List[Dict[str, Any]]:
    return [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


def warnings(run) -> List[str]:
    return [m["log"]["message"] for m in run.of_type("LOG") if m["log"]["level"] == "WARN"]


def test_two_overlapping_streams_are_keyed_apart_and_every_promoted_column_is_filled(emu):
    run = run_connector("read", connector_config(emu, streams=(TRIAGE, URGENT)), configured_catalog("stream_results"))
    assert run.returncode == 0 and not errors(run)
    records = data(run, "stream_results")
    per_stream = Counter(r["stream"] for r in records)
    keys = {(r["project"], r["dataset"], r["stream"], r["uid"]) for r in records}
    uids = {r["uid"] for r in records}
    assert per_stream["triage"] == len(emu.consumed_uids("acme", "collections", "triage"))
    assert per_stream["urgent-only"] == len(emu.consumed_uids("acme", "collections", "urgent-only")) > 0
    # A re-upload is a new queue entry: the same stream delivers the comment again, the same key (one row after dedup).
    # Every urgent comment is in triage too: under a key of uid alone the two streams' rows would collapse.
    distinct_per_stream = {s: len(set(emu.consumed_uids("acme", "collections", s))) for s in ("triage", "urgent-only")}
    assert len(keys) == sum(distinct_per_stream.values())
    assert len(uids) == distinct_per_stream["triage"] < len(keys)
    versions = {name: emu.world.stream("acme", "collections", name).model["version"] for name in ("triage", "urgent-only")}
    for record in records:
        assert record["model_version"] == versions[record["stream"]] is not None
    filled = {column: sum(1 for r in records if r.get(column) not in (None, [])) for column in PROMOTED}
    empty = [column for column, n in filled.items() if n == 0]
    assert not empty, f"promoted columns null on every record: {empty}"
    confidences = [f["confidence"] for r in records for f in r["general_fields"]]
    assert confidences and all(isinstance(c, (int, float)) or c is None for c in confidences)
    assert any(isinstance(c, (int, float)) for c in confidences)
    assert not any("shape the API does not use" in w for w in warnings(run))


def test_a_garbage_created_at_alone_in_the_first_batch_does_not_block_the_stream(emu):
    """Were it the watermark, the next sync's reset to it would get a 400, and the stream would be stuck for good."""
    dataset = emu.world.dataset("acme", "collections")
    generated = dataset.comment
    dataset.comment = lambda i: {**generated(i), "created_at": "garbage"} if i == 0 else generated(i)
    # A first comment whose created_at is not a time cannot be compared with a start time: start where the stream stands.
    config = connector_config(emu, max_results=1, max_records_per_sync=1, start_position="current")
    first = run_connector("read", config, configured_catalog("stream_results"))
    assert first.returncode == 0 and [r["created_at"] for r in data(first, "stream_results")] == ["garbage"]
    assert any("garbage" in w and "not a time" in w for w in warnings(first))
    cursor = first.states[-1]["stream"]["stream_state"]["states"][0]["cursor"]
    assert cursor["created_at"] is None

    second = run_connector("read", connector_config(emu), configured_catalog("stream_results"), state=first.last_state())
    assert second.returncode == 0 and not errors(second)
    delivered = [r["uid"] for r in data(first, "stream_results") + data(second, "stream_results")]
    assert delivered == emu.consumed_uids("acme", "collections", "triage") and len(delivered) > 300
    assert second.states[-1]["stream"]["stream_state"]["states"][0]["cursor"]["created_at"] not in (None, "garbage")


def _comments_sync(emu, state=None, **extra):
    config = connector_config(emu, streams=(), project="acme", **extra)
    run = run_connector("read", config, comments_catalog(), state=state)
    assert run.returncode == 0 and not errors(run)
    return run


def test_the_next_incremental_comments_sync_picks_up_a_late_upload_and_an_updated_comment(emu):
    first = _comments_sync(emu)
    inbox = [c for c in data(first, "comments") if c["source"] == "inbox"]
    newest = max(inbox, key=lambda c: c["timestamp"])
    late = emu.upload("acme", "inbox", 1, days_back=3)[0]
    edited = emu.reupload("acme", "inbox", newest["uid"], text="edited after the first sync")

    second = _comments_sync(emu, first.last_state())
    by_uid = {c["uid"]: c for c in data(second, "comments")}
    assert late in by_uid  # sent 3 days before it was uploaded: before the cursor, inside the 7-day lookback
    assert by_uid[late]["timestamp"] < newest["timestamp"]
    assert by_uid[newest["uid"]]["last_modified"] == edited["last_modified"] != newest["last_modified"]
    assert "edited after the first sync" in str(by_uid[newest["uid"]]["messages"])


def test_without_the_lookback_a_late_upload_is_missed(emu):
    """What the lookback is for: a plain cursor on `timestamp` never exports a comment uploaded late."""
    first = _comments_sync(emu, comments_lookback_days=0)
    late = emu.upload("acme", "inbox", 1, days_back=3)[0]
    second = _comments_sync(emu, first.last_state(), comments_lookback_days=0)
    assert late not in {c["uid"] for c in data(second, "comments")}
