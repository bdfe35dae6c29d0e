"""The comments cursor never moves past the export's end: a record dated in the future is observed bounded, and delivered unchanged."""




def test_the_comments_cursor_observes_a_bounded_copy_of_a_record_dated_past_its_export(caplog):
    from datetime import datetime, timedelta, timezone

    from airbyte_cdk.sources.types import Record, StreamSlice

    from source_commsmining.comments_state import MAX_SKEW, CursorBound

    observed = []
    bound = CursorBound(observed.append)
    end = "2026-01-01T00:00:00.000000Z"
    in_slice = StreamSlice(partition={"source_id": "s1", "parent_slice": {}}, cursor_slice={"start_time": "2024-01-01T00:00:00.000000Z", "end_time": end})

    def record(stamp, uid="s1.c1"):
        return Record(data={"uid": uid, "timestamp": stamp, "project": "acme", "source": "mail"}, stream_name="comments", associated_slice=in_slice)

    ordinary, future, later, odd = record("2025-06-01T00:00:00Z"), record("2099-01-01T00:00:00.000000Z"), record("2098-01-01T00:00:00Z", "s1.c2"), record("garbage")
    with caplog.at_level("WARNING", logger="airbyte"):
        for each in (ordinary, future, later, odd):
            bound(each)
    assert observed[0] is ordinary and observed[3] is odd  # within the export, or not a time: the CDK decides as before
    assert [r.data["timestamp"] for r in observed[1:3]] == [end, end]
    assert future.data["timestamp"] == "2099-01-01T00:00:00.000000Z"  # the delivered record is never changed
    assert observed[1].associated_slice is in_slice and observed[1].data["uid"] == "s1.c1"
    warnings = [r.getMessage() for r in caplog.records if "2099" in r.getMessage() or "2098" in r.getMessage()]
    assert len(warnings) == 1 and "acme/mail" in warnings[0] and "s1" in warnings[0] and "2099-01-01T00:00:00.000000Z" in warnings[0]

    # No slice end (or one further away): never more than MAX_SKEW ahead of now.
    far = StreamSlice(partition={"source_id": "s2"}, cursor_slice={"end_time": "2199-01-01T00:00:00.000000Z"})
    bound(Record(data={"timestamp": "2150-01-01T00:00:00Z"}, stream_name="comments", associated_slice=far))
    stamp = datetime.fromisoformat(observed[-1].data["timestamp"].replace("Z", "+00:00"))
    assert stamp <= datetime.now(timezone.utc) + MAX_SKEW and stamp > datetime.now(timezone.utc) + MAX_SKEW - timedelta(minutes=1)
