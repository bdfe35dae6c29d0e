"""Signing in as an External Application (OAuth client credentials), against the emulator's token endpoint.

The emulator serves `POST /identity_/connect/token` on its own server (identity.py): tokens with a
configurable lifetime, clients with a secret and granted scopes, expired tokens answered with 401.
"""

import copy
from typing import Any, Dict

import pytest

from commsmining_emulator import Emulator
from commsmining_emulator.identity import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPES
from integration_tests.conftest import TRIAGE, configured_catalog, run_connector

RESULTS_TABLES = ("stream_results", "stream_result_labels", "stream_result_fields")


def oauth_config(emu: Emulator, streams=(TRIAGE,), **extra: Any) -> Dict[str, Any]:
    cfg = {
        "api_endpoint": emu.url,
        "credentials": {
            "auth_type": "oauth2_client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "scopes": " ".join(DEFAULT_SCOPES),
            "token_url": emu.token_url,
        },
        "streams": list(streams),
        "retry_backoff_seconds": 0.05,
    }
    cfg.update(extra)
    return cfg


def _results_catalog() -> Dict[str, Any]:
    """Every results table, incrementally (the only mode they offer)."""
    streams = []
    for table in RESULTS_TABLES:
        entry = copy.deepcopy(configured_catalog("stream_results")["streams"][0])
        entry["stream"]["name"] = table
        streams.append(entry)
    return {"streams": streams}


def _status(run) -> Dict[str, Any]:
    return run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]


