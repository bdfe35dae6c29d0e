"""The flat tables (stream_result_labels, stream_result_fields): rows, keys, emission order, per-table state and resume."""

import json
import logging
from collections import Counter
from datetime import datetime, timezone

import pytest
import requests_mock
from airbyte_cdk.models import AirbyteStateBlob, FailureType, Type
from airbyte_cdk.test.state_builder import StateBuilder

import source_commsmining.messages as messages_module
from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream, Uploaded
from source_commsmining.flat_tables import FIELDS, LABELS, RESULTS, flat_rows
from source_commsmining.position_plan import Advance, GetDefinition, Head, Peek, Reset, Settings, Uploads, decide
from source_commsmining.reading_events import Log
from source_commsmining.state import ResultsState
from unit_tests.conftest import batch, catalog, comment, config, definition, run_read, stream_url

LABEL_KEY = ["project", "dataset", "stream", "uid", "taxonomy", "label", "occurrence"]
FIELD_KEY = ["project", "dataset", "stream", "uid", "taxonomy", "label_key", "occurrence", "field", "field_occurrence"]
TRIAGE = CmStream("acme", "collections", "triage")


def _label(name, value, thresholds, fields, extraction=0.8):
    return {
        "name": name,
        "occurrence_confidence": {"value": value, "thresholds": thresholds},
        "extraction_confidence": {"value": extraction, "thresholds": []},
        "fields": [{"name": n, "value": {"formatted": v}, "text_spans": []} for n, v in fields],
    }


# What real data does that would break a naive key: one label twice (each occurrence with its own
# amount), one field name twice in one occurrence, the same label name in two taxonomies.
RICH = {
    "taxonomies": [
        {
            "name": "default",
            "labels": [
                _label("Billing > Refund", 0.93, ["stream", "balanced"], [("Amount", "10.00")]),
                _label("Billing > Refund", 0.71, ["balanced"], [("Amount", "20.00"), ("Amount", "25.00")], extraction=0.6),
                _label("Urgent", 0.4, [], []),
            ],
            "general_fields": [
                {"name": "monetary-quantity", "value": {"formatted": "636.00 GBP"}, "confidence": 0.9, "text_spans": []},
                {"name": "monetary-quantity", "value": None, "confidence": None, "text_spans": []},
            ],
        },
        {"name": "other", "labels": [_label("Urgent", 0.95, ["stream"], [])], "general_fields": []},
    ],
    "scores": [{"name": "sentiment", "value": 0.2}],
}


def _record(prediction=RICH, i=1):
    c = comment(i)
    return {"project": "acme", "dataset": "collections", "stream": "triage", "uid": c["uid"], "comment": c, "prediction": prediction}


def _keys(rows, key):
    return [tuple(row[column] for column in key) for row in rows]


def test_label_rows_keep_every_occurrence_under_a_key_that_merges_nothing():
    rows = flat_rows(_record())[0][LABELS]
    assert [(r["taxonomy"], r["label"], r["occurrence"]) for r in rows] == [
        ("default", "Billing > Refund", 1), ("default", "Billing > Refund", 2), ("default", "Urgent", 1), ("other", "Urgent", 1)]
    assert len(set(_keys(rows, LABEL_KEY))) == len(rows)
    assert all(None not in key for key in _keys(rows, LABEL_KEY))
    first = rows[0]
    assert first["parent"] == "Billing" and first["confidence"] == 0.93 and first["meets_stream_threshold"] is True
    assert first["extraction_confidence"] == 0.8 and first["created_at"] == comment(1)["created_at"]
    assert [r["meets_stream_threshold"] for r in rows] == [True, False, False, True]
    assert rows[2]["parent"] is None


