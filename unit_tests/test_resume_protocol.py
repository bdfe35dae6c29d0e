"""Where stream_results puts a CM stream before reading: the start position and the resume decision table.

No state -> reset to the start position (stream_created / date) or, opt-in, read from the current
position. Confirmed state -> advance only. Unconfirmed -> advance, peek, reset, advance. A refused
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
from unit_tests.conftest import batch, catalog, comment, config, definition, results_state, run_read, stream_url

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
def test_no_state_resets_to_the_stream_creation_time_before_reading():
    with requests_mock.Mocker() as m:
        definition(m)  # created_at 2024-01-01T00:00:00Z
        reset = m.post(stream_url(action="reset"), json={"status": "ok", "sequence_id": "s"})
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(start_position="stream_created"), catalog("stream_results"))
    assert _calls(m)[:3] == [("GET", "triage"), ("POST", "reset"), ("GET", "results")]
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-01-01T00:00:00Z"}
    assert any("reset it to its creation time 2024-01-01T00:00:00Z" in line for line in _logs(output))
    assert [r.record.data["uid"] for r in output.records] == [comment(1)["uid"]]


def test_the_default_start_position_is_the_stream_creation_time():
    cfg = config()
    del cfg["start_position"]
    with requests_mock.Mocker() as m:
        definition(m)
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        run_read(cfg, catalog("stream_results"))
    assert reset.call_count == 1


def test_no_state_with_start_position_date_resets_to_that_date():
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        run_read(config(start_position="date", start_date_for_streams="2024-03-01T00:00:00Z"), catalog("stream_results"))
    assert _calls(m)[0] == ("POST", "reset")
    assert reset.request_history[0].json() == {"to_comment_created_at": "2024-03-01T00:00:00Z"}


def test_no_state_with_start_position_current_reads_without_a_reset_and_warns():
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.get(stream_url(), json=batch([], "b0", False))
        output = run_read(config(start_position="current"), catalog("stream_results"))
    assert reset.call_count == 0
    assert any("a failed first sync" in line.lower() or "this sync fails" in line for line in _logs(output, Level.WARN))


def test_a_refused_start_reset_fails_the_stream_and_reads_nothing():
    with requests_mock.Mocker() as m:
        definition(m)
        m.post(stream_url(action="reset"), status_code=403, json={"status": "error", "message": "Forbidden"})
        results = m.get(stream_url(), json=batch([1], "b1", False))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(start_position="stream_created"), catalog("stream_results"), expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "'Consume streams' and 'View labels'" in error.message and "start_position to current" in error.message
    assert results.call_count == 0 and advance.call_count == 0 and output.records == []


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"start_position": "date"}, "`start_date_for_streams` is missing"),
        ({"start_position": "date", "start_date_for_streams": "2024-02-30T00:00:00Z"}, "`start_date_for_streams`"),
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
    """Issue 18.6: the watermark is after the stream's next comment; a reset would skip what lies between."""
    ahead = "2024-02-01T00:00:30.000000Z"
    state = results_state([{"partition": TRIAGE, "cursor": {"continuation": "forged", "created_at": ahead}}])
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), json={"status": "ok"})
        m.post(stream_url(action="advance"), status_code=400, json={"status": "error", "message": "Invalid sequence_id"})
        results = m.get(stream_url(), json=batch([8], "b8", True))
        output = run_read(config(), catalog("stream_results"), state=state, expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "after the stream's next comment" in error.message and "clear the stream_results state" in error.message
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


def test_check_logs_the_dedicated_stream_rule():
    import logging

    from source_commsmining.check import check_connection

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("test-check-dedicated")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    source = SourceCommsmining(config=config())
    with requests_mock.Mocker() as m:
        m.get("https://acme.reinfer.io/api/v1/sources", json={"status": "ok", "sources": []})
        definition(m)
        check_connection(source._api(source._config), "https://acme.reinfer.io", [CmStream("acme", "collections", "triage")], logger)
    assert any("must be dedicated to this connection" in line and "one stream per consumer" in line for line in records)
