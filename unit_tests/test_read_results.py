"""stream_results: batches, checkpoints, advance ordering, resume and state handling."""

import logging

import pytest
import requests_mock
from airbyte_cdk.models import AirbyteStateBlob, FailureType, SyncMode, Type

from unit_tests.conftest import RESET_NEEDS as NEEDS
from unit_tests.conftest import (
    TOKEN,
    definition,
    BASE,
    batch,
    catalog,
    comment,
    config,
    results_state,
    run_read,
    stream_url,
)
import source_commsmining.messages as messages_module
from source_commsmining import SourceCommsmining


def _state_dict(state_message):
    blob = state_message.state.stream.stream_state
    return blob.__dict__ if isinstance(blob, AirbyteStateBlob) else blob


def test_pages_through_batches_and_advances_with_each_batch_continuation():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": batch([1, 2], "b1", True)}, {"json": batch([3], "b2", False)}])
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert [r.record.data["uid"][-1] for r in output.records] == ["1", "2", "3"]
    assert [h.json() for h in advance.request_history] == [{"sequence_id": "b1"}, {"sequence_id": "b2"}]
    results_calls = [h for h in m.request_history if h.path.endswith("/results")]
    assert all(h.qs["max_results"] == ["32"] for h in results_calls)
    final = _state_dict(output.state_messages[-1])
    assert len(final["states"][0]["cursor"].pop("epoch")) == 16  # drawn at the stream's first start (state.py)
    assert final["states"] == [
        {
            "partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
            # The sync ended at the end of the stream, right after its advance to b2: the last STATE says so.
            "cursor": {"continuation": "b2", "created_at": comment(3)["created_at"], "batches": 2, "position_confirmed": True},
        }
    ]
    assert all("position_confirmed" not in e["cursor"] for s in output.state_messages[:-1] for e in _state_dict(s)["states"])


def test_each_batch_is_followed_by_its_state_before_the_next_batch():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": batch([1, 2], "b1", True)}, {"json": batch([3], "b2", False)}])
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    kinds = [
        ("R" if msg.type == Type.RECORD else "S")
        for msg in output.records_and_state_messages
    ]
    assert "".join(kinds) == "RRSRSS"  # two batches, each with its state, then the closing state


def test_advance_is_sent_only_after_the_batch_and_its_state_were_yielded_and_flushed(monkeypatch):
    """Drives SourceCommsmining.read by hand: at each POST /advance, look at what was already consumed."""
    consumed = []
    flushed_at = []
    seen_at_advance = []

    def on_advance(request, context):
        seen_at_advance.append((list(consumed), len(flushed_at)))
        return {"status": "ok"}

    cfg, cat = config(), catalog("stream_results")
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": batch([1, 2], "b1", True)}, {"json": batch([3], "b2", False)}])
        m.post(stream_url(action="advance"), json=on_advance)
        source = SourceCommsmining(catalog=cat, config=cfg, state=None)
        monkeypatch.setattr(messages_module, "flush_stdout", lambda: flushed_at.append(len(consumed)))
        for message in source.read(logging.getLogger("test"), cfg, cat, None):
            if message.type in (Type.RECORD, Type.STATE):
                consumed.append("R" if message.type == Type.RECORD else "S")
    first, second = seen_at_advance
    assert first[0] == ["R", "R", "S"] and first[1] == 1
    assert second[0] == ["R", "R", "S", "R", "S"] and second[1] == 2


def test_an_empty_batch_of_filtered_comments_is_advanced_past_and_is_not_the_end():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(
            stream_url(),
            [
                {"json": batch([], "b1", True, num_filtered=32)},
                {"json": batch([40], "b2", False, num_filtered=3)},
            ],
        )
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(max_filtered=1024), catalog("stream_results"))
    assert [r.record.data["comment_id"] for r in output.records] == [f"{40:016x}"]
    assert [h.json()["sequence_id"] for h in advance.request_history] == ["b1", "b2"]
    assert m.request_history[0].qs["max_filtered"] == ["1024"]


