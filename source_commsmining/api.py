"""The calls `stream_results` makes, on top of the requesters declared in manifest.yaml.

Retries, backoff, timeouts, the response deadline and error messages come from the manifest's
requesters (the CDK's HttpClient, sent through the public HttpRequester.send_request); this module
adds what the manifest cannot say: which body each call sends, and that a 2xx body must be a real
answer (see envelope.py).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import requests

from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.models.declarative_component_schema import (
    CustomRequester as CustomRequesterModel,
)
from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester
from airbyte_cdk.sources.types import StreamSlice
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import roles
from source_commsmining.envelope import BadResponse, decode
from source_commsmining.errors import describe
from source_commsmining.timestamps import instant

REQUESTERS = (
    "sources_requester", "stream_requester", "results_requester", "advance_requester", "reset_requester", "export_requester"
)
DEFAULT_MAX_RESULTS = 32


@dataclass(frozen=True)
class Refusal:
    """A reset the API refused (403 or 400) and the reason it gave, masked."""

    status: int
    reason: str


@dataclass(frozen=True)
class Uploaded:
    """The export's answer: the comments of a dataset uploaded from a time on, in upload order, up to a time (all of
    them if `complete`), or why they could not be had (`unavailable`)."""

    comments: Tuple[Mapping[str, Any], ...] = ()
    complete: bool = True
    unavailable: Optional[str] = None


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

    def as_slice(self, extra_fields: Optional[Mapping[str, Any]] = None) -> StreamSlice:
        """The slice the manifest's stream requesters are rendered with; `extra_fields.max_results`
        lowers the batch size of one /results call (the manifest reads it)."""
        return StreamSlice(partition={"cm_stream": self.as_partition()}, cursor_slice={}, extra_fields=extra_fields)


@dataclass
class _Endpoint:
    """One of the manifest's stream requesters, as two objects built from its definition.

    `declared` is the requester as the manifest declares it: it renders the path, the query and the
    headers (the public get_path / get_request_params / get_request_headers). `bare` is the same
    definition without those templates: it sends what `declared` rendered (the public
    send_request's path, request_params and request_headers), with the manifest's authenticator,
    retries, timeouts and error handling. For one CM stream they never change during a sync, so
    they are rendered once per slice rather than on every call (the CDK renders every Jinja
    template again per request: 83k instructions per record, 12% of the connector's CPU; kept because
    the CPU guard of `make bench` needs it, benchmarks/README.md).
    """

    declared: HttpRequester
    bare: HttpRequester
    rendered: Dict[Tuple[str, Tuple[Tuple[str, Any], ...]], Tuple[str, Mapping[str, Any], Mapping[str, Any]]] = field(
        default_factory=dict
    )

    def render(self, cm: Optional["CmStream"], stream_slice: Optional[StreamSlice]) -> Tuple[str, Mapping[str, Any], Mapping[str, Any]]:
        """The path, query and headers `declared` renders for this stream and slice, rendered once."""
        key = ("" if cm is None else cm.key, tuple(sorted((stream_slice.extra_fields or {}).items())) if stream_slice else ())
        rendered = self.rendered.get(key)
        if rendered is None:
            rendered = self.rendered[key] = (
                self.declared.get_path(stream_slice=stream_slice),
                self.declared.get_request_params(stream_slice=stream_slice),
                self.declared.get_request_headers(stream_slice=stream_slice),
            )
        return rendered

    def send(self, cm: Optional["CmStream"], stream_slice: Optional[StreamSlice], body: Optional[Mapping[str, Any]]) -> Optional[requests.Response]:
        path, params, headers = self.render(cm, stream_slice)
        return self.bare.send_request(
            stream_slice=stream_slice, path=path, request_params=params, request_headers=headers, request_body_json=body
        )


_RENDERED_OPTIONS = ("path", "request_parameters", "request_headers")


class CmApi:
    """Stream calls for one reader thread (each thread gets its own requesters, so its own HTTP session)."""

    def __init__(self, endpoints: Mapping[str, _Endpoint], max_results: int = DEFAULT_MAX_RESULTS):
        self._endpoints = endpoints
        self._max_results = max_results
        self._positions: Dict[str, str] = {}  # the continuation each stream was last advanced to, for messages

    @classmethod
    def from_manifest(cls, factory: Any, definitions: Mapping[str, Any], config: Mapping[str, Any]) -> "CmApi":
        try:
            max_results = int(config.get("max_results") or DEFAULT_MAX_RESULTS)
        except (TypeError, ValueError):
            max_results = DEFAULT_MAX_RESULTS

        def build(definition: Mapping[str, Any]) -> HttpRequester:
            # The manifest's requester class (deadline_requester.DeadlineHttpRequester), with the factory's
            # message repository, which a custom component is not given otherwise.
            return factory.create_component(
                CustomRequesterModel, definition, config, name="stream_results", message_repository=factory.get_message_repository()
            )

        endpoints = {}
        for name in REQUESTERS:
            definition = definitions[name]
            # The base URL is one literal for the whole sync: the CDK stops rendering a plain string.
            bare = {key: value for key, value in definition.items() if key not in _RENDERED_OPTIONS}
            base_url = config.get("api_base_url")
            if isinstance(base_url, str) and "{" not in base_url:
                bare["url_base"] = base_url
            endpoints[name] = _Endpoint(declared=build(definition), bare=build({**bare, "path": ""}))
        return cls(endpoints, max_results)

    def requester(self, name: str) -> HttpRequester:
        """The requester that sends `name`'s calls (its authenticator, error handler and backoff)."""
        return self._endpoints[name].bare

    def _send(
        self, name: str, stream_slice: Optional[StreamSlice], body: Optional[Mapping[str, Any]] = None, cm: Optional["CmStream"] = None
    ) -> Optional[requests.Response]:
        try:
            return self._endpoints[name].send(cm, stream_slice, body)
        except AirbyteTracedException as error:
            # Retries spent (or a refusal): the CDK's message names the request, not which stream was being read.
            if cm is not None and error.message and cm.key not in error.message:
                error.message = f"stream_results, stream {cm.key}: {error.message}"
            raise

    def list_sources(self) -> Any:
        return decode(self._send("sources_requester", None), required=("sources",))["sources"]

    def context(self, cm: CmStream) -> str:
        """Which stream, from which position: for messages about what the API returned."""
        position = self._positions.get(cm.key)
        return f"stream {cm.key}, " + (f"after continuation {position!r}" if position else "at its position when the sync started")

    def get_stream(self, cm: CmStream) -> Mapping[str, Any]:
        definition = decode(self._send("stream_requester", cm.as_slice(), cm=cm), required=("stream",), context=f"stream {cm.key}")["stream"]
        if not isinstance(definition, dict):
            raise BadResponse(
                message=f"The Communications Mining API returned the definition of stream {cm.key} as "
                f"{type(definition).__name__}, not an object (GET .../streams/{cm.stream}); the connector cannot read "
                "its model. Check `api_endpoint`, or report it to UiPath support.",
                failure_type=FailureType.system_error,
            )
        return definition

    def results(self, cm: CmStream, at_most: Optional[int] = None) -> Mapping[str, Any]:
        """The next batch; `at_most` lowers the configured `max_results` for this call (a record cap's last batch).

        A body that cannot be used fails here, before the reader sees it: nothing is delivered from
        it and the stream is not advanced past it."""
        extra = None
        if at_most is not None and at_most < self._max_results:
            extra = {"max_results": max(1, at_most)}
        context = self.context(cm)
        return decode(self._send("results_requester", cm.as_slice(extra), cm=cm), required=("results", "continuation"), context=context)

    def advance(self, cm: CmStream, continuation: str) -> None:
        decode(self._send("advance_requester", cm.as_slice(), {"sequence_id": continuation}, cm), context=self.context(cm))
        self._positions[cm.key] = continuation

    def reset(self, cm: CmStream, created_at: str) -> Optional[Refusal]:
        """Moves the stream to `created_at`: None when done; on a 403 or 400 (handed back by the manifest) the
        API's refusal, masked, so the message can quote the reason the API gave."""
        context = f"stream {cm.key}, reset to {created_at!r}"
        response = self._send("reset_requester", cm.as_slice(), {"to_comment_created_at": created_at}, cm)
        if response is not None and response.status_code in (400, 403):
            try:
                decode(response, context=context)
            except BadResponse as refused:
                return Refusal(response.status_code, describe(refused))
        decode(response, context=context)
        self._positions.pop(cm.key, None)
        return None

    def uploads(self, cm: CmStream, since: str, until: Optional[str], pages: int = 4, per_page: int = 256) -> Uploaded:
        """The comments of `cm`'s dataset uploaded at or after `since` and, with `until`, not after it, from the
        dataset export ordered by created_at (reads, consumes nothing); at most `pages` pages (else not `complete`).
        A refusal (400, 403, 404: handed back by the manifest) is `unavailable`.
        Comments outside [since, until] are dropped, so a server that bounds `from` on another field than the
        order still answers right for what it lists."""
        start, end = instant(since), instant(until) if until else None
        found, continuation = [], None
        for _ in range(pages):
            body = {"order_by": "created_at", "from": since, "limit": per_page}
            if continuation:
                body = {"order_by": "created_at", "continuation": continuation, "limit": per_page}
            response = self._send("export_requester", cm.as_slice(), body, cm)
            context = f"dataset export of {cm.project}/{cm.dataset}"
            if response is not None and response.status_code in (400, 403, 404):
                try:
                    decode(response, context=context)
                except BadResponse as refused:
                    hint = f"; the export needs {roles.DATASET_EXPORT} on project '{cm.project}'" if response.status_code == 403 else ""
                    return Uploaded(unavailable=f"{response.status_code}: {describe(refused)}{hint}")
            page = decode(response, required=("comments",), context=context)
            entries = page["comments"] if isinstance(page["comments"], list) else []
            last = None
            for entry in entries:
                comment = entry.get("comment") if isinstance(entry, dict) else None
                at = instant(comment.get("created_at")) if isinstance(comment, dict) else None
                if at is None or start is None:
                    return Uploaded(unavailable="the dataset export answered with a comment without a created_at")
                last = at
                if at >= start and (end is None or at <= end):
                    found.append(comment)
            continuation = page.get("continuation")
            if not continuation or not entries or (end is not None and last is not None and last > end):
                return Uploaded(tuple(found), complete=True)
        return Uploaded(tuple(found), complete=False)
