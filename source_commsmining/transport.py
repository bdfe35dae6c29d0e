"""How every request reaches the API: the bearer token, a deadline on the whole response, Retry-After.

The read timeout (240 s) bounds each wait for a byte, not the response: a body that trickles one
byte every 100 ms would never time out. `DeadlineBearerAuthenticator` (the manifest's
authenticator, so every requester has it) registers a requests response hook on each request, a
public requests mechanism (HTTPDigestAuth does the same), that reads the body under an overall
deadline. Past it the hook shuts the socket and raises ResponseDeadlineExceeded, a
requests.ReadTimeout: the manifest's error handler (`TransportAwareErrorHandler`) retries it like
any timeout, then fails the stream with a transient_error, and the reader, which never saw the
batch, advances nothing. The body the hook read becomes the response's content (requests'
`_content`, which unit_tests/test_cdk_contract.py pins), so nothing downstream changes.

The CDK's WaitTimeFromHeader only reads numbers; `RetryAfter` reads `Retry-After` in both forms
RFC 9110 allows (seconds, or an HTTP date), with the same cap.
"""

import math
import os
import threading
import time
from dataclasses import InitVar, dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Dict, List, Mapping, Optional, Union

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.auth.declarative_authenticator import DeclarativeAuthenticator
from airbyte_cdk.sources.declarative.interpolation import InterpolatedString
from airbyte_cdk.sources.declarative.requesters.error_handlers.backoff_strategy import BackoffStrategy
from airbyte_cdk.sources.declarative.requesters.error_handlers.default_error_handler import DefaultErrorHandler
from airbyte_cdk.sources.streams.http.error_handlers.response_models import ErrorResolution, ResponseAction
from airbyte_cdk.sources.types import Config
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from source_commsmining import liveness
from source_commsmining.errors import mask, register_secret

# Tests lower it (a subprocess through the environment); never above the read timeout.
DEADLINE_ENV = "SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS"
DEFAULT_DEADLINE_SECONDS = 240.0
_MOVING_CALLS = ("/advance", "/reset")  # the POSTs that move a stream's position
_READ_SIZE = 1 << 16  # per read1; larger buffers would be mmap'ed and unmapped on every call


class ResponseDeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole response did not arrive within the deadline (a timeout, so it is retried)."""


def deadline_seconds(timeout: Any) -> float:
    """The deadline for one response: the read timeout, or less when DEADLINE_ENV says so."""
    read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
    deadline = DEFAULT_DEADLINE_SECONDS
    configured = os.environ.get(DEADLINE_ENV)
    if configured:
        try:
            deadline = float(configured)
        except ValueError:
            pass
    if isinstance(read_timeout, (int, float)) and read_timeout > 0:
        deadline = min(deadline, float(read_timeout))
    return deadline


class _Watchdog:
    """One daemon thread that shuts the socket of any response still being read past its deadline.

    A response read in the calling thread can block for up to the read timeout on one recv; only
    shutting the socket from elsewhere ends that wait at the deadline. One thread for the process,
    waking once a second, costs a dict insert and pop per request.
    """

    def __init__(self) -> None:
        self._watched: Dict[int, List[Any]] = {}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None

    def watch(self, raw: Any, ends: float) -> List[Any]:
        entry = [raw, ends, False]  # [raw, monotonic deadline, fired]
        self._watched[id(entry)] = entry
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cm-response-deadline", daemon=True)
                    self._thread.start()
        return entry

    def unwatch(self, entry: List[Any]) -> None:
        self._watched.pop(id(entry), None)

    def _run(self) -> None:
        tick = threading.Event()  # never set: a wait that tests patching time.sleep do not turn into a spin
        while True:
            tick.wait(0.5)
            now = time.monotonic()
            for key, entry in self._watched.copy().items():
                if entry[1] <= now:
                    entry[2] = True
                    self._watched.pop(key, None)
                    try:
                        entry[0].shutdown()  # urllib3 >= 2.3: ends a recv blocked in another thread
                    except Exception:
                        pass  # no socket to shut (e.g. a mocked response): the loop's own check ends it


_WATCHDOG = _Watchdog()


def _as_requests_error(error: Exception) -> Exception:
    """What requests' own iter_content raises for the same urllib3 error (the CDK retries those)."""
    if isinstance(error, ProtocolError):
        return requests.exceptions.ChunkedEncodingError(error)
    if isinstance(error, DecodeError):
        return requests.exceptions.ContentDecodingError(error)
    if isinstance(error, ReadTimeoutError):
        return requests.exceptions.ConnectionError(error)
    if isinstance(error, SSLError):
        return requests.exceptions.SSLError(error)
    return error


