"""Decodes Communications Mining response bodies, refusing anything that is not a real answer.

A 2xx can still be an error (`"status": "error"`), an HTML page from a proxy, or a body that
lacks the keys a reader relies on. Treating any of these as "no data" would end a sync early
and silently, so each is an error with a message that says what came back, and where (the
caller's `context`: which stream, from which position).

Error statuses the manifest hands back instead of failing (a 400 from /advance) are errors
here whatever their body says: an unexpected body must never turn a refusal into a success.
Every text taken from the response is masked (errors.mask): a server may echo the token.
"""

from typing import Any, Mapping, Optional, Sequence

import orjson
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.errors import mask

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
    if not response.content:
        return "an empty body"
    text = response.content[:_SNIPPET].decode("utf-8", errors="backslashreplace")
    return mask(repr(text.replace("\n", " ")))


def _what_is_wrong(response: requests.Response, error: Exception) -> str:
    """Why the body could not be read as JSON, in words a user can act on."""
    content = response.content or b""
    reason = str(error)
    charset = (requests.utils.get_encoding_from_headers(response.headers) or "").lower().replace("_", "-")
    if not content.strip():
        return "an empty body where JSON was expected"
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as bad:
        declared = (
            f" (its Content-Type declares charset {charset!r}; the API sends UTF-8)"
            if charset and charset not in ("utf-8", "utf8", "iso-8859-1")  # requests' default for text/*
            else ""
        )
        return f"a body that is not valid UTF-8{declared}: byte {bad.start} is {content[bad.start:bad.start + 1]!r}"
    if "depth limit" in reason or "recursion" in reason.lower():
        return "JSON nested deeper than the 1024 levels a parser accepts"
    if "surrogate" in reason:
        return f"JSON with a \\u escape that is half of a UTF-16 pair, not a character ({reason})"
    return f"a body that is not JSON ({reason}): {_snippet(response)}"


def decode(response: Optional[requests.Response], required: Sequence[str] = (), context: str = "") -> Mapping[str, Any]:
    """Returns the JSON body of `response`, or raises BadResponse saying what was wrong and where."""
    if response is None:
        raise BadResponse(
            message=f"The Communications Mining API gave no response{' (' + context + ')' if context else ''}.",
            failure_type=FailureType.system_error,
        )
    where = _where(response)
    at = f" [{context}]" if context else ""
    error: Optional[Exception] = None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as parse_error:
        body, error = _NOT_JSON, parse_error
    if response.status_code >= 400:
        detail = body.get("message") if isinstance(body, dict) else _snippet(response)
        raise BadResponse(
            message=mask(f"The Communications Mining API refused {where}: {detail or 'no message'}{at}"),
            failure_type=FailureType.system_error,
            status_code=response.status_code,
        )
    if body is _NOT_JSON:
        raise BadResponse(
            message=mask(f"The Communications Mining API returned {_what_is_wrong(response, error)} for {where}{at}. "
                         "Check that `api_endpoint` is the tenant URL and that no proxy rewrites the answers; if it is, "
                         "the API sent a broken answer: sync again, and if it persists, report it to UiPath support."),
            failure_type=FailureType.system_error,
        )
    if not isinstance(body, dict):
        raise BadResponse(
            message=f"The Communications Mining API returned JSON that is not an object ({type(body).__name__}) for {where}{at}.",
            failure_type=FailureType.system_error,
        )
    if body.get("status") == "error":
        raise BadResponse(
            message=mask(f"The Communications Mining API reported an error for {where}: {body.get('message') or 'no message'}{at}"),
            failure_type=FailureType.system_error,
        )
    missing = [key for key in required if key not in body]
    if missing:
        raise BadResponse(
            message=f"The Communications Mining API answered {where} without {', '.join(missing)}{at}; "
            "refusing to treat it as an empty result.",
            failure_type=FailureType.system_error,
        )
    return body
