"""Decodes Communications Mining response bodies, refusing anything that is not a real answer.

A 2xx can still be an error (`"status": "error"`), an HTML page from a proxy, or a body that
lacks the keys a reader relies on. Treating any of these as "no data" would end a sync early
and silently, so each is an error with a message that says what came back.

Error statuses the manifest hands back instead of failing (a 400 from /advance) are errors
here whatever their body says: an unexpected body must never turn a refusal into a success.
"""

from typing import Any, Mapping, Optional, Sequence

import orjson
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

_SNIPPET = 120
_NOT_JSON = object()


class BadResponse(AirbyteTracedException):
    """A response that is not a usable Communications Mining answer (an error status the manifest
    hands back, or a 2xx whose body is not a real answer); `status_code` says which it was."""

    def __init__(self, *args: Any, status_code: Optional[int] = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.status_code = status_code


def _where(response: requests.Response) -> str:
    request = response.request
    path = requests.utils.urlparse(request.url).path if request is not None and request.url else "?"
    method = request.method if request is not None else "?"
    return f"{method} {path} (HTTP {response.status_code})"


def _snippet(response: requests.Response) -> str:
    return repr(response.text[:_SNIPPET].replace("\n", " ")) if response.content else "an empty body"


def decode(response: requests.Response, required: Sequence[str] = ()) -> Mapping[str, Any]:
    """Returns the JSON body of `response`, or raises BadResponse saying what was wrong."""
    where = _where(response)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = _NOT_JSON
    if response.status_code >= 400:
        detail = body.get("message") if isinstance(body, dict) else _snippet(response)
        raise BadResponse(
            message=f"The Communications Mining API refused {where}: {detail or 'no message'}",
            failure_type=FailureType.system_error,
            status_code=response.status_code,
        )
    if body is _NOT_JSON:
        snippet = _snippet(response)
        raise BadResponse(
            message=f"The Communications Mining API returned a body that is not JSON for {where}: "
            f"{snippet}. Is `api_endpoint` the tenant URL, and is a proxy in the way?",
            failure_type=FailureType.system_error,
        )
    if not isinstance(body, dict):
        raise BadResponse(
            message=f"The Communications Mining API returned JSON that is not an object for {where}.",
            failure_type=FailureType.system_error,
        )
    if body.get("status") == "error":
        raise BadResponse(
            message=f"The Communications Mining API reported an error for {where}: "
            f"{body.get('message') or 'no message'}",
            failure_type=FailureType.system_error,
        )
    missing = [key for key in required if key not in body]
    if missing:
        raise BadResponse(
            message=f"The Communications Mining API answered {where} without {', '.join(missing)}; "
            "refusing to treat it as an empty result.",
            failure_type=FailureType.system_error,
        )
    return body