def test_end_of_stream_reads_once_and_does_not_advance():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=batch([], "b0", False))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert output.records == [] and advance.call_count == 0
    assert len(output.state_messages) == 1  # a sync always checkpoints


def test_records_keep_the_whole_comment_and_promote_columns():
    extra = comment(5, x_future_field={"a": 1})
    body = {"status": "ok", "results": [{"comment": extra, "prediction": None, "continuation": "c5"}],
            "num_filtered": 0, "more_results": False, "continuation": "b"}
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=body)
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    data = output.records[0].record.data
    assert data["comment"]["x_future_field"] == {"a": 1}
    # The CDK serializer omits top-level nulls; destinations read a missing column as null.
    assert data.get("prediction") is None and data["labels"] == [] and data["stream_labels"] == []
    assert (data["project"], data["dataset"], data["stream"]) == ("acme", "collections", "triage")
    assert data["subject"] == "Invoice 5" and data["sender"] == "alice@acme.com" and data["continuation"] == "c5"


def test_labels_are_flattened_with_confidence_and_thresholds():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=batch([1], "b", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        data = run_read(config(), catalog("stream_results")).records[0].record.data
    assert data["stream_labels"] == ["Billing > Refund"]
    refund = data["labels"][0]
    assert refund["parent"] == "Billing" and refund["confidence"] == 0.93 and refund["meets_stream_threshold"]
    assert refund["thresholds"] == ["stream", "balanced"]
    assert data["general_fields"][0]["value"] == "636.00 GBP"


def test_each_cm_stream_is_its_own_partition_with_its_own_state():
    streams = [
        {"project": "acme", "dataset": "collections", "stream": "triage"},
        {"project": "acme", "dataset": "collections", "stream": "raw"},
    ]
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=batch([1], "t1", False))
        m.get(stream_url(stream="raw"), json=batch([2, 3], "r1", False, prediction=None))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.post(stream_url(stream="raw", action="advance"), json={"status": "ok"})
        output = run_read(config(streams=streams), catalog("stream_results"))
    by_stream = {}
    for r in output.records:
        by_stream.setdefault(r.record.data["stream"], []).append(r.record.data["uid"])
    assert {k: len(v) for k, v in by_stream.items()} == {"triage": 1, "raw": 2}
    states = {e["partition"]["stream"]: e["cursor"]["continuation"] for e in _state_dict(output.state_messages[-1])["states"]}
    assert states == {"triage": "t1", "raw": "r1"}


def test_an_unconfirmed_resume_advances_then_resets_to_the_watermark_then_advances_before_reading():
    """A state committed mid-sync (no position_confirmed): the continuation is tried first (a refusal is found
    before anything moves), /results is peeked at (the watermark is not after the next comment, so the reset
    cannot skip anything), then reset and advance put the stream at the continuation in every reading of the API."""
    state = results_state([
        {"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
         "cursor": {"continuation": "b7", "created_at": "2024-02-01T00:00:07.000000Z"}},
        {"partition": {"project": "old", "dataset": "gone", "stream": "x"}, "cursor": {"continuation": "zz", "created_at": None}},
    ])
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok", "sequence_id": "r"})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=batch([8], "b8", False))
        output = run_read(config(), catalog("stream_results"), state=state)
    calls = [(h.method, h.path.rsplit("/", 1)[-1]) for h in m.request_history]
    # The stream definition (for model_version) is read once, at the first batch with a prediction.
    assert [(method.upper(), path) for method, path in calls] == [
        ("POST", "advance"), ("GET", "results"), ("POST", "reset"), ("POST", "advance"), ("GET", "results"),
        ("GET", "triage"), ("POST", "advance")]
    assert m.request_history[1].qs["max_results"] == ["1"]  # the peek
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-02-01T00:00:07.000000Z"}
    assert [h.json() for h in advance.request_history[:2]] == [{"sequence_id": "b7"}] * 2
    # A CM stream no longer configured is dropped from the state, with one warning.
    final = _state_dict(output.state_messages[-1])["states"]
    assert [entry["partition"]["stream"] for entry in final] == ["triage"]
    [dropped] = [log.log.message for log in output.logs if "no longer configured" in log.log.message]
    assert "1 Communications Mining stream(s)" in dropped and "old/gone/x" in dropped


