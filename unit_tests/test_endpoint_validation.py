"""api_endpoint as the HTTP client reads it: a host it would read otherwise is refused, a password in it never printed."""

import json

import pytest

from source_commsmining.config import validate_config
from unit_tests.conftest import config, connection_spec, refused_config, run_check



@pytest.mark.parametrize(
    "endpoint",
    [
        "http://192.0.2.2:8080\\@127.0.0.1",
        "https://acme.reinfer.io\\@evil.example",
        "https://user:s3cr3t-pass@acme.reinfer.io",
        "https://acme.reinfer.io @evil.example",
        "https://acme.reinfer.io:notaport",
    ],
)
def test_an_endpoint_the_http_client_would_read_otherwise_is_refused(endpoint):
    error = refused_config(api_endpoint=endpoint)
    assert "`api_endpoint`" in error.message
    assert "s3cr3t-pass" not in error.message and "s3cr3t-pass" not in (error.internal_message or "")


def test_the_password_of_an_endpoint_is_never_printed(capsys):
    status = run_check(config(api_endpoint="https://user:s3cr3t-pass@acme.reinfer.io"), capsys)
    assert status["status"] == "FAILED" and "user name or password" in status["message"]
    assert "s3cr3t-pass" not in json.dumps(status)


@pytest.mark.parametrize("endpoint", ["https://acme.reinfer.io", "https://cloud.uipath.com/acme/T/reinfer_/api/", "http://127.0.0.1:8080", "http://[::1]:8000"])
def test_plain_tenant_urls_are_accepted(endpoint):
    validate_config(config(api_endpoint=endpoint), connection_spec())
