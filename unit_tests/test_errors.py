"""Errors: retries, clear messages, config errors, and the token never showing up."""

import requests
import requests_mock
from airbyte_cdk.models import FailureType

from unit_tests.conftest import BASE, TOKEN, all_output, batch, catalog, config, definition, run_read, stream_url


def _error(output):
    return output.errors[-1].trace.error


def test_429_with_retry_after_then_success(no_sleep):
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [
            {"status_code": 429, "headers": {"Retry-After": "1"}, "json": {"status": "error", "message": "slow down"}},
            {"json": batch([1], "b1", False)},
        ])
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"))
    assert len(output.records) == 1 and not output.errors


def test_5xx_html_page_and_dropped_connection_are_retried_and_advance_too(no_sleep):
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [
            {"status_code": 502, "text": "<html><body>Bad Gateway</body></html>", "headers": {"Content-Type": "text/html"}},
            {"exc": requests.exceptions.ConnectionError("connection reset by peer")},
            {"json": batch([1], "b1", False)},
        ])
        advance = m.post(stream_url(action="advance"), [
            {"status_code": 503, "json": {"status": "error"}},
            {"exc": requests.exceptions.ReadTimeout("read timed out")},
            {"json": {"status": "ok"}},
        ])
        output = run_read(config(max_retries=3), catalog("stream_results"))
    assert len(output.records) == 1 and not output.errors
    assert advance.call_count == 3


def test_retries_are_bounded_and_the_sync_fails_with_the_last_state_kept(no_sleep):
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), [{"json": batch([1], "b1", True)}] + [{"status_code": 503, "json": {"status": "error"}}] * 10)
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(max_retries=2), catalog("stream_results"), expecting_exception=True)
    assert len(output.records) == 1
    assert output.errors
    states = output.state_messages
    assert states and states[-1].state.stream.stream_state.__dict__["states"][0]["cursor"]["continuation"] == "b1"


def test_401_is_a_config_error_naming_the_token():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), status_code=401, json={"status": "error", "message": "Unauthorized"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    error = _error(output)
    assert error.failure_type == FailureType.config_error
    assert "rejected the API token" in error.message


def test_403_is_a_config_error_naming_the_permission():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), status_code=403, json={"status": "error", "message": "missing permission 'Consume streams'"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    error = _error(output)
    assert error.failure_type == FailureType.config_error
    assert "Consume streams" in error.message


def test_200_with_status_error_is_an_error_not_an_empty_success():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json={"status": "error", "message": "model unavailable"})
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    assert advance.call_count == 0
    assert "model unavailable" in _error(output).message


def test_200_html_body_is_an_error_saying_it_is_not_json():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), text="<html>login</html>", headers={"Content-Type": "text/html"})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    assert "not JSON" in _error(output).message


def test_body_without_results_or_continuation_is_an_error():
    with requests_mock.Mocker() as m:
        m.get(stream_url(), json={"status": "ok", "more_results": False})
        output = run_read(config(), catalog("stream_results"), expecting_exception=True)
    assert "without results, continuation" in _error(output).message


def test_the_token_never_appears_in_any_output(no_sleep):
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(f"{BASE}/v1/sources", status_code=401, json={"status": "error", "message": "Unauthorized"})
        m.get(stream_url(), [{"status_code": 500, "json": {"status": "error"}}, {"json": batch([1], "b1", False)}])
        m.post(stream_url(action="advance"), json={"status": "ok"})
        output = run_read(config(), catalog("sources", "stream_results"), expecting_exception=True)
    text = all_output(output)
    assert "stream_results" in text  # the output is really there
    assert TOKEN not in text


def test_one_failing_cm_stream_does_not_stop_the_others():
    streams = [
        {"project": "acme", "dataset": "collections", "stream": "triage"},
        {"project": "acme", "dataset": "collections", "stream": "gone"},
    ]
    with requests_mock.Mocker() as m:
        definition(m)
        m.get(stream_url(), json=batch([1], "b1", False))
        m.post(stream_url(action="advance"), json={"status": "ok"})
        m.get(stream_url(stream="gone"), status_code=404, json={"status": "error", "message": "Stream not found"})
        output = run_read(config(streams=streams), catalog("stream_results"), expecting_exception=True)
    assert len(output.records) == 1
    assert "Not found" in _error(output).message
