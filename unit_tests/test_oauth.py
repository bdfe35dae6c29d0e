"""The sign-in settings (`credentials`): the migration of a top-level api_token, the token_url rule, and the
External Application's token request and its errors (one component at a time, against requests-mock).

The sign-in across requests, threads and expiries is tested against the emulator (integration_tests/test_oauth_e2e.py).
"""

import itertools
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import requests_mock
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream
from source_commsmining.config import as_migrated, validate_config
from source_commsmining.errors import mask
from unit_tests.conftest import BASE, TOKEN, batch, config, stream_url

TOKEN_URL = "https://cloud.uipath.com/identity_/connect/token"
SECRET = "app-secret-0f1e2d3c4b5a"
CM = CmStream("acme", "collections", "triage")
_apps = itertools.count()


def oauth_config(**credentials):
    """A config signing in as an External Application; each call a new client id, so a new shared token."""
    base = {"auth_type": "oauth2_client_credentials", "client_id": f"app-{next(_apps)}", "client_secret": SECRET,
            "scopes": "Ixp.ApiAccess  Ixp.Other", "token_url": TOKEN_URL}
    base.update(credentials)
    cfg = config(credentials=base, max_retries=1, retry_backoff_seconds=0.01)
    del cfg["api_token"]
    return cfg


def spec():
    return SourceCommsmining().spec(None).connectionSpecification


def api_for(cfg):
    source = SourceCommsmining(config=cfg)
    return source._api(source._config)


def refused(cfg) -> AirbyteTracedException:
    with pytest.raises(AirbyteTracedException) as raised:
        SourceCommsmining(config=cfg)._validate()
    assert raised.value.failure_type == FailureType.config_error
    return raised.value


# ------------------------------------------------------------------ the migration of a top-level api_token
def test_a_top_level_api_token_is_migrated_to_credentials_and_sends_the_same_header():
    source = SourceCommsmining(config=config())
    assert source._config["credentials"] == {"auth_type": "api_token", "api_token": TOKEN}
    assert "api_token" not in source._config
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        source._api(source._config).list_sources()
        assert m.last_request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_python_mirror_of_the_migration_agrees_with_the_manifest():
    """config.as_migrated (for a config seen before a source is built with it) gives what config_migrations give."""
    for cfg in (config(), oauth_config(), {**oauth_config(), "api_token": TOKEN}):
        migrated = SourceCommsmining(config=cfg)._config
        mirrored = as_migrated(cfg)
        assert mirrored.get("credentials", {}).get("auth_type") == migrated["credentials"]["auth_type"]
        assert mirrored.get("credentials", {}).get("api_token") == migrated["credentials"].get("api_token")
        assert "api_token" not in mirrored and "api_token" not in migrated


def test_a_config_already_in_the_new_shape_is_left_as_it_is():
    cfg = config(credentials={"auth_type": "api_token", "api_token": TOKEN})
    del cfg["api_token"]
    source = SourceCommsmining(config=cfg)
    assert source._config["credentials"] == cfg["credentials"]


def test_a_stale_top_level_api_token_beside_an_external_application_is_dropped_not_used():
    cfg = oauth_config()
    cfg["api_token"] = TOKEN
    source = SourceCommsmining(config=cfg)
    assert source._config["credentials"]["auth_type"] == "oauth2_client_credentials" and "api_token" not in source._config


# ------------------------------------------------------------------ token_url: default on UiPath's cloud, required elsewhere
def test_token_url_defaults_to_uipath_identity_for_a_tenant_on_uipath_cloud():
    cfg = oauth_config(token_url=None)
    del cfg["credentials"]["token_url"]
    cfg["api_endpoint"] = "https://cloud.uipath.com/acme/DefaultTenant/reinfer_"
    source = SourceCommsmining(config=cfg)
    assert source._config["credentials"]["token_url"] == TOKEN_URL
    source._validate()


@pytest.mark.parametrize("endpoint", ["https://acme.reinfer.io", "https://automation.acme.example/acme/T/reinfer_"])
def test_token_url_is_required_for_other_hosts_and_the_message_says_why(endpoint):
    cfg = oauth_config()
    del cfg["credentials"]["token_url"]
    cfg["api_endpoint"] = endpoint
    message = refused(cfg).message
    assert "`credentials.token_url` is missing" in message and "only for tenants on https://cloud.uipath.com" in message
    assert "/identity_/connect/token" in message


@pytest.mark.parametrize(
    "token_url, says",
    [("http://idp.example/identity_/connect/token", "plain http://"),  # ignore-https-check
     ("https://idp.example/identity_/connect/token?x=1", "query"),
     ("https://user:pw@idp.example/t", "user name or password")],
)
def test_token_url_gets_the_api_endpoint_checks(token_url, says):
    message = refused(oauth_config(token_url=token_url)).message
    assert "`credentials.token_url`" in message and says in message and "pw@" not in message


def test_a_loopback_token_url_may_use_plain_http():
    validate_config(oauth_config(token_url="http://127.0.0.1:8080/identity_/connect/token"), spec())  # ignore-https-check


