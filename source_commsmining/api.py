"""The calls `stream_results` makes, on top of the requesters declared in manifest.yaml.

Retries, backoff, timeouts and error messages come from the manifest's error handler (the
CDK's HttpClient); this module adds what the manifest cannot say: which body each call sends,
and that a 2xx body must be a real answer (see envelope.py).
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from airbyte_cdk.sources.declarative.models.declarative_component_schema import (
    HttpRequester as HttpRequesterModel,
)
from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester
from airbyte_cdk.sources.types import StreamSlice

from source_commsmining.envelope import decode

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


class CmApi:
    """Stream calls for one reader thread (each thread gets its own HTTP session)."""

    def __init__(self, requesters: Mapping[str, HttpRequester]):
        self._requesters = requesters

    @classmethod
    def from_manifest(cls, factory: Any, definitions: Mapping[str, Any], config: Mapping[str, Any]) -> "CmApi":
        return cls(
            {
                name: factory.create_component(HttpRequesterModel, definitions[name], config, name="stream_results")
                for name in REQUESTERS
            }
        )

    def _send(self, name: str, cm: CmStream, body: Optional[Mapping[str, Any]] = None):
        return self._requesters[name].send_request(stream_slice=cm.as_slice(), request_body_json=body)

    def list_sources(self) -> Any:
        return decode(self._requesters["sources_requester"].send_request(), required=("sources",))["sources"]

    def get_stream(self, cm: CmStream) -> Mapping[str, Any]:
        return decode(self._send("stream_requester", cm), required=("stream",))["stream"]

    def results(self, cm: CmStream) -> Mapping[str, Any]:
        return decode(self._send("results_requester", cm), required=("results", "continuation"))

    def advance(self, cm: CmStream, continuation: str) -> None:
        decode(self._send("advance_requester", cm, {"sequence_id": continuation}))

    def reset(self, cm: CmStream, created_at: str) -> bool:
        """Moves the stream back to `created_at`; False when the token may not reset (403)."""
        response = self._send("reset_requester", cm, {"to_comment_created_at": created_at})
        if response is not None and response.status_code == 403:
            return False
        decode(response)
        return True
