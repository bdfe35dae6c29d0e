"""Config validation, endpoint normalisation, spec, discover and check."""

import pytest
import requests
import requests_mock
from airbyte_cdk.models import FailureType, Status, SyncMode
from airbyte_cdk.test.entrypoint_wrapper import discover

from source_commsmining import SourceCommsmining
from source_commsmining.config import api_base_url
from unit_tests.conftest import BASE, TOKEN, catalog, config, run_check, run_read, stream_url


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        ("https://acme.reinfer.io", "https://acme.reinfer.io/api"),
        ("https://acme.reinfer.io/", "https://acme.reinfer.io/api"),
        ("https://acme.reinfer.io/api", "https://acme.reinfer.io/api"),
        ("https://acme.reinfer.io/api/", "https://acme.reinfer.io/api"),
        ("https://cloud.uipath.com/org/tenant/reinfer_", "https://cloud.uipath.com/org/tenant/reinfer_/api"),
        ("https://cloud.uipath.com/org/tenant/reinfer_/api/", "https://cloud.uipath.com/org/tenant/reinfer_/api"),
    ],
)
def test_endpoint_forms(endpoint, expected):
    assert api_base_url(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["https://acme.reinfer.io", " https://acme.reinfer.io/API/ ", "https://cloud.uipath.com/org/tenant/reinfer_/api/", "https://acme.reinfer.io//"])
def test_the_manifest_derives_the_base_url_validation_checks(endpoint):
    # The requesters use the manifest's `api_base_url`; validation reads the host from config.api_base_url.
    assert SourceCommsmining(config={"api_endpoint": endpoint})._config["api_base_url"] == api_base_url(endpoint)


class _Status:
    def __init__(self, raw):
        self.status = Status(raw["status"])
        self.message = raw.get("message") or ""


@pytest.fixture
def check_status(capsys):
    return lambda cfg: _Status(run_check(cfg, capsys))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"api_endpoint": "http://acme.reinfer.io"}, "api_endpoint"),
        ({"max_results": 33}, "max_results"),
        ({"max_results": "many"}, "max_results"),
        ({"streams": [{"project": "acme", "dataset": "collections"}]}, "stream"),
        ({"streams": "acme/collections/triage"}, "streams"),
        ({"max_filtered": 5000}, "max_filtered"),
    ],
)
def test_bad_config_fails_check_and_read_naming_the_field(overrides, field, check_status):
    cfg = config(**overrides)
    with requests_mock.Mocker() as m:
        status = check_status(cfg)
        read_output = run_read(cfg, catalog("stream_results"), expecting_exception=True)
        assert m.call_count == 0
    assert status.status == Status.FAILED and field in status.message
    error = read_output.errors[-1].trace.error
    assert error.failure_type == FailureType.config_error and field in error.message


def test_missing_token_is_named(check_status):
    cfg = config()
    del cfg["api_token"]
    status = check_status(cfg)
    assert status.status == Status.FAILED and "`credentials`" in status.message and "signs in" in status.message


def test_duplicate_stream_entries_are_refused(check_status):
    entry = {"project": "acme", "dataset": "collections", "stream": "triage"}
    status = check_status(config(streams=[entry, entry]))
    assert status.status == Status.FAILED and "streams[1]" in status.message


def test_http_is_allowed_for_loopback(check_status):
    cfg = config(api_endpoint="http://127.0.0.1:9/")
    with requests_mock.Mocker() as m:
        m.get("http://127.0.0.1:9/api/v1/sources", json={"status": "ok", "sources": []})
        m.get("http://127.0.0.1:9/api/v1/datasets/acme/collections/streams/triage", json={"status": "ok", "stream": {"name": "triage"}})
        assert check_status(cfg).status == Status.SUCCEEDED


def test_check_verifies_the_token_and_every_stream_without_reading_any(check_status):
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        m.get(stream_url(action="")[:-1], json={"status": "ok", "stream": {"name": "triage"}})
        status = check_status(config())
        paths = [h.path for h in m.request_history]
    assert status.status == Status.SUCCEEDED
    assert not any(p.endswith(("/results", "/advance", "/reset", "/fetch")) for p in paths)


def test_check_names_a_missing_stream(check_status):
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        m.get(stream_url(action="")[:-1], status_code=404, json={"status": "error", "message": "Stream 'acme/collections/triage' not found"})
        status = check_status(config())
    assert status.status == Status.FAILED and "acme/collections/triage" in status.message and "streams[0]" in status.message


@pytest.mark.parametrize(
    "response, words",
    [
        ({"status_code": 401, "json": {"status": "error", "message": "Unauthorized"}}, "rejected the API token"),
        ({"status_code": 403, "json": {"status": "error", "message": "missing permission 'View sources'"}}, "View sources"),
        ({"status_code": 200, "text": "<html>Welcome</html>"}, "not JSON"),
    ],
)
def test_check_failures_say_what_is_wrong(response, words, check_status):
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", **response)
        status = check_status(config())
    assert status.status == Status.FAILED and words in status.message
    assert TOKEN not in status.message


def test_check_on_an_unreachable_endpoint_fails_fast_with_words(no_sleep, check_status):
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", exc=requests.exceptions.ConnectionError("Name or service not known"))
        status = check_status(config())
        assert m.call_count <= 3  # check retries at most twice
    assert status.status == Status.FAILED and "acme.reinfer.io" in status.message


def test_discover_offers_only_incremental_for_stream_results():
    cfg = config()
    streams = {s.name: s for s in discover(SourceCommsmining(config=cfg), cfg).catalog.catalog.streams}
    results = streams["stream_results"]
    assert results.supported_sync_modes == [SyncMode.incremental]
    assert results.source_defined_cursor and results.default_cursor_field == ["created_at"]
    # A comment in two configured streams is two rows; re-delivered by one stream, one row.
    assert results.source_defined_primary_key == [["project"], ["dataset"], ["stream"], ["uid"]]
    assert streams["sources"].supported_sync_modes == [SyncMode.full_refresh]
    assert streams["sources"].source_defined_primary_key == [["id"]]


def test_spec_names_are_the_contract():
    spec = SourceCommsmining().spec(None).connectionSpecification
    props = spec["properties"]
    for name in ("api_endpoint", "credentials", "project", "streams", "max_results", "max_filtered"):
        assert name in props
    methods = {option["properties"]["auth_type"]["const"]: option["properties"] for option in props["credentials"]["oneOf"]}
    assert methods["api_token"]["api_token"]["airbyte_secret"] is True
    assert methods["oauth2_client_credentials"]["client_secret"]["airbyte_secret"] is True
    assert props["max_results"]["minimum"] == 1 and props["max_results"]["maximum"] == 32 and props["max_results"]["default"] == 32
    assert props["max_filtered"]["maximum"] == 1024 and props["streams"]["default"] == []
    for name, prop in props.items():
        if name not in ("api_endpoint", "credentials", "project", "streams"):
            assert "default" in prop or "examples" in prop, name
        assert prop.get("description"), name


def test_a_token_with_a_line_break_is_refused_without_echoing_it(check_status):
    with requests_mock.Mocker() as m:
        status = check_status(config(api_token=TOKEN + "\n"))
        assert m.call_count == 0
    assert status.status == Status.FAILED and "api_token`" in status.message
    assert TOKEN not in status.message
