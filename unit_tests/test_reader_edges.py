"""One component at a time: the advance requester's error handling and envelope.decode on error statuses.
(Behaviour across requests is tested against the emulator in integration_tests/test_reader_edges_e2e.py.)"""

import pytest
import requests
import requests_mock
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream
from source_commsmining.envelope import BadResponse, decode
from unit_tests.conftest import RESET_NEEDS as NEEDS, batch, catalog, config, results_state, run_read, stream_url

TRIAGE = CmStream("acme", "collections", "triage")


def _plain(filters):
    """Response filters without the manifest parser's `$parameters` and the like."""
    return [{k: v for k, v in f.items() if not k.startswith("$")} for f in filters]


def _source(**overrides):
    cfg = config(**overrides)
    return SourceCommsmining(catalog=catalog("stream_results"), config=cfg, state=None), cfg


def test_the_advance_error_handler_is_the_shared_one_plus_a_400_handed_back():
    definitions = _source()[0].resolved_manifest["definitions"]
    shared, advance = definitions["error_handler"], definitions["advance_requester"]["error_handler"]
    first, *rest = advance["response_filters"]
    assert (first["http_codes"], first["action"]) == ([400], "IGNORE")
    assert _plain(rest) == _plain(shared["response_filters"])  # lists are not merged by $ref: kept in step by hand
    assert {k: v for k, v in advance.items() if k != "response_filters"} == {
        k: v for k, v in shared.items() if k != "response_filters"
    }


@pytest.mark.parametrize(
    "answer, expected",
    [
        ({"json": {"status": "error", "message": "cannot advance backwards"}}, "cannot advance backwards"),
        ({"json": {"detail": "no status key"}}, "no message"),
        ({"text": "<html>400 Bad Request</html>"}, "<html>400 Bad Request</html>"),
    ],
)
def test_a_400_on_advance_reaches_the_reader_as_bad_response_whatever_the_body(answer, expected):
    source, cfg = _source()
    with requests_mock.Mocker() as m:
        m.post(stream_url(action="advance"), status_code=400, **answer)
        with pytest.raises(BadResponse) as raised:
            source._api(source._config).advance(TRIAGE, "b1")
    assert "refused POST /api/v1/datasets/acme/collections/streams/triage/advance (HTTP 400)" in raised.value.message
    assert expected in raised.value.message
    assert m.call_count == 1  # not retried


@pytest.mark.parametrize("status, failure", [(401, FailureType.config_error), (403, FailureType.config_error), (404, FailureType.config_error)])
def test_other_advance_errors_still_fail_as_before(status, failure, no_sleep):
    source, cfg = _source()
    with requests_mock.Mocker() as m:
        m.post(stream_url(action="advance"), status_code=status, json={"status": "error", "message": "nope"})
        with pytest.raises(AirbyteTracedException) as raised:
            source._api(source._config).advance(TRIAGE, "b1")
    assert not isinstance(raised.value, BadResponse) and raised.value.failure_type == failure


def test_advance_retries_5xx_409_and_429_as_before(no_sleep):
    source, cfg = _source(max_retries=3)
    with requests_mock.Mocker() as m:
        m.post(
            stream_url(action="advance"),
            [{"status_code": code, "json": {"status": "error"}} for code in (503, 409, 429)] + [{"json": {"status": "ok"}}],
        )
        source._api(source._config).advance(TRIAGE, "b1")
    assert m.call_count == 4


def test_decode_never_takes_an_error_status_for_an_answer():
    response = requests.Response()
    response.status_code, response._content = 422, b'{"status": "ok"}'
    response.request = requests.Request("POST", "https://x.test/api/v1/a").prepare()
    with pytest.raises(BadResponse, match=r"refused POST /api/v1/a \(HTTP 422\): no message"):
        decode(response)


def test_reset_keeps_the_shared_filters_and_a_404_names_what_to_check(no_sleep):
    definitions = _source()[0].resolved_manifest["definitions"]
    shared, reset = definitions["error_handler"], definitions["reset_requester"]["error_handler"]
    first, *rest = reset["response_filters"]
    assert (first["http_codes"], first["action"]) == ([400, 403], "IGNORE")  # handed back: the message quotes the reason
    assert _plain(rest) == [f for f in _plain(shared["response_filters"]) if f["http_codes"] != [403]]
    source, cfg = _source()
    with requests_mock.Mocker() as m:
        m.post(stream_url(action="reset"), status_code=404, json={"status": "error", "message": "no such stream"})
        with pytest.raises(AirbyteTracedException) as raised:
            source._api(source._config).reset(TRIAGE, "2024-01-01T00:00:00Z")
    assert raised.value.failure_type == FailureType.config_error
    assert "no such stream" in raised.value.message and "`streams`" in raised.value.message


