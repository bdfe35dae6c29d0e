"""Where stream_results puts a CM stream before reading: the start position and the resume decision table.

No state -> reset to the stream's creation if nothing shows it was read since, else refuse unless the
config names a choice (current, take_over_from_creation, take_over_from_date). Confirmed state -> advance only. Unconfirmed -> advance, peek, reset, advance. A refused
continuation is found before any reset and never leads to a reset forward.
"""

import pytest
import requests
import requests_mock
from airbyte_cdk.models import FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining, liveness
from source_commsmining.api import CmStream
from source_commsmining.config import validate_config
from unit_tests.conftest import RESET_NEEDS as NEEDS, batch, catalog, comment, config, definition, results_state, run_read, stream_url

TRIAGE = {"project": "acme", "dataset": "collections", "stream": "triage"}
WATERMARK = "2024-02-01T00:00:07.000000Z"  # comment(7)'s created_at


def _calls(m):
    return [(h.method, h.path.rsplit("/", 1)[-1]) for h in m.request_history]


def _final_cursor(output):
    blob = output.state_messages[-1].state.stream.stream_state
    states = (blob.__dict__ if hasattr(blob, "__dict__") else blob)["states"]
    [entry] = [e for e in states if e["partition"] == TRIAGE]
    return entry["cursor"]


def _state(**cursor):
    return results_state([{"partition": TRIAGE, "cursor": {"continuation": "b7", "created_at": WATERMARK, **cursor}}])


def _logs(output, level=None):
    return [log.log.message for log in output.logs if level is None or log.log.level == level]


# ------------------------------------------------------------------ no state: the start position
EXPORT_URL = "https://acme.reinfer.io/api/v1/datasets/acme/collections/export"


def _export(m, *indices):
    """Mocks the dataset export: the comments uploaded since the stream's creation, first `indices`."""
    body = {"status": "ok", "comments": [{"comment": comment(i), "annotations": {"labels": {}}, "predictions": {"labels": []}}
                                         for i in indices], "continuation": None}
    return m.post(EXPORT_URL, json=body)


def test_an_unread_stream_without_state_is_reset_to_its_creation_time_before_reading():
    with requests_mock.Mocker() as m:
        definition(m)  # created_at 2024-01-01T00:00:00Z
        export = _export(m, 1, 2)  # the first comment uploaded since its creation is the one pending: unread
        reset = m.post(stream_url(action="reset"), json={"status": "ok", "sequence_id": "s"})
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(start_position="from_creation_if_unread"), catalog("stream_results"), state=None)
    assert _calls(m)[:5] == [("GET", "triage"), ("GET", "results"), ("POST", "export"), ("POST", "reset"), ("GET", "results")]
    assert export.request_history[0].json() == {"order_by": "created_at", "from": "2024-01-01T00:00:00Z", "limit": 256}
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-01-01T00:00:00Z"}
    assert any("reset it to its creation time 2024-01-01T00:00:00Z" in line for line in _logs(output))
    assert [r.record.data["uid"] for r in output.records] == [comment(1)["uid"]]


@pytest.mark.parametrize("saved", [None, "stream_created"])
def test_the_default_and_the_old_saved_default_never_take_over_a_stream_read_since_its_creation(saved):
    """Comment 0 was uploaded after the stream's creation and is gone: someone consumed it. Nothing is moved."""
    cfg = config(start_position=saved) if saved else config()
    if not saved:
        del cfg["start_position"]
    with requests_mock.Mocker() as m:
        definition(m)
        _export(m, 0, 1)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        results = m.get(stream_url(), json=batch([1], "b1", False))
        output = run_read(cfg, catalog("stream_results"), expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    for words in ("acme/collections/triage", "2024-01-01T00:00:00Z", f"uploaded at {comment(1)['created_at']}",
                  "`current`", "`take_over_from_creation`", "`take_over_from_date`", "replays those comments to every reader"):
        assert words in error.message
    assert reset.call_count == 0 and advance.call_count == 0 and output.records == []
    assert all(h.qs["max_results"] == ["1"] for h in results.request_history)  # peeks only


@pytest.mark.parametrize(
    "export, why",
    [
        ({"status_code": 403, "json": {"status": "error", "message": "Forbidden: missing permission"}}, "Dataset - Export"),
        ({"json": {"status": "ok", "comments": [], "continuation": None}}, "does not list its next pending comment"),
    ],
)
def test_a_stream_whose_reading_cannot_be_told_is_refused_not_moved(export, why):
    with requests_mock.Mocker() as m:
        definition(m)
        m.post(EXPORT_URL, **export)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([1], "b1", False))
        output = run_read(config(start_position="from_creation_if_unread"), catalog("stream_results"), expecting_exception=True)
    assert why in output.errors[-1].trace.error.message and reset.call_count == 0 and output.records == []