def test_field_rows_belong_to_their_occurrence_and_general_fields_to_none():
    rows = flat_rows(_record())[0][FIELDS]
    extracted = [(r["label"], r["occurrence"], r["field"], r["field_occurrence"], r["value"]) for r in rows if r["kind"] == "extraction"]
    assert extracted == [
        ("Billing > Refund", 1, "Amount", 1, "10.00"),
        ("Billing > Refund", 2, "Amount", 1, "20.00"),
        ("Billing > Refund", 2, "Amount", 2, "25.00"),
    ]
    assert [r["extraction_confidence"] for r in rows if r["kind"] == "extraction"] == [0.8, 0.6, 0.6]
    assert all(r["confidence"] is None for r in rows if r["kind"] == "extraction")  # the API's models give none
    general = [r for r in rows if r["kind"] == "general"]
    assert [(r["label"], r["label_key"], r["occurrence"], r["field_occurrence"], r["value"], r["confidence"]) for r in general] == [
        (None, "", 0, 1, "636.00 GBP", 0.9), (None, "", 0, 2, None, None)]
    keys = _keys(rows, FIELD_KEY)
    assert len(set(keys)) == len(rows) and all(None not in key for key in keys)


def test_only_the_tables_asked_for_are_built_and_a_comment_without_prediction_has_no_rows():
    assert set(flat_rows(_record(), (LABELS,))[0]) == {LABELS}
    assert flat_rows(_record(prediction=None)) == ({LABELS: [], FIELDS: []}, 0)


def test_items_without_a_name_are_left_out_and_counted():
    odd = {"taxonomies": [
        {"name": "default", "labels": ["x", {"name": ""}, _label("Ok", 0.5, [], [("", "1"), ("Amount", "2")])],
         "general_fields": "nope"},
        {"labels": []},
    ]}
    built, skipped = flat_rows(_record(prediction=odd))
    assert [r["label"] for r in built[LABELS]] == ["Ok"]
    assert [r["field"] for r in built[FIELDS]] == ["Amount"]
    assert skipped == 5  # "x", "", a nameless field, general_fields not a list, a nameless taxonomy


def _rich_batch(indices, continuation, more):
    body = batch(indices, continuation, more, prediction=RICH)
    return body


def _state(message):
    blob = message.state.stream.stream_state
    return blob.__dict__ if isinstance(blob, AirbyteStateBlob) else blob


ALL = ("stream_results", LABELS, FIELDS)


def test_each_batch_emits_the_records_of_every_selected_table_then_one_state_each_before_the_flush_and_advance(monkeypatch):
    consumed, flushed_at, seen_at_advance = [], [], []

    def on_advance(request, context):
        seen_at_advance.append((list(consumed), len(flushed_at)))
        return {"status": "ok"}

    cfg, cat = config(), catalog(*ALL)
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": _rich_batch([1, 2], "b1", True)}, {"json": _rich_batch([3], "b2", False)}])
        m.post(stream_url(action="advance"), json=on_advance)
        source = SourceCommsmining(catalog=cat, config=cfg, state=None)
        monkeypatch.setattr(messages_module, "flush_stdout", lambda: flushed_at.append(len(consumed)))
        messages = []
        for message in source.read(logging.getLogger("test"), cfg, cat, None):
            if message.type == Type.RECORD:
                consumed.append(("R", message.record.stream))
            elif message.type == Type.STATE:
                consumed.append(("S", message.state.stream.stream_descriptor.name))
            messages.append(message)
    first, second = seen_at_advance
    per_comment = {RESULTS: 1, LABELS: 4, FIELDS: 5}
    expected_first = [("R", t) for t in ALL for _ in range(2 * per_comment[t])] + [("S", t) for t in ALL]
    assert first == (expected_first, 1)
    expected_second = expected_first + [("R", t) for t in ALL for _ in range(per_comment[t])] + [("S", t) for t in ALL]
    assert second == (expected_second, 2)
    finals = {}
    for message in messages:
        if message.type == Type.STATE:
            finals[message.state.stream.stream_descriptor.name] = _state(message)
    assert set(finals) == set(ALL)
    assert all(s["states"][0]["cursor"]["continuation"] == "b2" and s["states"][0]["cursor"]["batches"] == 2 for s in finals.values())