@pytest.mark.parametrize(
    "answer",
    [
        {"status_code": 200, "json": {"status": "error", "message": "internal failure"}},
        {"status_code": 200, "text": "<html>gateway</html>"},
    ],
)
def test_only_a_400_at_resume_is_a_refusal_any_other_bad_answer_fails_the_sync(answer):
    """Going on from an unknown position after a 2xx 'error' would skip comments without a word."""
    state = results_state([{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                            "cursor": {"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}}])
    with requests_mock.Mocker() as m:
        m.post(stream_url(action="advance"), **answer)
        results = m.get(stream_url(), json=batch([1], "b8", False))
        output = run_read(config(rewind_on_resume=False), catalog("stream_results"), state=state, expecting_exception=True)
    assert output.errors and results.call_count == 0 and output.records == []
    assert not any("refused to advance" in log.log.message for log in output.logs)


@pytest.mark.parametrize(
    "cursor, overrides, reset_status, says, does_not_say",
    [
        # No watermark: no reset is possible whatever the permissions, so only a reset by hand helps.
        ({"continuation": "b7", "created_at": None}, {}, None, "no created_at watermark", "permission"),
        ({"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}, {"rewind_on_resume": False}, None,
         'turn rewind_on_resume on (a reset needs what reading the stream needs, ' + NEEDS,
         "no created_at watermark"),
        # A reset needs what reading needs ("Modify streams" only changes a definition); the API's reason is quoted.
        ({"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}, {}, 403,
         "refused to reset it (403: The Communications Mining API refused POST", "turn rewind_on_resume on"),
        ({"continuation": "b7", "created_at": "2024-02-01T00:00:07Z"}, {}, 403,
         'give the token ' + NEEDS, "Modify streams"),
    ],
)
def test_a_refused_resume_without_a_reset_fails_with_the_ways_out_that_apply(cursor, overrides, reset_status, says, does_not_say):
    state = results_state([{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"}, "cursor": cursor}])
    with requests_mock.Mocker() as m:
        reset = m.post(stream_url(action="reset"), status_code=reset_status or 200,
                       json={"status": "error", "message": "Forbidden: reset refused"} if reset_status else {"status": "ok"})
        m.post(stream_url(action="advance"), status_code=400, json={"status": "error", "message": "Invalid sequence_id"})
        results = m.get(stream_url(), json=batch([8], "b8", False))
        output = run_read(config(**overrides), catalog("stream_results"), state=state, expecting_exception=True)
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error
    assert "acme/collections/triage" in error.message and "HTTP 400" in error.message and "Invalid sequence_id" in error.message
    assert says in error.message and does_not_say not in error.message
    assert "skip_uncommitted_on_refused_resume" in error.message
    # Nothing read from the stream: at most the peek (max_results 1) that checks a reset cannot skip anything.
    assert output.records == [] and all(h.qs["max_results"] == ["1"] for h in results.request_history)
    assert reset.call_count == (1 if reset_status else 0)


def test_when_several_streams_fail_the_sync_error_is_the_config_error_whatever_came_first():
    """Inline reading in config order: `urgent` fails first (a 2xx "error", a system error), then
    `triage` cannot be moved back (a config_error). Both are logged; the trace must be the one the
    user has to act on."""
    streams = [{"project": "acme", "dataset": "collections", "stream": name} for name in ("urgent", "triage")]
    state = results_state([{"partition": streams[1], "cursor": {"continuation": "b7", "created_at": None}}])
    with requests_mock.Mocker() as m:
        m.get(stream_url(stream="urgent"), json={"status": "error", "message": "internal failure"})
        m.post(stream_url(action="advance"), status_code=400, json={"status": "error", "message": "Invalid sequence_id"})
        output = run_read(config(streams=streams, parallel_streams=1), catalog("stream_results"), state=state,
                          expecting_exception=True)
    failed = [log.log.message for log in output.logs if log.log.level.value == "ERROR" and " failed: " in log.log.message]
    assert [message.split(" failed:")[0] for message in failed] == ["stream_results acme/collections/urgent",
                                                                      "stream_results acme/collections/triage"]
    error = output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error and "acme/collections/triage" in error.message