@pytest.mark.parametrize(
    "condition, pending_priority, hidden",
    [
        ({"one_of": ["Urgent"]}, "Low", True),  # the comment uploaded first is one the filter keeps out: unread
        ({"one_of": ["Urgent"]}, "Urgent", False),  # it is one the stream serves: someone consumed it
        ({"minimum": 5}, None, False),  # a property the comment lacks: cannot be told, so read
    ],
)
def test_comments_the_stream_filter_keeps_out_do_not_count_as_read(condition, pending_priority, hidden):
    stream = {"name": "triage", "created_at": "2024-01-01T00:00:00Z",
              "comment_filter": {"user_properties": {"string:Priority": condition}}}
    first = comment(0, user_properties={"string:Priority": pending_priority} if pending_priority else {})
    body = {"status": "ok", "comments": [{"comment": c, "annotations": {"labels": {}}, "predictions": {"labels": []}}
                                         for c in (first, comment(1))], "continuation": None}
    with requests_mock.Mocker() as m:
        m.get(stream_url(action="")[:-1], json={"status": "ok", "stream": stream})
        m.post(EXPORT_URL, json=body)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(start_position="from_creation_if_unread"), catalog("stream_results"), expecting_exception=not hidden)
    assert reset.call_count == (1 if hidden else 0)
    assert bool(output.errors) is not hidden


def test_take_over_from_creation_resets_a_read_stream_and_says_it_takes_it_over():
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        output = run_read(config(start_position="take_over_from_creation"), catalog("stream_results"))
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-01-01T00:00:00Z"}
    assert any("taken over" in line for line in _logs(output))


@pytest.mark.parametrize("position", ["take_over_from_date", "date"])
def test_take_over_from_date_resets_to_that_date_and_the_old_value_date_means_the_same(position):
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        run_read(config(start_position=position, start_date_for_streams="2024-01-15T00:00:00Z"), catalog("stream_results"))
    assert _calls(m)[:2] == [("GET", "results"), ("POST", "reset")]  # a peek first: never reset forward
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-01-15T00:00:00Z"}