def test_the_flat_tables_alone_emit_no_stream_results():
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=_rich_batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog(LABELS))
    assert Counter(r.record.stream for r in output.records) == {LABELS: 4}
    assert {s.state.stream.stream_descriptor.name for s in output.state_messages} == {LABELS}
    assert not output.errors


def test_a_full_refresh_of_a_flat_table_is_refused():
    from airbyte_cdk.models import SyncMode

    output = run_read(config(), catalog(FIELDS, sync_mode=SyncMode.full_refresh), expecting_exception=True)
    [error] = output.errors
    assert error.trace.error.failure_type == FailureType.config_error
    assert "stream_result_fields can only be synced incrementally" in error.trace.error.message


def _cursor(continuation, batches=None, watermark="2024-02-01T00:00:07.000000Z", **extra):
    cursor = {"continuation": continuation, "created_at": watermark, **extra}
    if batches is not None:
        cursor["batches"] = batches
    return {"states": [{"partition": TRIAGE.as_partition(), "cursor": cursor}]}


NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _plan(state, **settings):
    """The calls position_plan.decide makes for TRIAGE (a server that accepts everything, nothing pending), and its outcome."""
    plan = decide(TRIAGE.key, state.cursors(TRIAGE), Settings(**settings), NOW)
    calls, answer = [], None
    try:
        while True:
            step, answer = plan.send(answer), None
            if isinstance(step, Log):
                continue
            calls.append(step)
            if isinstance(step, Peek):
                answer = Head()
            elif isinstance(step, GetDefinition):
                answer = {"created_at": "2024-01-01T00:00:00Z"}
            elif isinstance(step, Uploads):
                answer = Uploaded()
    except StopIteration as done:
        return calls, done.value


def test_the_resume_cursor_is_the_oldest_among_the_selected_tables():
    state = ResultsState.parse_tables({RESULTS: _cursor("b9", 9, "2024-02-01T00:00:09Z"), LABELS: _cursor("b7", 7), FIELDS: _cursor("b8", 8)})
    calls, outcome = _plan(state)
    assert calls[0] == Advance("b7", "the advance to the state's continuation")
    # A cursor written before `batches` existed is the oldest.
    assert _plan(ResultsState.parse_tables({RESULTS: _cursor("old"), LABELS: _cursor("b7", 7)}))[0][0].continuation == "old"
    # A selected table without a cursor for the stream does not move it: the others' oldest is resumed from.
    calls, _ = _plan(ResultsState.parse_tables({RESULTS: _cursor("b9", 9), LABELS: None}), start_position="current")
    assert calls[0] == Advance("b9", "the advance to the state's continuation")
    # Counted on from the oldest: every table's cursor is the same again.
    state.update(TRIAGE, "b10", "2024-02-01T00:00:10Z", outcome.base)
    assert {json.dumps(state.as_dict(t)) for t in ALL} == {json.dumps(state.as_dict(RESULTS))}
    assert state.as_dict(LABELS)["states"][0]["cursor"]["batches"] == 8


