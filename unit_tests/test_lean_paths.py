"""The performance shortcuts (issue #5) give the same answers as the slow paths they replace."""

import subprocess
import sys

import airbyte_protocol_dataclasses.models.airbyte_protocol as protocol_dataclasses
import attributes_doc._base as attributes_doc_original
import pytest
import requests
import requests_mock

from source_commsmining import quick_start
from source_commsmining.api import CmApi, CmStream
from source_commsmining.source import SourceCommsmining
from unit_tests.conftest import TOKEN, config, stream_url


# ------------------------------------------------------------------ quick_start (attribute docs)
class Documented:
    plain = 1
    """The plain one."""

    typed: int = 2
    """The typed one."""

    undocumented = 3
    not_a_doc: int = 4
    42

    class Inner:
        deep: str = "x"
        """Nested class docs."""


class Child(Documented):
    typed: int = 5
    """Overridden by the child."""

    extra = 6
    """Child only."""


def make_local_class():
    class Local:
        inside = 1
        """A class defined in a function."""

    return Local


class WithFString:
    value = 1
    f"""{value} is not a docstring"""


@pytest.mark.parametrize("cls", [Documented, Documented.Inner, Child, make_local_class(), int, object])
def test_attribute_docs_equal_the_original(cls):
    assert quick_start.get_attributes_doc(cls) == attributes_doc_original.get_attributes_doc(cls)


def test_attribute_docs_are_found_at_all():
    """Guards the equality test above against both sides returning {}."""
    assert quick_start.get_attributes_doc(Child) == {
        "plain": "The plain one.",
        "typed": "Overridden by the child.",
        "extra": "Child only.",
    }


def test_an_f_string_after_an_attribute_raises_like_the_original():
    with pytest.raises(attributes_doc_original.FStringFound):
        attributes_doc_original.get_attributes_doc(WithFString)
    with pytest.raises(attributes_doc_original.FStringFound):
        quick_start.get_attributes_doc(WithFString)


def test_attribute_docs_equal_the_original_for_every_protocol_class():
    classes = [value for value in vars(protocol_dataclasses).values() if isinstance(value, type)]
    assert len(classes) > 30
    for cls in classes:
        assert quick_start.get_attributes_doc(cls) == attributes_doc_original.get_attributes_doc(cls), cls


