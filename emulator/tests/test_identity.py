"""The emulator's token endpoint (identity.py): client credentials in, a Bearer token for the API out."""

import time

import pytest
import requests

from commsmining_emulator import Emulator
from commsmining_emulator.identity import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPES


@pytest.fixture
def emu():
    with Emulator(comments=20, token_lifetime=1) as emu:
        yield emu


def _form(**change):
    form = {"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
            "scope": " ".join(DEFAULT_SCOPES)}
    form.update(change)
    return form


def test_a_token_is_issued_for_the_client_credentials_and_serves_the_api_until_it_expires(emu):
    answer = requests.post(emu.token_url, data=_form(), timeout=5)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1 and body["scope"] == " ".join(DEFAULT_SCOPES)
    headers = {"Authorization": "Bearer " + body["access_token"]}
    assert requests.get(emu.url + "/api/v1/sources", headers=headers, timeout=5).status_code == 200
    time.sleep(1.1)
    expired = requests.get(emu.url + "/api/v1/sources", headers=headers, timeout=5)
    assert expired.status_code == 401 and "expired" in expired.json()["message"]


@pytest.mark.parametrize(
    "change, status, error",
    [({"client_secret": "wrong-secret"}, 401, "invalid_client"), ({"client_id": "nobody"}, 401, "invalid_client"),
     ({"scope": "emulator.read emulator.admin"}, 400, "invalid_scope"), ({"scope": ""}, 400, "invalid_scope"),
     ({"grant_type": "password"}, 400, "unsupported_grant_type")],
)
def test_a_refused_token_request_answers_the_oauth_error(emu, change, status, error):
    answer = requests.post(emu.token_url, data=_form(**change), timeout=5)
    assert answer.status_code == status and answer.json() == {"error": error}


def test_a_client_gets_only_its_granted_scopes_and_its_permissions(emu):
    emu.add_client("reader-app", "reader-app-secret", "only.read", permissions=["View sources"])
    token = requests.post(emu.token_url, data=_form(client_id="reader-app", client_secret="reader-app-secret",
                                                    scope="only.read"), timeout=5).json()["access_token"]
    headers = {"Authorization": "Bearer " + token}
    assert requests.get(emu.url + "/api/v1/sources", headers=headers, timeout=5).status_code == 200
    assert requests.get(emu.url + "/api/v1/datasets", headers=headers, timeout=5).status_code == 403


def test_the_api_token_mode_is_unchanged(emu):
    headers = {"Authorization": "Bearer " + emu.token}
    assert requests.get(emu.url + "/api/v1/sources", headers=headers, timeout=5).status_code == 200


def test_faults_on_route_token_apply_to_the_token_endpoint(emu):
    emu.inject({"route": "token", "status": 503, "times": 1})
    assert requests.post(emu.token_url, data=_form(), timeout=5).status_code == 503
    assert requests.post(emu.token_url, data=_form(), timeout=5).status_code == 200


def test_clients_and_the_token_lifetime_can_be_set_over_http(emu):
    added = requests.post(emu.url + "/_emulator/clients", json={"client_id": "http-app", "client_secret": "http-app-secret",
                                                               "scopes": "x.read"}, timeout=5)
    assert added.json() == {"status": "ok", "client_id": "http-app"}
    assert requests.post(emu.url + "/_emulator/token_lifetime", json={"seconds": 7}, timeout=5).json()["seconds"] == 7
    answer = requests.post(emu.token_url, data=_form(client_id="http-app", client_secret="http-app-secret", scope="x.read"),
                           timeout=5).json()
    assert answer["expires_in"] == 7