def test_cursors_counted_from_different_starts_of_the_stream_are_rejoined_at_the_oldest_watermark():
    """labels committed a batch counted from a restart, stream_results only a cursor from before it."""
    state = ResultsState.parse_tables(
        {RESULTS: _cursor("b9", 9, "2024-02-01T00:00:09Z", epoch="aaaa"), LABELS: _cursor("s1", 1, epoch="bbbb")}, [TRIAGE]
    )
    calls, outcome = _plan(state, start_position="current")
    assert calls == [Peek(), Reset("2024-02-01T00:00:07.000000Z", "the reset to the oldest committed watermark")]
    assert outcome.base is None  # a new line of reading: a new epoch
    # A legacy cursor (no epoch) against one with an epoch: the same.
    calls, _ = _plan(ResultsState.parse_tables({RESULTS: _cursor("old"), LABELS: _cursor("s1", 1, epoch="bbbb")}))
    assert [type(c) for c in calls] == [Peek, Reset]
    # The same epoch: ordered by batches; a resumed stream keeps its epoch, a stream started anew draws one.
    same = ResultsState.parse_tables({RESULTS: _cursor("b9", 9, epoch="aaaa"), LABELS: _cursor("b7", 7, epoch="aaaa")})
    calls, outcome = _plan(same)
    assert calls[0].continuation == "b7"
    same.update(TRIAGE, "b8", None, outcome.base)
    assert same.as_dict(LABELS)["states"][0]["cursor"]["epoch"] == "aaaa"
    fresh = ResultsState.parse_tables({RESULTS: None, LABELS: None})
    fresh.update(TRIAGE, "c1", None, None)
    epoch = fresh.as_dict(RESULTS)["states"][0]["cursor"]["epoch"]
    assert epoch != "aaaa" and fresh.as_dict(LABELS)["states"][0]["cursor"]["epoch"] == epoch


def test_position_confirmed_holds_only_when_every_table_confirms_the_same_continuation():
    confirmed = {"position_confirmed": True}
    both = ResultsState.parse_tables({RESULTS: _cursor("b7", 7, **confirmed), LABELS: _cursor("b7", 7, **confirmed)})
    assert _plan(both)[1].confirmed is True and len(_plan(both)[0]) == 1  # one advance, no reset
    one = ResultsState.parse_tables({RESULTS: _cursor("b7", 7, **confirmed), LABELS: _cursor("b7", 7)})
    assert "position_confirmed" not in _plan(one)[1].base
    apart = ResultsState.parse_tables({RESULTS: _cursor("b9", 9, **confirmed), LABELS: _cursor("b7", 7, **confirmed)})
    assert "position_confirmed" not in _plan(apart)[1].base
    both.update(TRIAGE, "b8", None, _plan(both)[1].base)
    assert all("position_confirmed" not in c for c in both.cursors(TRIAGE).values())
    both.confirm(TRIAGE)
    assert all(both.as_dict(t)["states"][0]["cursor"]["position_confirmed"] for t in (RESULTS, LABELS))


def _state_messages(per_table):
    builder = StateBuilder()
    for table, value in per_table.items():
        builder = builder.with_stream_state(table, value)
    return builder.build()


def test_a_sync_resumes_from_the_table_the_destination_committed_least_of():
    state = _state_messages({RESULTS: _cursor("b9", 9, "2024-02-01T00:00:09.000000Z"), LABELS: _cursor("b7", 7)})
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok", "sequence_id": "r"})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=_rich_batch([8], "b8", False))
        output = run_read(config(), catalog(RESULTS, LABELS), state=state)
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-02-01T00:00:07.000000Z"}
    assert advance.request_history[0].json() == {"sequence_id": "b7"}
    finals = {s.state.stream.stream_descriptor.name: _state(s)["states"][0]["cursor"] for s in output.state_messages[-2:]}
    assert finals[RESULTS] == finals[LABELS] and finals[LABELS]["batches"] == 8


def test_state_for_many_streams_no_longer_configured_is_dropped_with_one_warning():
    gone = [{"partition": {"project": "old", "dataset": "gone", "stream": f"s{i}"}, "cursor": {"continuation": "zz"}} for i in range(20000)]
    state = _state_messages({RESULTS: {"states": gone + _cursor("b7", 7)["states"]}})
    with requests_mock.Mocker() as m:
        definition(m)
        m.post(stream_url(action="reset"), json={"status": "ok", "sequence_id": "r"})
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=_rich_batch([8], "b8", False))
        output = run_read(config(), catalog(RESULTS), state=state)
    warnings = [log.log.message for log in output.logs if "no longer configured" in log.log.message]
    assert len(warnings) == 1 and "20000 Communications Mining stream(s)" in warnings[0] and "and 19995 more" in warnings[0]
    assert len(warnings[0]) < 600
    assert all(len(json.dumps(_state(s))) < 500 for s in output.state_messages)


