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