def test_resume_with_a_refused_reset_warns_and_only_advances():
    """A reset needs what reading needs (UiPath's reset page): the warning names those permissions
    and quotes the API's own reason, masked (a server may echo the token)."""
    state = results_state([{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                            "cursor": {"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}}])
    refusal = f"Forbidden: missing permission 'View labels' on project 'acme' (token {TOKEN})"
    with requests_mock.Mocker() as m:
        m.post(stream_url(action="reset"), status_code=403, json={"status": "error", "message": refusal})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b7", False))
        output = run_read(config(), catalog("stream_results"), state=state)
    assert not output.errors
    assert advance.request_history[0].json() == {"sequence_id": "b7"}
    [warning] = [log.log.message for log in output.logs if "refused the reset" in log.log.message]
    assert NEEDS in warning
    assert "Forbidden: missing permission 'View labels' on project 'acme'" in warning
    assert "Modify streams" not in warning and TOKEN not in warning


def test_rewind_can_be_turned_off():
    state = results_state([{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                            "cursor": {"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}}])
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b7", False))
        run_read(config(rewind_on_resume=False), catalog("stream_results"), state=state)
    assert reset.call_count == 0


def test_a_state_that_does_not_fit_is_refused_before_any_request():
    bad = results_state([{"partition": {"project": "acme"}, "cursor": {"continuation": "b7"}}])
    with requests_mock.Mocker() as m:
        output = run_read(config(), catalog("stream_results"), state=bad, expecting_exception=True)
        assert m.call_count == 0
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "not one this connector wrote" in error.message and "Clear the stream_results state" in error.message


def test_the_record_cap_stops_at_a_batch_boundary_with_a_clean_state():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": batch([1, 2], "b1", True)}, {"json": batch([3, 4], "b2", True)}, {"json": batch([5], "b3", False)}])
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(max_records_per_sync=3), catalog("stream_results"))
    assert len(output.records) == 4 and advance.call_count == 2
    assert _state_dict(output.state_messages[-1])["states"][0]["cursor"]["continuation"] == "b2"


def test_full_refresh_of_stream_results_is_refused():
    with requests_mock.Mocker() as m:
        output = run_read(config(), catalog("stream_results", sync_mode=SyncMode.full_refresh), expecting_exception=True)
        assert m.call_count == 0
    assert "incrementally" in output.errors[-1].trace.error.message


def test_sources_and_stream_results_in_one_sync():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": [{"id": "18ba5ce699f8da1f", "name": "inbox", "new_key": 1}]})
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("sources", "stream_results"))
    streams = sorted(r.record.stream for r in output.records)
    assert streams == ["sources", "stream_results"]
    source = next(r.record.data for r in output.records if r.record.stream == "sources")
    assert source["new_key"] == 1  # unknown keys kept


def test_sources_scoped_to_a_project():
    with requests_mock.Mocker() as m:
        scoped = m.get(f"{BASE}/v1/sources/acme", json={"status": "ok", "sources": [{"id": "1"}, {"id": "2"}]})
        output = run_read(config(project="acme", streams=[]), catalog("sources"))
    assert scoped.call_count == 1 and len(output.records) == 2


@pytest.mark.parametrize("configured, sent", [({}, "1024"), ({"max_filtered": 50}, "50")])
def test_max_filtered_is_sent_by_default_at_the_api_maximum(configured, sent):
    """Without it, filtered-out comments count towards max_results (about 9x the calls on a 1-in-10 filter)."""
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        run_read(config(**configured), catalog("stream_results"))
    assert [h.qs["max_filtered"] for h in m.request_history if h.path.endswith("/results")] == [[sent]]
