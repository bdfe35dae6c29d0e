"""Tokens that are not tokens are refused; every form in which output could echo a token is masked, and protocol words survive."""

import io
import json

import pytest

from source_commsmining import errors
from source_commsmining.errors import mask, register_secret
from unit_tests.conftest import config, refused_config, run_cli



@pytest.mark.parametrize("token, says", [("a", "too short"), ("stream", "too short"), ('tok"SECRET-9f8e7d', "quote"),
                                          ("tok\\SECRET-9f8e7d", "backslash"), ("tok'SECRET-9f8e7d", "quote"), (12345678901, "string")])
def test_implausible_tokens_are_refused_naming_api_token_without_printing_them(token, says):
    error = refused_config(api_token=token)
    assert "`api_token`" in error.message and says in error.message
    if isinstance(token, str) and len(token) > 1:
        assert token not in error.message


@pytest.mark.parametrize("token", ["a", "stream"])
def test_a_short_token_garbles_no_message(token, capsys):
    messages = run_cli(["check"], {"config": config(api_token=token)}, capsys)
    statuses = [m for m in messages if m["type"] == "CONNECTION_STATUS"]
    assert statuses and "api_token`" in statuses[0]["connectionStatus"]["message"]  # `credentials.api_token` once migrated
    assert all("****" not in json.dumps(m) for m in messages), messages


TOKEN = "Zk9pQ2x4bTdyVn8wYWJjZGVmZ2hpamtsbW5vcA"


def test_a_token_cut_short_split_or_in_repr_form_is_masked():
    register_secret(TOKEN)
    for echoed in (TOKEN[:-2], TOKEN[2:], TOKEN[:19] + "\n" + TOKEN[19:], TOKEN[:19] + "\\n" + TOKEN[19:], repr({"Authorization": f"Bearer {TOKEN}"})):
        masked = mask(f"bad token: {echoed}.")
        assert not any(TOKEN[i : i + 16] in masked for i in range(len(TOKEN) - 15)), masked


def test_the_masked_stream_probes_catch_a_cut_short_echo_in_a_log_line():
    from source_commsmining.masking import MaskedStream

    register_secret(TOKEN)
    out = io.StringIO()
    MaskedStream(out).write(json.dumps({"type": "LOG", "log": {"level": "ERROR", "message": f"bad token {TOKEN[:-2]}"}}) + "\n")
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