def test_a_take_over_never_resets_a_stream_forward_past_comments_it_holds():
    """The stream stands at comment 1 (2024-02-01T00:00:01); a reset to 2024-03-01 would skip it and all after."""
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([1], "b1", False))
        output = run_read(config(start_position="take_over_from_date", start_date_for_streams="2024-03-01T00:00:00Z"),
                          catalog("stream_results"), expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error and "forward past comments" in error.message
    assert "start_position to current" in error.message and reset.call_count == 0 and output.records == []


def test_a_stream_created_in_the_future_is_refused_rather_than_used():
    with requests_mock.Mocker() as m:
        m.get(stream_url(action="")[:-1], json={"status": "ok", "stream": {"name": "triage", "created_at": "2099-01-01T00:00:00Z"}})
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([1], "b1", False))
        output = run_read(config(start_position="take_over_from_creation"), catalog("stream_results"), expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error and "'2099-01-01T00:00:00Z', in the future" in error.message
    assert reset.call_count == 0 and output.records == []


def test_no_state_with_start_position_current_reads_without_a_reset_and_warns():
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        output = run_read(config(start_position="current"), catalog("stream_results"))
    assert reset.call_count == 0
    assert any("a failed first sync" in line.lower() or "this sync fails" in line for line in _logs(output, Level.WARN))


@pytest.mark.parametrize(
    "status, body, says",
    [
        (403, {"status": "error", "message": "Forbidden"}, NEEDS),
        (400, {"status": "error", "message": "Invalid to_comment_created_at"}, "Invalid to_comment_created_at"),
    ],
)
def test_a_refused_start_reset_names_the_stream_the_reset_the_time_the_reason_and_the_setting(status, body, says):
    with requests_mock.Mocker() as m:
        definition(m)
        m.post(stream_url(action="reset"), status_code=status, json=body)
        results = m.get(stream_url(), json=batch([], "b0", False))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(start_position="take_over_from_creation"), catalog("stream_results"), expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    for words in ("acme/collections/triage", "the start reset (to its creation time 2024-01-01T00:00:00Z", f"({status}:",
                  says, "start_position"):
        assert words in error.message
    assert advance.call_count == 0 and output.records == []
    assert all(h.qs["max_results"] == ["1"] for h in results.request_history)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"start_position": "take_over_from_date"}, "`start_date_for_streams` is missing"),
        ({"start_position": "take_over_from_date", "start_date_for_streams": "2024-02-30T00:00:00Z"}, "`start_date_for_streams`"),
        ({"start_position": "take_over_from_date", "start_date_for_streams": "2099-01-01T00:00:00Z"}, "in the future"),
        ({"start_position": "soon"}, "`start_position`"),
    ],
)
def test_start_position_settings_are_validated_naming_the_field(overrides, field):
    source = SourceCommsmining()
    spec = source.spec(None).connectionSpecification
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(**overrides), spec)
    assert raised.value.failure_type == FailureType.config_error and field in raised.value.message


# ------------------------------------------------------------------ a state: resume
def test_a_confirmed_state_is_only_advanced_to_no_peek_no_reset():
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b7", False))
        output = run_read(config(), catalog("stream_results"), state=_state(position_confirmed=True))
    assert reset.call_count == 0 and _calls(m) == [("POST", "advance"), ("GET", "results")]
    assert advance.request_history[0].json() == {"sequence_id": "b7"}
    assert any("position is confirmed" in line for line in _logs(output))
    assert _final_cursor(output)["position_confirmed"] is True  # nothing read, still exactly there


def test_an_unconfirmed_state_is_reset_and_the_last_state_of_a_clean_end_is_confirmed():
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), [{"json": batch([8], "b8", True)}, {"json": batch([8], "b8", True)}, {"json": batch([], "b8", False)}])
        output = run_read(config(), catalog("stream_results"), state=_state())
    assert reset.call_count == 1
    cursors = [s.state.stream.stream_state.__dict__["states"][0]["cursor"] for s in output.state_messages]
    assert [c.get("position_confirmed") for c in cursors] == [None, True]
    assert cursors[-1]["continuation"] == "b8"


def test_a_failed_stream_is_not_confirmed():
    with requests_mock.Mocker() as m:
        definition(m)
        m.post(stream_url(action="advance"), [{"json": {"status": "ok"}}, {"status_code": 400, "json": {"status": "error", "message": "no"}}])
        m.get(stream_url(), json=batch([8], "b8", True))
        output = run_read(config(), catalog("stream_results"), state=_state(position_confirmed=True), expecting_exception=True)
    assert output.errors
    assert "position_confirmed" not in _final_cursor(output)