@pytest.mark.parametrize(
    "change, field",
    [({"client_id": ""}, "credentials.client_id"), ({"client_secret": None}, "credentials.client_secret"),
     ({"scopes": "  "}, "credentials.scopes"), ({"auth_type": "password"}, "credentials.auth_type")],
)
def test_an_incomplete_external_application_is_refused_naming_the_field(change, field):
    message = refused(oauth_config(**change)).message
    assert f"`{field}`" in message and SECRET not in message


# ------------------------------------------------------------------ the token request
def _token(m, **answer):
    body = {"access_token": "access-token-Zq7yW3vK9pL2mN8xR4t", "expires_in": 3600, "token_type": "Bearer", **answer}
    return m.post(TOKEN_URL, json=body)


def test_the_token_request_is_a_form_with_scope_grant_type_and_the_client_credentials():
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        token = _token(m)
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        api_for(cfg).list_sources()
        assert token.call_count == 1
        sent = token.last_request
        assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = {key: values for key, values in parse_qs(sent.text).items()}
        assert form == {"grant_type": ["client_credentials"], "client_id": [cfg["credentials"]["client_id"]],
                        "client_secret": [SECRET], "scope": ["Ixp.ApiAccess Ixp.Other"]}
        assert m.last_request.headers["Authorization"] == "Bearer access-token-Zq7yW3vK9pL2mN8xR4t"
    assert mask("access-token-Zq7yW3vK9pL2mN8xR4t") == "****" and mask(SECRET) == "****"


@pytest.mark.parametrize(
    "status, answer, names",
    [(401, {"error": "invalid_client"}, ("`credentials.client_id`", "`credentials.client_secret`")),
     (400, {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}, ("`credentials.client_secret`",)),
     (400, {"error": "invalid_scope"}, ("`credentials.scopes`",)),
     (404, None, ("`credentials.token_url`",))],
)
def test_a_refused_token_request_is_a_config_error_naming_the_setting(status, answer, names):
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        token = m.post(TOKEN_URL, status_code=status, **({"json": answer} if answer else {"text": "<html>nope</html>"}))
        with pytest.raises(AirbyteTracedException) as raised:
            api_for(cfg).list_sources()
        assert token.call_count == 1  # a refusal is not retried
    assert raised.value.failure_type == FailureType.config_error
    assert all(name in raised.value.message for name in names) and SECRET not in raised.value.message


def test_a_token_endpoint_failing_transiently_is_retried_then_fails_as_transient(no_sleep):
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        token = m.post(TOKEN_URL, [{"status_code": 503, "json": {}}, {"status_code": 502, "json": {}}, {"status_code": 503, "json": {}}])
        with pytest.raises(AirbyteTracedException) as raised:
            api_for(cfg).list_sources()
        assert token.call_count == 2  # max_retries 1
    assert raised.value.failure_type == FailureType.transient_error and "`credentials.token_url`" in raised.value.message


def test_a_token_endpoint_failing_once_is_retried(no_sleep):
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, [{"status_code": 503, "json": {}}, {"json": {"access_token": "access-token-after-retry", "expires_in": 60}}])
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        api_for(cfg).list_sources()
        assert m.last_request.headers["Authorization"] == "Bearer access-token-after-retry"


# ------------------------------------------------------------------ renewal
def test_a_401_renews_the_token_once_and_retries_then_fails_naming_the_application(no_sleep):
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, [{"json": {"access_token": f"access-token-{n:04d}-abcdef", "expires_in": 3600}} for n in range(5)])
        sources = m.get(f"{BASE}/v1/sources", [{"status_code": 401, "json": {"status": "error", "message": "Unauthorized"}},
                                               {"json": {"status": "ok", "sources": []}}])
        api = api_for(cfg)
        api.list_sources()
        assert sources.call_count == 2 and m.request_history[-1].headers["Authorization"] == "Bearer access-token-0001-abcdef"
        assert sum(1 for r in m.request_history if r.url == TOKEN_URL) == 2
        m.get(f"{BASE}/v1/sources", status_code=401, json={"status": "error", "message": "Unauthorized"})
        with pytest.raises(AirbyteTracedException) as raised:
            api.list_sources()
    assert raised.value.failure_type == FailureType.config_error
    assert "External Application" in raised.value.message and "`credentials.scopes`" in raised.value.message


def test_a_token_that_could_not_be_renewed_is_never_used_to_advance(no_sleep):
    """The token expires after the batch was read and its renewal fails: the advance is not sent at all."""
    cfg = oauth_config()
    with requests_mock.Mocker() as m:
        m.post(TOKEN_URL, [{"json": {"access_token": "access-token-short-lived", "expires_in": 60}}]
               + [{"status_code": 503, "json": {}}] * 4)
        m.get(stream_url(), json=batch([1, 2], "c2", False))
        advance = m.post(stream_url(action="advance"), json={"status": "ok"})
        api = api_for(cfg)
        api.results(CM)
        holder = api.requester("advance_requester").authenticator.holder
        holder.expires = holder.expires - timedelta(seconds=120)  # as if a minute had passed
        with pytest.raises(AirbyteTracedException) as raised:
            api.advance(CM, "c2")
        assert advance.call_count == 0
    assert raised.value.failure_type == FailureType.transient_error