def read_within_deadline(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A requests response hook: reads the whole body, or raises ResponseDeadlineExceeded.

    Runs inside Session.send before requests reads the body itself; the body read here becomes the
    response's content, so nothing downstream changes.
    """
    raw = response.raw
    if kwargs.get("stream") or raw is None or not hasattr(raw, "read1") or response._content is not False:
        return response
    deadline = deadline_seconds(kwargs.get("timeout"))
    ends = time.monotonic() + max(0.0, deadline - response.elapsed.total_seconds())
    where = f"{response.request.method} {requests.utils.urlparse(response.url).path}" if response.request else "a request"

    def exceeded() -> ResponseDeadlineExceeded:
        response.close()
        return ResponseDeadlineExceeded(
            f"{where} (HTTP {response.status_code}) sent no complete response within {deadline:g} s "
            "(the longest a response may take, however slowly its bytes arrive)",
            response=None,
            request=response.request,
        )

    entry = _WATCHDOG.watch(raw, ends)
    chunks = []
    try:
        while True:
            try:
                chunk = raw.read1(_READ_SIZE, decode_content=True)
            except Exception as error:
                if entry[2] or time.monotonic() >= ends:
                    raise exceeded() from error
                raise _as_requests_error(error) from error
            if entry[2] or time.monotonic() >= ends:
                raise exceeded()
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        _WATCHDOG.unwatch(entry)
    # What Response.content would have stored after reading the body itself.
    response._content = b"".join(chunks)
    response._content_consumed = True
    return response


@dataclass
class DeadlineBearerAuthenticator(DeclarativeAuthenticator):
    """`Authorization: Bearer <api_token>`, rendered once, on every request and retry; and the deadline hook.

    The token is registered with the secret filter in all the forms output could show it in.
    """

    config: Config
    parameters: InitVar[Mapping[str, Any]]
    api_token: Union[InterpolatedString, str] = "{{ config['api_token'] }}"

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        token = InterpolatedString.create(str(self.api_token), parameters=parameters).eval(self.config)
        self._token = "" if token is None else str(token)
        register_secret(self._token)

    @property
    def auth_header(self) -> str:
        return "Authorization"

    @property
    def token(self) -> str:
        return f"Bearer {self._token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        # Run before the first send and before every retry (after its backoff): a call that moves a
        # stream is never sent once the sync is gone (liveness.py).
        if request.method == "POST" and (request.path_url or "").split("?")[0].endswith(_MOVING_CALLS):
            liveness.require_live(f"POST {request.path_url.split('?')[0].rsplit('/', 1)[-1]}")
        request.headers["Authorization"] = f"Bearer {self._token}"
        # Called again on every retry of the same prepared request: register the hook once.
        if read_within_deadline not in request.hooks["response"]:
            request.register_hook("response", read_within_deadline)
        return request


@dataclass
class RetryAfter(BackoffStrategy):
    """The wait a `Retry-After` header asks for, in seconds or as an HTTP date.

    A wait of `max_waiting_time_in_seconds` or more fails the stream (transient_error) rather than
    stalling the sync, as the CDK's WaitTimeFromHeader does; no header, or one in the past, leaves
    the wait to the next strategy (exponential backoff).
    """

    config: Config
    parameters: InitVar[Mapping[str, Any]]
    header: str = "Retry-After"
    max_waiting_time_in_seconds: Optional[float] = 300

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        pass

    def backoff_time(
        self,
        response_or_exception: Optional[Union[requests.Response, requests.RequestException]],
        attempt_count: int,
    ) -> Optional[float]:
        if not isinstance(response_or_exception, requests.Response):
            return None
        wait = retry_after_seconds(response_or_exception.headers.get(self.header))
        if not wait:
            return None
        cap = self.max_waiting_time_in_seconds
        if cap is not None and wait >= float(cap):
            raise AirbyteTracedException(
                internal_message=f"Retry-After asks for {wait:.0f} s, the most this connector waits is {float(cap):g} s.",
                message=f"The Communications Mining API asked the connector to wait {wait:.0f} s before retrying "
                f"(Retry-After), longer than the {float(cap):g} s it waits at most. Run the sync again later.",
                failure_type=FailureType.transient_error,
            )
        return wait


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait for a Retry-After value: a non-negative number, or an HTTP date from now. None if neither."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


# requests' transport errors the CDK's default mapping does not list by exact class: it would retry
# them but call the final failure a system_error with the exception's repr. They are transient.
_TRANSPORT_ERRORS = (requests.exceptions.Timeout, requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                     requests.exceptions.ContentDecodingError)


@dataclass
class TransportAwareErrorHandler(DefaultErrorHandler):
    """The manifest's error handler: DefaultErrorHandler, except that a timeout, a dropped connection
    or a response past its deadline is retried and, once the retries are spent, fails as a
    transient_error whose message says what happened (masked: a text from the HTTP stack may quote
    a header)."""

    def interpret_response(self, response_or_exception: Optional[Union[requests.Response, Exception]]) -> ErrorResolution:
        if isinstance(response_or_exception, _TRANSPORT_ERRORS):
            return ErrorResolution(
                response_action=ResponseAction.RETRY,
                failure_type=FailureType.transient_error,
                error_message=mask(f"{type(response_or_exception).__name__}: {response_or_exception}"),
            )
        return super().interpret_response(response_or_exception)