def _errors(run):
    return [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"].get("type") == "ERROR"]


def _no_secret_printed(emu: Emulator, run) -> None:
    printed = run.raw + run.stderr
    assert DEFAULT_CLIENT_SECRET not in printed
    leaked = [token for token in emu.identity.issued if token in printed]
    assert not leaked, f"{len(leaked)} access token(s) printed"


@pytest.mark.runs_long(20)
def test_a_sync_across_several_token_expiries_with_16_parallel_streams_loses_nothing_and_prints_no_secret():
    """16 CM streams read in parallel into every results table while the access token lasts 1 s: the token is
    renewed several times (before expiry, and after a 401 for a request that raced its expiry), and every
    comment the emulator counts as consumed is delivered, to every table."""
    with Emulator(seed=11, comments=150, latency_ms=25, token_lifetime=1) as emu:
        names = [f"s{i:02d}" for i in range(16)]
        for name in names:
            emu.create_stream("acme", "collections", name, model=True, at="start")
        streams = [{"project": "acme", "dataset": "collections", "stream": name} for name in names]
        run = run_connector(
            "read", oauth_config(emu, streams, parallel_streams=16, max_results=10, start_position="current"),
            _results_catalog(), timeout=240,
        )
        assert run.returncode == 0, (_errors(run), run.stderr[-2000:])
        assert len(emu.identity.issued) >= 3, "the sync should outlive several tokens"
        assert emu.stats()["by_status"].get(401, 0) <= 16 * 2, "a 401 is renewed once, not in a loop"
        for name in names:
            consumed = emu.consumed_uids("acme", "collections", name)
            assert len(consumed) == 150
            delivered = {r["data"]["uid"] for r in run.records if r["stream"] == "stream_results" and r["data"]["stream"] == name}
            assert delivered == set(consumed), name
        labelled = {(r["data"]["stream"], r["data"]["uid"]) for r in run.records if r["stream"] == "stream_result_labels"}
        assert labelled and {s for s, _ in labelled} == set(names)
        assert any(r["stream"] == "stream_result_fields" for r in run.records)
        _no_secret_printed(emu, run)


def test_check_signs_in_with_an_external_application_and_one_token_serves_every_call(emulator):
    run = run_connector("check", oauth_config(emulator), extra_args=["--debug"])  # --debug logs every request's headers
    assert _status(run)["status"] == "SUCCEEDED", _status(run)
    assert len(emulator.identity.issued) == 1
    assert "Making outbound API request" in run.raw  # the debug log is there, its Authorization header masked
    _no_secret_printed(emulator, run)


@pytest.mark.parametrize(
    "change, field, says",
    [
        ({"client_secret": "not-the-emulator-secret"}, "`credentials.client_secret`", "invalid_client"),
        ({"client_id": "someone-else"}, "`credentials.client_id`", "invalid_client"),
        ({"scopes": "emulator.read emulator.admin"}, "`credentials.scopes`", "invalid_scope"),
    ],
)
def test_a_refused_token_request_fails_check_naming_the_setting_to_fix(emulator, change, field, says):
    cfg = oauth_config(emulator)
    cfg["credentials"].update(change)
    run = run_connector("check", cfg)
    status = _status(run)
    assert status["status"] == "FAILED" and field in status["message"] and says in status["message"], status
    assert "not-the-emulator-secret" not in run.raw + run.stderr


def test_a_token_endpoint_that_is_down_is_retried_then_fails_as_transient_naming_token_url(emulator):
    emulator.inject({"route": "token", "status": 503, "times": 1})
    run = run_connector("check", oauth_config(emulator))
    assert _status(run)["status"] == "SUCCEEDED", _status(run)  # one 503, retried
    emulator.inject({"route": "token", "status": 503})
    # Another application: an in-process run keeps the process's token, as a sync does between its streams.
    emulator.add_client("another-app", "another-app-secret", DEFAULT_SCOPES)
    cfg = oauth_config(emulator, max_retries=1)
    cfg["credentials"].update(client_id="another-app", client_secret="another-app-secret")
    run = run_connector("read", cfg, configured_catalog("stream_results"))
    errors = _errors(run)
    assert run.returncode != 0 and errors
    assert errors[0]["failure_type"] == "transient_error" and "`credentials.token_url`" in errors[0]["message"], errors
    assert emulator.consumed_uids("acme", "collections", "triage") == []


def test_a_token_endpoint_too_slow_fails_within_the_response_deadline(emulator):
    emulator.inject({"route": "token", "kind": "delay", "seconds": 30})
    emulator.add_client("slow-app", "slow-app-secret-1", DEFAULT_SCOPES)
    cfg = oauth_config(emulator, max_retries=0)
    cfg["credentials"].update(client_id="slow-app", client_secret="slow-app-secret-1")
    run = run_connector(
        "read", cfg, configured_catalog("stream_results"),
        env={"SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS": "1"}, timeout=25,
    )
    errors = _errors(run)
    assert run.returncode != 0 and errors and errors[0]["failure_type"] == "transient_error", errors
    assert "in time" in errors[0]["message"] and "`credentials.token_url`" in errors[0]["message"]


def test_an_old_config_with_a_top_level_api_token_still_reads_and_prints_no_config(emulator):
    cfg = {"api_endpoint": emulator.url, "api_token": emulator.token, "streams": [TRIAGE], "retry_backoff_seconds": 0.05}
    run = run_connector("read", cfg, configured_catalog("stream_results"))
    assert run.returncode == 0, _errors(run)
    assert len(run.records) == len(emulator.consumed_uids("acme", "collections", "triage")) > 0
    assert not [m for m in run.messages if m["type"] == "CONTROL"]
    assert emulator.token not in run.raw + run.stderr


def test_an_access_token_the_api_keeps_refusing_is_renewed_once_then_fails_naming_the_application():
    with Emulator(seed=7, comments=20, token_lifetime=0) as emu:  # every token is expired on arrival
        run = run_connector("check", oauth_config(emu))
        status = _status(run)
        assert status["status"] == "FAILED" and "External Application" in status["message"], status
        assert "`credentials.scopes`" in status["message"]
        # Renewed once, not in a loop (a token that lasts 0 s is renewed at every use, hence more than two tokens).
        assert emu.stats()["by_status"].get(401) == 2 and len(emu.identity.issued) <= 4
        _no_secret_printed(emu, run)