def test_a_refused_continuation_with_a_watermark_ahead_fails_without_any_reset():
    """A forged watermark: it is after the stream's next comment; a reset would skip what lies between."""
    ahead = "2024-02-01T00:00:30.000000Z"
    state = results_state([{"partition": TRIAGE, "cursor": {"continuation": "forged", "created_at": ahead}}])
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), status_code=400, json={"status": "error", "message": "Invalid sequence_id"})
        results = m.get(stream_url(), json=batch([8], "b8", True))
        output = run_read(config(), catalog("stream_results"), state=state, expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "after the stream's next pending comment" in error.message and "clear the state of the results tables" in error.message
    assert reset.call_count == 0 and output.records == []
    assert all(h.qs["max_results"] == ["1"] for h in results.request_history)


def test_a_refused_continuation_with_skip_opted_in_goes_on_from_where_the_stream_is_without_a_reset():
    ahead = "2024-02-01T00:00:30.000000Z"
    state = results_state([{"partition": TRIAGE, "cursor": {"continuation": "forged", "created_at": ahead}}])
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), [{"status_code": 400, "json": {"status": "error", "message": "bad"}},
                                              {"json": {"status": "ok"}}])
        m.get(stream_url(), json=batch([8], "b8", False))
        output = run_read(config(skip_uncommitted_on_refused_resume=True), catalog("stream_results"), state=state)
    assert reset.call_count == 0 and len(output.records) == 1
    assert any("skip_uncommitted_on_refused_resume" in line for line in _logs(output, Level.WARN))


def test_a_server_refusing_older_tokens_is_recovered_by_a_safe_reset_then_the_continuation():
    """The honest case under the 'refused' reading: the stream is ahead, the watermark is before its next comment."""
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        advance = m.post(stream_url(action="advance"), [{"status_code": 400, "json": {"status": "error", "message": "older"}},
                                                        {"json": {"status": "ok"}}])
        m.get(stream_url(), json=batch([20], "b20", False))
        output = run_read(config(), catalog("stream_results"), state=_state())
    assert not output.errors and reset.call_count == 1
    assert [h.json() for h in advance.request_history[:2]] == [{"sequence_id": "b7"}] * 2
    assert _calls(m)[:4] == [("POST", "advance"), ("GET", "results"), ("POST", "reset"), ("POST", "advance")]


def test_an_accepted_continuation_with_a_future_watermark_is_not_reset():
    state = results_state([{"partition": TRIAGE, "cursor": {"continuation": "b7", "created_at": "2999-01-01T00:00:00Z"}}])
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b7", False))
        output = run_read(config(), catalog("stream_results"), state=state)
    assert reset.call_count == 0 and not output.errors
    assert any("in the future" in line for line in _logs(output, Level.WARN))


# ------------------------------------------------------------------ liveness
def test_no_advance_or_reset_is_sent_once_the_sync_is_not_live():
    source = SourceCommsmining(config=config())
    api = source._api(source._config)
    cm = CmStream("acme", "collections", "triage")
    liveness.end("stdout is closed")
    try:
        with requests_mock.Mocker() as m:
            advance = m.post(stream_url(action="advance"), json={"status": "ok"})
            reset = m.post(stream_url(action="reset"), json={"status": "ok"})
            m.get(stream_url(), json=batch([], "b0", False))
            with pytest.raises(liveness.SyncNotLive, match="stdout is closed"):
                api.advance(cm, "b1")
            with pytest.raises(liveness.SyncNotLive):
                api.reset(cm, WATERMARK)
            api.results(cm)  # a GET consumes nothing: still allowed
        assert advance.call_count == 0 and reset.call_count == 0
    finally:
        liveness.start()


def test_a_retry_of_an_advance_is_not_sent_once_the_sync_stopped_during_its_backoff():
    source = SourceCommsmining(config=config(max_retries=3, retry_backoff_seconds=0.01))
    api = source._api(source._config)
    cm = CmStream("acme", "collections", "triage")

    def failing(request, context):
        liveness.end("the sync received SIGTERM")  # the signal arrives while the first attempt is answered
        context.status_code = 503
        return {"status": "error", "message": "busy"}

    try:
        with requests_mock.Mocker() as m:
            advance = m.post(stream_url(action="advance"), json=failing)
            with pytest.raises(liveness.SyncNotLive, match="SIGTERM"):
                api.advance(cm, "b1")
        assert advance.call_count == 1  # the first attempt only: no retry
    finally:
        liveness.start()


