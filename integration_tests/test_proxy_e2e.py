"""Behind an HTTPS proxy with a custom CA bundle, as deployments run it: the console script with
HTTPS_PROXY and REQUESTS_CA_BUNDLE in its environment, against the emulator over TLS behind a real
CONNECT proxy on loopback (integration_tests/connect_proxy.py).

Every connection of every stream goes through the proxy (the emulator accepted connections from
the proxy only), the proxy never sees the token in clear, and a proxy that stalls, or a server
that stalls behind it, is bounded by the whole-response deadline: a transient_error after the
retries, not a hang.
"""

import subprocess
import time

import pytest

from integration_tests.conftest import CONNECTOR, TRIAGE, _parse, _write_files, configured_catalog

pytestmark = pytest.mark.e2e

ALL_STREAMS = ("sources", "stream_results", "stream_result_labels", "stream_result_fields", "datasets", "streams", "label_defs")


def _run(tmp_path, env, command, config, catalog=None, timeout=120):
    args = [CONNECTOR, command] + _write_files(tmp_path, config, catalog)
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    return result, _parse(result.stdout), time.monotonic() - started


def _config(setup, **extra):
    return {"api_endpoint": setup.url, "api_token": setup.emu.token, "streams": [TRIAGE], "retry_backoff_seconds": 0.05, **extra}


def _comments_catalog():
    return {"streams": [{
        "stream": {"name": "comments", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                   "source_defined_cursor": True, "default_cursor_field": ["timestamp"]},
        "sync_mode": "incremental", "destination_sync_mode": "append_dedup", "cursor_field": ["timestamp"], "primary_key": [["uid"]],
    }]}


def _errors(messages):
    return [m["trace"]["error"] for m in messages if m["type"] == "TRACE" and m["trace"].get("type") == "ERROR"]


def test_check_goes_through_the_proxy_and_verifies_the_custom_ca(tmp_path, proxied_emulator):
    setup = proxied_emulator()
    result, messages, _ = _run(tmp_path, setup.env, "check", _config(setup))
    status = [m["connectionStatus"] for m in messages if m["type"] == "CONNECTION_STATUS"]
    assert status and status[0]["status"] == "SUCCEEDED", result.stdout[-2000:] + result.stderr[-2000:]
    assert setup.proxy.connects and set(setup.proxy.connects) == {f"127.0.0.1:{setup.emu.port}"}
    assert setup.emu.request_log and setup.through_proxy_only()
    assert not setup.proxy.saw(setup.emu.token) and not setup.proxy.refused


def test_a_read_of_every_stream_goes_through_the_proxy_and_never_shows_it_the_token(tmp_path, proxied_emulator):
    setup = proxied_emulator()
    catalog = configured_catalog(*ALL_STREAMS)
    for entry in catalog["streams"]:
        if entry["stream"]["name"] in ("stream_result_labels", "stream_result_fields"):  # incremental only, as stream_results
            entry.update(sync_mode="incremental", destination_sync_mode="append", cursor_field=["created_at"])
    catalog["streams"] += _comments_catalog()["streams"]
    result, messages, _ = _run(tmp_path, setup.env, "read", _config(setup), catalog)
    assert result.returncode == 0 and not _errors(messages), result.stdout[-3000:] + result.stderr[-2000:]
    read = {m["record"]["stream"] for m in messages if m["type"] == "RECORD"}
    assert read >= set(ALL_STREAMS) | {"comments"}, f"no records of {set(ALL_STREAMS) | {'comments'} - read}"
    routes = {path.split("?")[0] for _, path, _ in setup.emu.request_log}
    for route in ("/api/v1/sources", "/api/v1/datasets", "/api/v1/datasets/acme/collections", "/streams", "/results", "/advance", "/comments"):
        assert any(route in path for path in routes), (route, sorted(routes))
    # Each stream's requester has a session of its own: many tunnels, all to the emulator, all through the proxy.
    assert len(setup.proxy.connects) >= 3 and set(setup.proxy.connects) == {f"127.0.0.1:{setup.emu.port}"}
    assert setup.through_proxy_only(), (setup.emulator_peers, setup.proxy.upstream_ports)
    assert not setup.proxy.saw(setup.emu.token) and not setup.proxy.refused


