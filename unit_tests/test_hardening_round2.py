"""Issue #18 (hardening, round 2): the endpoint as the HTTP client reads it, implausible tokens,
the token's echoed forms, start_date values that are not dates, Retry-After, check's message size,
and the signal handlers of the console script's first seconds."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining
from source_commsmining import errors
from source_commsmining.config import validate_config
from source_commsmining.errors import mask, register_secret
from source_commsmining.transport import retry_after_seconds
from unit_tests.conftest import config, run_check, run_cli


def _spec():
    import logging

    return SourceCommsmining().spec(logging.getLogger("test")).connectionSpecification


def _refused(**overrides) -> AirbyteTracedException:
    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(**overrides), _spec())
    assert raised.value.failure_type.value == "config_error"
    return raised.value


# ------------------------------------------------------------------ item 2: api_endpoint
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
    error = _refused(api_endpoint=endpoint)
    assert "`api_endpoint`" in error.message
    assert "s3cr3t-pass" not in error.message and "s3cr3t-pass" not in (error.internal_message or "")


def test_the_password_of_an_endpoint_is_never_printed(capsys):
    status = run_check(config(api_endpoint="https://user:s3cr3t-pass@acme.reinfer.io"), capsys)
    assert status["status"] == "FAILED" and "user name or password" in status["message"]
    assert "s3cr3t-pass" not in json.dumps(status)


@pytest.mark.parametrize("endpoint", ["https://acme.reinfer.io", "https://cloud.uipath.com/acme/T/reinfer_/api/", "http://127.0.0.1:8080", "http://[::1]:8000"])
def test_plain_tenant_urls_are_accepted(endpoint):
    validate_config(config(api_endpoint=endpoint), _spec())


# ------------------------------------------------------------------ items 3 and 5: tokens that are not tokens
@pytest.mark.parametrize("token, says", [("a", "too short"), ("stream", "too short"), ('tok"SECRET-9f8e7d', "quote"),
                                          ("tok\\SECRET-9f8e7d", "backslash"), ("tok'SECRET-9f8e7d", "quote"), (12345678901, "string")])
def test_implausible_tokens_are_refused_naming_api_token_without_printing_them(token, says):
    error = _refused(api_token=token)
    assert "`api_token`" in error.message and says in error.message
    if isinstance(token, str) and len(token) > 1:
        assert token not in error.message


@pytest.mark.parametrize("token", ["a", "stream"])
def test_a_short_token_garbles_no_message(token, capsys):
    messages = run_cli(["check"], {"config": config(api_token=token)}, capsys)
    statuses = [m for m in messages if m["type"] == "CONNECTION_STATUS"]
    assert statuses and "api_token`" in statuses[0]["connectionStatus"]["message"]  # `credentials.api_token` once migrated
    assert all("****" not in json.dumps(m) for m in messages), messages


# ------------------------------------------------------------------ items 3 and 4: echoed forms
TOKEN = "Zk9pQ2x4bTdyVn8wYWJjZGVmZ2hpamtsbW5vcA"


def test_a_token_cut_short_split_or_in_repr_form_is_masked():
    register_secret(TOKEN)
    for echoed in (TOKEN[:-2], TOKEN[2:], TOKEN[:19] + "\n" + TOKEN[19:], TOKEN[:19] + "\\n" + TOKEN[19:], repr({"Authorization": f"Bearer {TOKEN}"})):
        masked = mask(f"bad token: {echoed}.")
        assert not any(TOKEN[i : i + 16] in masked for i in range(len(TOKEN) - 15)), masked


def test_the_masked_stream_probes_catch_a_cut_short_echo_in_a_log_line():
    from source_commsmining.run import _MaskedStream

    register_secret(TOKEN)
    out = io.StringIO()
    _MaskedStream(out).write(json.dumps({"type": "LOG", "log": {"level": "ERROR", "message": f"bad token {TOKEN[:-2]}"}}) + "\n")
    assert TOKEN[:16] not in out.getvalue() and "****" in out.getvalue()


def test_protocol_words_survive_a_token_that_is_one(monkeypatch):
    # Registered on a copy of the masking state: other tests of this process print "stream_results".
    for name in ("_forms", "_fragments", "_fragile", "_probes", "_record_probes"):
        monkeypatch.setattr(errors, name, set(getattr(errors, name)))
    for name in ("_ordered", "PROBES", "RECORD_PROBES"):
        monkeypatch.setattr(errors, name, getattr(errors, name))
    register_secret("stream_results")
    line = json.dumps({"type": "RECORD", "record": {"stream": "stream_results", "data": {"text": "a stream_results token"}}})
    masked = json.loads(mask(line))
    assert masked["record"]["stream"] == "stream_results" and masked["record"]["data"]["text"] == "a **** token"


# ------------------------------------------------------------------ item 12: start_date
@pytest.mark.parametrize("value", ["2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T25:61:61Z", "0001-01-01T00:00:00Z"])
def test_a_start_date_that_is_not_a_date_is_refused_naming_it(value):
    assert "`start_date`" in _refused(start_date=value).message


def test_a_real_start_date_is_accepted():
    validate_config(config(start_date="2024-02-29T23:59:59.5+01:00"), _spec())


# ------------------------------------------------------------------ item 16
@pytest.mark.parametrize("value", ["1_000", "\u0663", "1e3", "\uff13", " 3 x"])
def test_a_retry_after_of_other_than_ascii_digits_is_not_a_wait(value):
    assert retry_after_seconds(value) is None


def test_check_names_the_first_few_unknown_streams_and_counts_the_rest(capsys):
    import requests_mock

    streams = [{"project": "acme", "dataset": "collections", "stream": f"s{i}"} for i in range(1000)]
    with requests_mock.Mocker() as m:
        m.get(requests_mock.ANY, status_code=404, json={"status": "error", "message": "no such stream"})
        m.get("https://acme.reinfer.io/api/v1/sources", json={"status": "ok", "sources": []})
        status = run_check(config(streams=streams, max_retries=0), capsys)
    assert status["status"] == "FAILED"
    assert "and 995 more" in status["message"] and len(status["message"]) < 3000, len(status["message"])


# ------------------------------------------------------------------ item 13: signals while starting
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_cdk_is_still_importing_ends_with_a_trace(signum, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "source-commsmining")
    (tmp_path / "config.json").write_text(json.dumps(config()))
    proc = subprocess.Popen([script, "check", "--config", str(tmp_path / "config.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # the CDK takes a second or two to import
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    traces = [json.loads(line) for line in out.splitlines() if line.startswith('{"type": "TRACE"') or line.startswith('{"type":"TRACE"')]
    assert traces and traces[-1]["trace"]["error"]["failure_type"] == "transient_error", out[-2000:]


# ------------------------------------------------------------------ issue #18 item 7: no cursor past the export's end
def test_the_comments_cursor_observes_a_bounded_copy_of_a_record_dated_past_its_export(caplog):
    from datetime import datetime, timedelta, timezone

    from airbyte_cdk.sources.types import Record, StreamSlice

    from source_commsmining.comments_state import MAX_SKEW, CursorBound

    observed = []
    bound = CursorBound(observed.append)
    end = "2026-01-01T00:00:00.000000Z"
    in_slice = StreamSlice(partition={"source_id": "s1", "parent_slice": {}}, cursor_slice={"start_time": "2024-01-01T00:00:00.000000Z", "end_time": end})

    def record(stamp, uid="s1.c1"):
        return Record(data={"uid": uid, "timestamp": stamp, "project": "acme", "source": "mail"}, stream_name="comments", associated_slice=in_slice)

    ordinary, future, later, odd = record("2025-06-01T00:00:00Z"), record("2099-01-01T00:00:00.000000Z"), record("2098-01-01T00:00:00Z", "s1.c2"), record("garbage")
    with caplog.at_level("WARNING", logger="airbyte"):
        for each in (ordinary, future, later, odd):
            bound(each)
    assert observed[0] is ordinary and observed[3] is odd  # within the export, or not a time: the CDK decides as before
    assert [r.data["timestamp"] for r in observed[1:3]] == [end, end]
    assert future.data["timestamp"] == "2099-01-01T00:00:00.000000Z"  # the delivered record is never changed
    assert observed[1].associated_slice is in_slice and observed[1].data["uid"] == "s1.c1"
    warnings = [r.getMessage() for r in caplog.records if "2099" in r.getMessage() or "2098" in r.getMessage()]
    assert len(warnings) == 1 and "acme/mail" in warnings[0] and "s1" in warnings[0] and "2099-01-01T00:00:00.000000Z" in warnings[0]

    # No slice end (or one further away): never more than MAX_SKEW ahead of now.
    far = StreamSlice(partition={"source_id": "s2"}, cursor_slice={"end_time": "2199-01-01T00:00:00.000000Z"})
    bound(Record(data={"timestamp": "2150-01-01T00:00:00Z"}, stream_name="comments", associated_slice=far))
    stamp = datetime.fromisoformat(observed[-1].data["timestamp"].replace("Z", "+00:00"))
    assert stamp <= datetime.now(timezone.utc) + MAX_SKEW and stamp > datetime.now(timezone.utc) + MAX_SKEW - timedelta(minutes=1)
