"""transport.py and errors.mask on their own: Retry-After in both forms, the response deadline, the token's forms."""

import json
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import requests
import requests_mock
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from integration_tests.misbehaving_server import Answer, MisbehavingServer
from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream
from source_commsmining.errors import mask, register_secret, secret_forms
from source_commsmining.transport import DEADLINE_ENV, RetryAfter, deadline_seconds, retry_after_seconds
from unit_tests.conftest import TOKEN, config, stream_url

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TRIAGE = CmStream("acme", "collections", "triage")


# ------------------------------------------------------------------ Retry-After
@pytest.mark.parametrize(
    "value, wait",
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (format_datetime(NOW + timedelta(seconds=3), usegmt=True), 3.0),
        ("Fri, 02 Jan 2026 03:04:15 GMT", 10.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("soon", None),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(value, wait):
    assert retry_after_seconds(value, now=NOW.timestamp()) == wait


def _response(status: int, headers) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


def test_a_retry_after_date_gives_the_wait_until_then():
    strategy = RetryAfter(config={}, parameters={})
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    wait = strategy.backoff_time(_response(429, {"Retry-After": when}), attempt_count=1)
    assert 28 <= wait <= 30  # whole seconds in the header


def test_a_retry_after_past_the_cap_fails_as_transient_instead_of_waiting():
    strategy = RetryAfter(config={}, parameters={}, max_waiting_time_in_seconds=300)
    when = format_datetime(datetime.now(timezone.utc) + timedelta(hours=1), usegmt=True)
    with pytest.raises(AirbyteTracedException) as raised:
        strategy.backoff_time(_response(429, {"Retry-After": when}), attempt_count=1)
    assert raised.value.failure_type.value == "transient_error"
    assert "Retry-After" in raised.value.message


def test_no_retry_after_leaves_the_wait_to_the_next_strategy():
    strategy = RetryAfter(config={}, parameters={})
    assert strategy.backoff_time(_response(503, {}), attempt_count=1) is None
    assert strategy.backoff_time(requests.exceptions.ConnectionError("x"), attempt_count=1) is None


def test_the_manifest_uses_the_date_aware_strategy_first():
    source = SourceCommsmining(config=config())
    strategies = source._api(source._config).requester("results_requester").error_handler.backoff_strategies
    assert isinstance(strategies[0], RetryAfter)


# ------------------------------------------------------------------ the response deadline
def test_the_deadline_is_the_read_timeout_unless_lowered(monkeypatch):
    monkeypatch.delenv(DEADLINE_ENV, raising=False)
    assert deadline_seconds((15, 240)) == 240
    monkeypatch.setenv(DEADLINE_ENV, "2")
    assert deadline_seconds((15, 240)) == 2
    monkeypatch.setenv(DEADLINE_ENV, "900")
    assert deadline_seconds((15, 240)) == 240  # never above the read timeout


def test_a_body_that_never_ends_is_retried_then_fails_as_transient_naming_the_call(monkeypatch):
    monkeypatch.setenv(DEADLINE_ENV, "1")
    with MisbehavingServer() as server:
        server.script("GET results", Answer(200, trickle_seconds=15))
        source = SourceCommsmining(config=config(api_endpoint=server.url, max_retries=1, retry_backoff_seconds=0.01))
        with pytest.raises(AirbyteTracedException) as raised:
            source._api(source._config).results(TRIAGE)
        calls = [r for r in server.requests if r.path.endswith("/results")]
    assert raised.value.failure_type.value == "transient_error"
    assert "no complete response within 1 s" in raised.value.message
    assert len(calls) == 2  # retried once (max_retries: 1)


def test_a_whole_body_read_by_the_hook_is_the_response_content_and_every_try_carries_the_token(no_sleep):
    source = SourceCommsmining(config=config())
    api = source._api(source._config)
    body = {"status": "ok", "results": [], "continuation": "c1", "more_results": False, "num_filtered": 0}
    with requests_mock.Mocker() as mock:
        mock.get(stream_url(), [{"status_code": 503, "json": {}}, {"json": body}])
        assert api.results(TRIAGE) == body
    assert [r.headers["Authorization"] for r in mock.request_history] == [f"Bearer {TOKEN}"] * 2


def test_a_record_caps_last_call_asks_for_fewer_results():
    source = SourceCommsmining(config=config(max_results=20))
    api = source._api(source._config)
    body = {"status": "ok", "results": [], "continuation": "c1", "more_results": False, "num_filtered": 0}
    with requests_mock.Mocker() as mock:
        mock.get(stream_url(), json=body)
        api.results(TRIAGE)
        api.results(TRIAGE, at_most=7)
        api.results(TRIAGE, at_most=50)
    assert [r.qs["max_results"] for r in mock.request_history] == [["20"], ["7"], ["20"]]


# ------------------------------------------------------------------ the token's forms
def test_every_form_of_the_token_is_masked():
    token = "tökén-secret-77"
    register_secret(token)
    texts = [
        token,
        json.dumps({"h": f"Bearer {token}"}),  # \u00f6
        json.dumps(json.dumps({"h": token})),  # escaped twice
        quote(token, safe=""),
        quote(token, safe="").lower(),
        repr(f"Bearer {token}".encode()),
        repr(token.encode("latin-1")),
    ]
    for text in texts:
        assert not any(form in mask(text) for form in secret_forms(token)), text


def test_a_403_body_that_echoes_the_token_is_not_repeated_in_the_message():
    source = SourceCommsmining(config=config())
    api = source._api(source._config)
    with requests_mock.Mocker() as mock:
        mock.get(stream_url(), status_code=403, json={"status": "error", "message": f"bad token: Bearer {TOKEN}"})
        with pytest.raises(AirbyteTracedException) as raised:
            api.results(TRIAGE)
    assert TOKEN not in raised.value.message and "bad token: Bearer ****" in raised.value.message


# ------------------------------------------------------------------ behind a proxy
def test_a_proxy_s_connections_keep_the_response_deadline_and_its_password_is_masked():
    from source_commsmining import transport

    manager = transport.DeadlineAdapter().proxy_manager_for("http://someone:proxy-pass%2Fword-42@127.0.0.1:3128")
    assert manager.pool_classes_by_scheme == transport._POOLS  # the CONNECT tunnel, TLS and headers under the deadline
    assert "proxy-pass/word-42" not in mask("ProxyError: http://someone:proxy-pass/word-42@127.0.0.1:3128")
    assert "proxy-pass%2Fword-42" not in mask("ProxyError: http://someone:proxy-pass%2Fword-42@127.0.0.1:3128")