def test_the_connector_process_uses_it_and_serializes_the_same():
    """In a fresh interpreter, importing the package installs the fast path before serpyco-rs loads."""
    probe = (
        "import source_commsmining, serpyco_rs._utils as u, attributes_doc;"
        "from source_commsmining import quick_start;"
        "assert u.get_attributes_doc.__wrapped__ is quick_start.get_attributes_doc;"
        "from airbyte_cdk.models import AirbyteMessageSerializer, AirbyteMessage, Type, AirbyteLogMessage, Level;"
        "print(AirbyteMessageSerializer.dump(AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=Level.INFO, message='m'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'type': 'LOG', 'log': {'level': 'INFO', 'message': 'm'}}"


# ------------------------------------------------------------------ api._settle_session
def _api(monkeypatch, **env):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    source = SourceCommsmining(catalog=None, config=config(), state=None, config_path=None)
    return source._api(source._config)


def test_the_environment_proxy_and_ca_bundle_are_honoured(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    api = _api(monkeypatch, HTTPS_PROXY="http://proxy.internal:3128", REQUESTS_CA_BUNDLE=str(bundle))
    session = api._requesters["results_requester"]._http_client._session
    assert session.trust_env is False  # asked once, not per call
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    assert session.verify == str(bundle)


def test_no_proxy_still_bypasses_the_proxy(monkeypatch):
    api = _api(monkeypatch, HTTPS_PROXY="http://proxy.internal:3128", NO_PROXY="acme.reinfer.io")
    session = api._requesters["results_requester"]._http_client._session
    assert "https" not in session.proxies


def test_every_call_and_every_retry_still_carries_the_token(monkeypatch, no_sleep):
    api = _api(monkeypatch)
    cm = CmStream("acme", "collections", "triage")
    body = {"status": "ok", "results": [], "continuation": "c1", "more_results": False, "num_filtered": 0}
    with requests_mock.Mocker() as mock:
        mock.get(stream_url(), [{"status_code": 503, "json": {}}, {"json": body}])
        mock.post(stream_url(action="advance"), json={"status": "ok"})
        api.results(cm)
        api.advance(cm, "c1")
    assert len(mock.request_history) == 3
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in mock.request_history)
    assert isinstance(api._requesters["advance_requester"]._http_client._session, requests.Session)


# ------------------------------------------------------------------ messages.to_line and the read entrypoint
def _record(data, **fields):
    from airbyte_cdk.models import AirbyteMessage, AirbyteRecordMessage, Type

    return AirbyteMessage(type=Type.RECORD, record=AirbyteRecordMessage(stream="stream_results", data=data, emitted_at=7, **fields))


@pytest.mark.parametrize(
    "message",
    [
        _record({"uid": "a.1", "subject": None, "labels": [], "comment": {"x": None, "y": [None, {"z": None}]}}),
        _record({"text": "caf\u00e9 \u2028 \U0001f600", "n": 1.5, "big": 2**63 - 1, "t": True}),
        _record({"too_big_for_orjson": 2**70}),
        _record({"uid": "a.1"}, namespace="ns"),
        _record({}),
    ],
)
def test_to_line_writes_records_exactly_as_the_cdk(message):
    from airbyte_cdk.entrypoint import AirbyteEntrypoint

    from source_commsmining.messages import to_line

    assert to_line(message) == AirbyteEntrypoint.airbyte_message_to_string(message)


def test_to_line_writes_other_messages_exactly_as_the_cdk():
    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from airbyte_cdk.models import AirbyteStreamStatus

    from source_commsmining import messages

    for message in (
        messages.state({"states": [{"partition": {"project": "p"}, "cursor": {"continuation": "c", "created_at": None}}]}),
        messages.log("hello"),
        messages.status(AirbyteStreamStatus.RUNNING),
    ):
        assert messages.to_line(message) == AirbyteEntrypoint.airbyte_message_to_string(message)


def test_the_read_entrypoint_prints_what_the_cdk_entrypoint_prints(tmp_path, monkeypatch):
    """CommsminingEntrypoint.run('read') against AirbyteEntrypoint.run on the same source and API."""
    import json

    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    from source_commsmining.run import CommsminingEntrypoint
    from unit_tests.conftest import batch, catalog

    monkeypatch.setattr("source_commsmining.messages.now_ms", lambda: 1)
    monkeypatch.setattr("airbyte_cdk.utils.stream_status_utils.ab_datetime_now", lambda: _FixedNow(), raising=False)
    paths = {"config": tmp_path / "config.json", "catalog": tmp_path / "catalog.json"}
    paths["config"].write_text(json.dumps(config(rewind_on_resume=False)))
    paths["catalog"].write_text(json.dumps(ConfiguredAirbyteCatalogSerializer.dump(catalog("stream_results"))))
    argv = ["read", "--config", str(paths["config"]), "--catalog", str(paths["catalog"])]

    def lines(run_method):
        cfg = SourceCommsmining.read_config(str(paths["config"]))
        source = SourceCommsmining(catalog=None, config=cfg, state=None, config_path=str(paths["config"]))
        entrypoint = CommsminingEntrypoint(source)
        with requests_mock.Mocker() as mock:
            mock.get(stream_url(), [{"json": batch(range(3), "c1", True)}, {"json": batch([], "c1", False)}])
            mock.post(stream_url(action="advance"), json={"status": "ok"})
            return [_without_times(json.loads(line)) for line in run_method(entrypoint, entrypoint.parse_args(argv))]

    ours, cdks = lines(CommsminingEntrypoint.run), lines(AirbyteEntrypoint.run)
    assert sum(1 for line in ours if line["type"] == "RECORD") == 3
    assert ours == cdks


class _FixedNow:
    def to_epoch_millis(self):
        return 1

    def timestamp(self):
        return 0.001


def _without_times(message):
    """emitted_at differs between two runs; everything else must not."""
    for section in message.values():
        if isinstance(section, dict):
            section.pop("emitted_at", None)
    return message


def test_only_the_static_bearer_token_of_the_manifest_is_fixed(monkeypatch):
    """A token that can change (a session token provider) must keep its live authenticator."""
    from airbyte_cdk.sources.declarative.auth.token import BearerAuthenticator

    from source_commsmining.api import _FixedHeaderAuth, _settle_session

    api = _api(monkeypatch)
    assert isinstance(api._requesters["results_requester"]._http_client._session.auth, _FixedHeaderAuth)

    class RefreshingProvider:
        def get_token(self):
            return "changes"

    source = SourceCommsmining(catalog=None, config=config(), state=None, config_path=None)
    requester = source._api(source._config)._requesters["results_requester"]
    live = BearerAuthenticator(token_provider=RefreshingProvider(), config={}, parameters={})
    requester._http_client._session.auth = live
    _settle_session(requester)
    assert requester._http_client._session.auth is live