@pytest.mark.runs_long(13)
@pytest.mark.parametrize("mode, fault", [("trickle", None), ("silent", None), ("forward", "hang")],
                         ids=["proxy-trickles-its-connect-answer", "proxy-never-answers", "server-hangs-behind-the-proxy"])
def test_a_stalled_proxy_is_bounded_by_the_response_deadline(tmp_path, proxied_emulator, mode, fault):
    from commsmining_emulator import Fault

    setup = proxied_emulator(mode)
    if fault:
        setup.emu.inject(Fault(route="*", kind=fault, seconds=60))  # headers never come
    env = {**setup.env, "SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS": "1.5"}
    result, messages, elapsed = _run(tmp_path, env, "read", _config(setup, max_retries=1), configured_catalog("stream_results"), timeout=90)
    errors = _errors(messages)
    assert result.returncode != 0 and errors, result.stdout[-2000:] + result.stderr[-2000:]
    assert errors[-1]["failure_type"] == "transient_error", errors[-1]
    assert "within 1.5 s" in result.stdout, errors[-1]["message"]  # the deadline ended it, not a connect or read timeout
    assert elapsed < 45, f"took {elapsed:.0f} s"
    assert setup.proxy.connects and not setup.proxy.saw(setup.emu.token)
    assert not [m for m in messages if m["type"] == "RECORD"]


def test_a_plain_http_loopback_endpoint_is_never_sent_to_a_proxy(tmp_path):
    """HTTP_PROXY would carry a plain-http request, token and all, to the proxy in clear: loopback calls go direct."""
    from commsmining_emulator import Emulator

    from integration_tests.conftest import _env, connector_config
    from integration_tests.connect_proxy import PROXY_ENV_NAMES, ConnectProxy

    with Emulator(seed=7, comments=50) as emu, ConnectProxy() as proxy:
        env = {k: v for k, v in _env().items() if k not in PROXY_ENV_NAMES}
        env.update(HTTP_PROXY=proxy.url, http_proxy=proxy.url, ALL_PROXY=proxy.url)
        result, messages, _ = _run(tmp_path, env, "read", connector_config(emu), configured_catalog("sources", "stream_results"))
        assert result.returncode == 0 and not _errors(messages), result.stdout[-2000:]
        assert emu.request_log and not proxy.refused and not proxy.connects and not proxy.client_bytes


def test_an_external_application_signs_in_and_reads_through_the_proxy_without_showing_it_a_secret(tmp_path, proxied_emulator):
    """The token request of an External Application goes through the same proxy, under the same custom CA,
    as every API call: the proxy sees tunnels only, never the client secret nor an access token."""
    from commsmining_emulator.identity import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPES, TOKEN_PATH

    setup = proxied_emulator()
    config = {
        "api_endpoint": setup.url,
        "credentials": {"auth_type": "oauth2_client_credentials", "client_id": DEFAULT_CLIENT_ID,
                        "client_secret": DEFAULT_CLIENT_SECRET, "scopes": " ".join(DEFAULT_SCOPES),
                        "token_url": setup.url + TOKEN_PATH},
        "streams": [TRIAGE],
        "retry_backoff_seconds": 0.05,
    }
    result, messages, _ = _run(tmp_path, setup.env, "read", config, configured_catalog("sources", "stream_results"))
    assert result.returncode == 0 and not _errors(messages), result.stdout[-3000:] + result.stderr[-2000:]
    assert {m["record"]["stream"] for m in messages if m["type"] == "RECORD"} == {"sources", "stream_results"}
    paths = [path.split("?")[0] for _, path, _ in setup.emu.request_log]
    assert TOKEN_PATH in paths and any(path.endswith("/advance") for path in paths), sorted(set(paths))
    assert setup.through_proxy_only(), (setup.emulator_peers, setup.proxy.upstream_ports)
    issued = list(setup.emu.identity.issued)
    assert issued, "no access token was issued"
    for secret in [DEFAULT_CLIENT_SECRET, *issued]:
        assert not setup.proxy.saw(secret)
        assert secret not in result.stdout and secret not in result.stderr