def _check(m, cfg):
    import logging

    from source_commsmining.check import check_connection

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelno, record.getMessage()))

    logger = logging.getLogger("test-check-position")
    logger.handlers[:] = [Keep()]
    logger.setLevel(logging.INFO)
    source = SourceCommsmining(config=cfg)
    m.get("https://acme.reinfer.io/api/v1/sources", json={"status": "ok", "sources": []})
    status = check_connection(
        source._api(source._config), "https://acme.reinfer.io", [CmStream("acme", "collections", "triage")], logger,
        source._positioning(),
    )
    return status, records


@pytest.mark.parametrize("position", ["from_creation_if_unread", "current", "take_over_from_creation"])
def test_check_warns_about_a_stream_read_since_its_creation_and_never_moves_it(position):
    import logging

    with requests_mock.Mocker() as m:
        definition(m)
        _export(m, 0, 1)
        m.get(stream_url(), json=batch([1], "b1", False))
        status, records = _check(m, config(start_position=position))
    warnings = [text for level, text in records if level == logging.WARNING]
    assert status.status.name == "SUCCEEDED"
    assert len(warnings) == 1 and "acme/collections/triage" in warnings[0] and "may have been read" in warnings[0]
    assert {(h.method, h.path.rsplit("/", 1)[-1]) for h in m.request_history} == {
        ("GET", "sources"), ("GET", "triage"), ("GET", "results"), ("POST", "export")
    }  # the definition once, a peek, the export: never an advance or a reset


def test_check_says_nothing_of_an_unread_stream():
    with requests_mock.Mocker() as m:
        definition(m)
        _export(m, 1, 2)
        m.get(stream_url(), json=batch([1], "b1", False))
        status, records = _check(m, config(start_position="from_creation_if_unread"))
    assert status.status.name == "SUCCEEDED" and not [text for level, text in records if level >= 30]


def test_check_fails_for_a_stream_created_in_the_future_when_the_start_position_uses_it():
    with requests_mock.Mocker() as m:
        m.get(stream_url(action="")[:-1], json={"status": "ok", "stream": {"name": "triage", "created_at": "2099-01-01T00:00:00Z"}})
        m.get(stream_url(), json=batch([1], "b1", False))
        status, _ = _check(m, config(start_position="from_creation_if_unread"))
    assert status.status.name == "FAILED" and "acme/collections/triage" in status.message and "in the future" in status.message


def test_the_export_is_paged_to_the_stream_head_or_to_its_end_and_a_cap_says_it_is_incomplete():
    source = SourceCommsmining(config=config())
    api = source._api(source._config)
    cm = CmStream("acme", "collections", "triage")

    def page(indices, continuation):
        return {"json": {"status": "ok", "continuation": continuation,
                         "comments": [{"comment": comment(i), "annotations": {"labels": {}}, "predictions": {"labels": []}} for i in indices]}}

    with requests_mock.Mocker() as m:
        export = m.post(EXPORT_URL, [page([0, 1], "p2"), page([2, 3], None)])
        everything = api.uploads(cm, "2024-01-01T00:00:00Z", None)
        assert [c["uid"] for c in everything.comments] == [comment(i)["uid"] for i in range(4)] and everything.complete
        assert export.request_history[1].json() == {"order_by": "created_at", "continuation": "p2", "limit": 256}
        m.post(EXPORT_URL, [page([0, 1], "p2"), page([2, 3], "p3")])
        capped = api.uploads(cm, "2024-01-01T00:00:00Z", None, pages=2)
        assert not capped.complete
        m.post(EXPORT_URL, [page([0, 1, 2], "p2")])
        upto = api.uploads(cm, "2024-01-01T00:00:00Z", comment(1)["created_at"])
        assert [c["uid"] for c in upto.comments] == [comment(0)["uid"], comment(1)["uid"]] and upto.complete