def test_a_partition_given_twice_is_a_config_error_saying_what_came():
    twice = {"states": _cursor("b7", 7)["states"] + _cursor("b9", 9)["states"]}
    with pytest.raises(Exception) as error:
        ResultsState.parse(twice)
    assert error.value.failure_type == FailureType.config_error
    assert "acme/collections/triage twice" in error.value.message and "b9" in error.value.message
    assert "Clear the stream_results state" in error.value.message


def test_two_state_messages_for_one_stream_are_a_config_error():
    state = _state_messages({RESULTS: _cursor("b7", 7)}) + _state_messages({RESULTS: _cursor("b9", 9)})
    output = run_read(config(), catalog(RESULTS), state=state, expecting_exception=True)
    [error] = output.errors
    assert error.trace.error.failure_type == FailureType.config_error
    assert "more than one state message" in error.trace.error.message and "stream_results (2 times)" in error.trace.error.message


def test_a_state_with_a_namespace_is_not_silently_ignored():
    state = _state_messages({RESULTS: _cursor("b7", 7)})
    state[0].stream.stream_descriptor.namespace = "elsewhere"
    output = run_read(config(), catalog(RESULTS), state=state, expecting_exception=True)
    [error] = output.errors
    assert error.trace.error.failure_type == FailureType.config_error
    assert "elsewhere.stream_results" in error.trace.error.message and "namespace" in error.trace.error.message


@pytest.mark.parametrize("text", [
    "[" * 100000 + "]" * 100000,  # too deep for Python's JSON reader
    '[{"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": '
    + "[" * 900 + "]" * 900 + "}}}]",  # read as JSON, too deep for what parses it after
])
def test_a_state_file_nested_too_deep_names_the_file(tmp_path, text):
    state_file = tmp_path / "state.json"
    state_file.write_text(text)
    with pytest.raises(Exception) as error:
        SourceCommsmining.read_state(str(state_file))
    assert error.value.failure_type == FailureType.config_error
    assert str(state_file) in error.value.message and "levels deep" in error.value.message


def test_repeated_uids_in_one_batch_are_delivered_with_one_warning():
    body = batch([1, 1, 2, 2, 2, 3], "b1", False)
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=body)
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog(RESULTS))
    assert len(output.records) == 6
    warnings = [log.log.message for log in output.logs if "more than once" in log.log.message]
    assert len(warnings) == 1
    assert "2 uid(s)" in warnings[0] and f"{comment(1)['uid']} (2 times)" in warnings[0] and f"{comment(2)['uid']} (3 times)" in warnings[0]


def test_the_connector_builder_peek_gives_the_rows_a_sync_gives():
    import requests

    from source_commsmining.components import ResultFieldsExtractor, ResultLabelsExtractor

    body = _rich_batch([1, 2], "b1", False)
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json=body)
        response = requests.get(stream_url())
    records = [_record(i=i) for i in (1, 2)]
    for extractor, table in ((ResultLabelsExtractor(), LABELS), (ResultFieldsExtractor(), FIELDS)):
        expected = [row for record in records for row in flat_rows(record, (table,))[0][table]]
        assert list(extractor.extract_records(response)) == expected and expected


def test_label_rows_carry_every_threshold_the_occurrence_meets():
    rows = flat_rows(_record())[0][LABELS]
    assert [r["thresholds"] for r in rows] == [["stream", "balanced"], ["balanced"], [], ["stream"]]
    no_list = {"taxonomies": [{"name": "default", "labels": [{"name": "Urgent", "occurrence_confidence": {"value": 0.4}}]}]}
    assert flat_rows(_record(no_list))[0][LABELS][0]["thresholds"] is None
