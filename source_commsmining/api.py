"""The calls `stream_results` makes, on top of the requesters declared in manifest.yaml.

Retries, backoff, timeouts and error messages come from the manifest's error handler (the
CDK's HttpClient); this module adds what the manifest cannot say: which body each call sends,
and that a 2xx body must be a real answer (see envelope.py).

The requesters' URL, query and headers are Jinja templates that the CDK renders (and parses
back with ast.literal_eval) on every call; for one CM stream they never change during a sync,
so `_Call` renders them once per stream and sends each batch's request straight to the
requester's HttpClient. That was a sixth of the connector's CPU per batch.

For the same reason `_settle_session` answers once per requester two questions that requests
and the CDK would otherwise ask on every call: which proxy and CA bundle the environment
wants for the API host, and what the Authorization header is (the CDK renders the token's
Jinja template per request).
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import requests

from airbyte_cdk.sources.declarative.auth.token import BearerAuthenticator
from airbyte_cdk.sources.declarative.auth.token_provider import InterpolatedStringTokenProvider
from airbyte_cdk.sources.declarative.models.declarative_component_schema import (
    HttpRequester as HttpRequesterModel,
)
from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester
from airbyte_cdk.sources.types import StreamSlice

from source_commsmining.envelope import decode


class _FixedHeaderAuth(requests.auth.AuthBase):
    """A static bearer token's header, rendered once (still re-applied on every retry)."""

    def __init__(self, header: Mapping[str, str]):
        self._header = dict(header)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._header)
        return request

    def get_auth_header(self) -> Mapping[str, str]:
        return self._header


def _settle_session(requester: HttpRequester) -> None:
    """Fixes the environment's proxy/TLS settings and the auth header of one requester's session.

    Every call goes to the same host, and neither the environment (HTTPS_PROXY, NO_PROXY,
    REQUESTS_CA_BUNDLE) nor a bearer token changes during a sync, so asking once is the same
    answer for less work: requests scans os.environ twice per call otherwise.
    """
    session = requester._http_client._session
    if session.trust_env:
        settings = session.merge_environment_settings(requester.get_url_base(), {}, None, None, None)
        session.proxies, session.verify, session.cert = settings["proxies"], settings["verify"], settings["cert"]
        session.trust_env = False
    auth = session.auth
    # Only a bearer token read from the config is fixed; a session or refreshing token must stay live.
    if isinstance(auth, BearerAuthenticator) and isinstance(auth.token_provider, InterpolatedStringTokenProvider):
        session.auth = _FixedHeaderAuth(auth.get_auth_header())

REQUESTERS = ("sources_requester", "stream_requester", "results_requester", "advance_requester", "reset_requester")


@dataclass(frozen=True)
class CmStream:
    """One Communications Mining stream, the unit `stream_results` partitions and checkpoints by."""

    project: str
    dataset: str
    stream: str

    @property
    def key(self) -> str:
        return f"{self.project}/{self.dataset}/{self.stream}"

    def as_partition(self) -> Dict[str, str]:
        return {"project": self.project, "dataset": self.dataset, "stream": self.stream}

    def as_slice(self) -> StreamSlice:
        return StreamSlice(partition={"cm_stream": self.as_partition()}, cursor_slice={})


@dataclass(frozen=True)
class _Call:
    """One endpoint of one CM stream, rendered from the manifest once."""

    requester: HttpRequester
    url: str
    headers: Mapping[str, Any]
    params: Mapping[str, Any]

    @classmethod
    def render(cls, requester: HttpRequester, stream_slice: Optional[StreamSlice]) -> "_Call":
        # The same rendering HttpRequester.send_request does (unit_tests/test_cdk_contract.py pins it).
        return cls(
            requester=requester,
            url=requester._get_url(stream_slice=stream_slice),
            headers=requester._request_headers(None, stream_slice, None, None),
            params=requester._request_params(None, stream_slice, None, None),
        )

    def send(self, body: Optional[Mapping[str, Any]] = None, params: Optional[Mapping[str, Any]] = None) -> requests.Response:
        """`params` (rendered values already) replace the rendered ones of the same name for this call."""
        _, response = self.requester._http_client.send_request(
            http_method=self.requester.get_method().value,
            url=self.url,
            request_kwargs={"stream": self.requester.stream_response},
            headers=self.headers,
            params={**self.params, **params} if params else self.params,
            json=body,
            dedupe_query_params=True,
        )
        return response


class CmApi:
    """Stream calls for one reader thread (each thread gets its own HTTP session)."""

    def __init__(self, requesters: Mapping[str, HttpRequester]):
        self._requesters = requesters
        for requester in requesters.values():
            _settle_session(requester)
        self._calls: Dict[Tuple[str, str], _Call] = {}

    @classmethod
    def from_manifest(cls, factory: Any, definitions: Mapping[str, Any], config: Mapping[str, Any]) -> "CmApi":
        return cls(
            {
                name: factory.create_component(HttpRequesterModel, definitions[name], config, name="stream_results")
                for name in REQUESTERS
            }
        )

    def _call(self, name: str, cm: CmStream) -> _Call:
        call = self._calls.get((name, cm.key))
        if call is None:
            call = self._calls[(name, cm.key)] = _Call.render(self._requesters[name], cm.as_slice())
        return call

    def _send(self, name: str, cm: CmStream, body: Optional[Mapping[str, Any]] = None) -> requests.Response:
        return self._call(name, cm).send(body)

    def list_sources(self) -> Any:
        return decode(_Call.render(self._requesters["sources_requester"], None).send(), required=("sources",))["sources"]

    def get_stream(self, cm: CmStream) -> Mapping[str, Any]:
        return decode(self._send("stream_requester", cm), required=("stream",))["stream"]

    def results(self, cm: CmStream, at_most: Optional[int] = None) -> Mapping[str, Any]:
        """The next batch; `at_most` lowers the configured `max_results` for this call (a record cap's last batch)."""
        call = self._call("results_requester", cm)
        params = None
        if at_most is not None and at_most < int(call.params.get("max_results") or 32):
            params = {"max_results": str(max(1, at_most))}
        return decode(call.send(params=params), required=("results", "continuation"))

    def advance(self, cm: CmStream, continuation: str) -> None:
        decode(self._send("advance_requester", cm, {"sequence_id": continuation}))

    def reset(self, cm: CmStream, created_at: str) -> bool:
        """Moves the stream back to `created_at`; False when the token may not reset (403)."""
        response = self._send("reset_requester", cm, {"to_comment_created_at": created_at})
        if response is not None and response.status_code == 403:
            return False
        decode(response)
        return True
