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

The body hook starts only once the headers are in: a server that sends its status line and then
one header byte every half second would hold the read forever (each byte restarts the read
timeout). `DeadlineAdapter`, mounted on the session of every requester (the manifest's requester class,
deadline_requester.DeadlineHttpRequester, mounts it: the declarative streams' and api.CmApi's), starts
the same deadline *before sending* and has the watchdog shut the connection's socket if the
connection is not set up (a proxy's answer to CONNECT, the TLS handshake) or the headers are not
in by then; the hook then bounds the body with what is left. Behind a proxy (HTTPS_PROXY, read from
the environment by the CDK's HttpClient, Session.merge_environment_settings) the proxy's pool
manager gets the same pools; a plain-http call (loopback only) never goes to a proxy. It also caps the
decompressed body (`MAX_BODY_BYTES`): a small gzip body can inflate to gigabytes.

A redirect to another host (requests rightly drops the Authorization header there) or a redirect
loop fails as a config_error saying where the endpoint redirected, not as a rejected token.

The CDK's WaitTimeFromHeader only reads numbers; `RetryAfter` reads `Retry-After` in both forms
RFC 9110 allows (seconds, or an HTTP date), with the same cap.
"""

import math
import os
import re
import socket
import threading
import time
import weakref
from dataclasses import InitVar, dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.auth.declarative_authenticator import DeclarativeAuthenticator
from airbyte_cdk.sources.declarative.interpolation import InterpolatedString
from airbyte_cdk.sources.declarative.requesters.error_handlers.backoff_strategy import BackoffStrategy
from airbyte_cdk.sources.declarative.requesters.error_handlers.default_error_handler import DefaultErrorHandler
from airbyte_cdk.sources.streams.http.error_handlers.response_models import ErrorResolution, ResponseAction
from airbyte_cdk.sources.types import Config
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from source_commsmining import liveness
from source_commsmining.errors import mask, register_secret

# Tests lower it (a subprocess through the environment); never above the read timeout.
DEADLINE_ENV = "SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS"
DEFAULT_DEADLINE_SECONDS = 240.0
_MOVING_CALLS = ("/advance", "/reset")  # the POSTs that move a stream's position
_READ_SIZE = 1 << 16  # per read1; larger buffers would be mmap'ed and unmapped on every call
# The largest body read, once decompressed. A full /results batch (32 comments) or comments page
# (256) of real, long emails is a few MB; 64 MiB is more than ten times that, and small enough that
# reading it (twice, while joined) stays well under a worker's memory. Tests lower it.
MAX_BODY_ENV = "SOURCE_COMMSMINING_MAX_BODY_BYTES"
MAX_BODY_BYTES = 64 << 20


class ResponseDeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole response did not arrive within the deadline (a timeout, so it is retried)."""


class ResponseTooLarge(requests.exceptions.ContentDecodingError):
    """The decompressed body passed MAX_BODY_BYTES (retried like a broken body, then transient_error)."""


def max_body_bytes() -> int:
    try:
        return max(1, int(os.environ.get(MAX_BODY_ENV) or MAX_BODY_BYTES))
    except ValueError:
        return MAX_BODY_BYTES


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
                        entry[0].shutdown()  # urllib3 >= 2.3 (or _SocketCloser): ends a recv blocked in another thread
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
    _refuse_cross_host_redirect(response)
    raw = response.raw
    if kwargs.get("stream") or raw is None or not hasattr(raw, "read1") or response._content is not False:
        return response
    deadline = deadline_seconds(kwargs.get("timeout"))
    ends = time.monotonic() + max(0.0, deadline - response.elapsed.total_seconds())
    where = f"{response.request.method} {requests.utils.urlparse(response.url).path}" if response.request else "a request"
    cap = max_body_bytes()

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
    size = 0
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
            size += len(chunk)
            if size > cap:
                response.close()
                raise ResponseTooLarge(
                    f"{where} (HTTP {response.status_code}) sent a body larger than {cap / (1 << 20):g} MiB once "
                    "decompressed, far more than any Communications Mining answer; it was not read further",
                    request=response.request,
                )
            chunks.append(chunk)
    finally:
        _WATCHDOG.unwatch(entry)
    # What Response.content would have stored after reading the body itself.
    response._content = b"".join(chunks)
    response._content_consumed = True
    return response


def _host(url: str) -> tuple:
    parts = requests.utils.urlparse(url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


def _origin(url: str) -> str:
    parts = requests.utils.urlparse(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}"


def _refuse_cross_host_redirect(response: requests.Response) -> None:
    """A redirect to another host, refused before it is followed: requests would drop the token on the
    way, so whatever that host answers (a 401, a login page) would say nothing about the token."""
    if not response.is_redirect or response.request is None:
        return
    target = requests.compat.urljoin(response.url, response.headers.get("location", ""))
    if _host(target) != _host(response.url):
        raise redirected(response.url, target)


def redirected(url: str, target: Optional[str], loop: bool = False) -> AirbyteTracedException:
    """The config_error for an endpoint that redirects elsewhere (or in a loop); never quotes a header."""
    target_origin = _origin(target) if target else "an unknown address"
    target_path = requests.utils.urlparse(target).path if target else ""
    if loop:
        what = f"redirects in a loop ({_origin(url)} -> ... -> {target_origin}{target_path})"
    else:
        what = f"redirected {requests.utils.urlparse(url).path} to another host, {target_origin}{target_path}"
    hint = target_origin if target and not loop else "your tenant URL"
    message = mask(
        f"The API endpoint {_origin(url)} {what}; the connector does not send the API token there. "
        f"Set `api_endpoint` to {hint} (the address the API answers at, e.g. https://acme.reinfer.io or "
        "https://cloud.uipath.com/<org>/<tenant>/reinfer_) and try again."
    )
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


# ------------------------------------------------------------------ the deadline on the status line and headers
_pending = threading.local()  # the deadline DeadlineAdapter.send set for the request this thread is sending


class _SocketCloser:
    """What the watchdog shuts for a connection still waiting for its headers."""

    __slots__ = ("connection",)

    def __init__(self, connection: Any):
        self.connection = connection

    def shutdown(self) -> None:
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)


class _HeadersWithinDeadline:
    """urllib3 connection mix-in: the connection's set-up (a proxy's CONNECT answer, the TLS handshake)
    and the status line and headers are read under the watchdog. (Before the socket exists, the
    connect timeout bounds the TCP connect.)"""

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._within_deadline(super().connect, *args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        return self._within_deadline(super().getresponse, *args, **kwargs)  # type: ignore[misc]

    def _within_deadline(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        ends = getattr(_pending, "ends", None)
        if ends is None:
            return call(*args, **kwargs)
        entry = _WATCHDOG.watch(_SocketCloser(self), ends)
        try:
            return call(*args, **kwargs)
        except BaseException:
            if entry[2] or time.monotonic() >= ends:
                _pending.fired = True
            raise
        finally:
            _WATCHDOG.unwatch(entry)


class _DeadlineHTTPConnection(_HeadersWithinDeadline, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_HeadersWithinDeadline, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """requests' HTTPAdapter, with the response deadline started before the request is sent.

    The body hook (read_within_deadline) bounds the body; this bounds what comes before it, the
    status line and the headers, with the same deadline: past it the socket is shut and the send
    fails with ResponseDeadlineExceeded (retried like any timeout, then a transient_error).
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The proxy's pool manager (HTTPS_PROXY and the like), with the same deadline pools: without
        them a call through a proxy would wait the read timeout for headers that never come."""
        password = requests.utils.urlparse(proxy).password
        if password:
            register_secret(requests.utils.unquote(password))  # masked like the token, from the first call on
            register_secret(password)
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # a SOCKS manager has its own connection classes
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, *args: Any, **kwargs: Any) -> requests.Response:
        if (request.url or "").lower().startswith("http:"):  # ignore-https-check
            # Plain http is for loopback only (config.validate_endpoint), which no proxy could reach for us;
            # through an HTTP_PROXY the request, token included, would cross to the proxy in clear.
            if len(args) >= 3:  # verify, cert, proxies given by position
                args = args[:2] + ({},) + args[3:]
            else:
                kwargs["proxies"] = {}
        deadline = deadline_seconds(timeout)
        _pending.ends, _pending.fired = time.monotonic() + deadline, False
        try:
            return super().send(request, stream, timeout, *args, **kwargs)
        except requests.exceptions.ConnectionError as error:
            if getattr(_pending, "fired", False):
                path = requests.utils.urlparse(request.url).path
                raise ResponseDeadlineExceeded(
                    f"{request.method} {path} sent no complete status line and headers within {deadline:g} s "
                    "(the longest a response may take, however slowly its bytes arrive)",
                    request=request,
                ) from error
            raise
        finally:
            _pending.ends = None


def mount_deadline_adapter(session: requests.Session) -> None:
    """Mounts DeadlineAdapter for both schemes on `session` (the public Session.mount); plain http is loopback only."""
    for prefix in ("https://", "http://"):  # ignore-https-check
        current = session.adapters.get(prefix)
        if not isinstance(current, DeadlineAdapter):
            pool = getattr(current, "_pool_connections", requests.adapters.DEFAULT_POOLSIZE)
            size = getattr(current, "_pool_maxsize", requests.adapters.DEFAULT_POOLSIZE)
            session.mount(prefix, DeadlineAdapter(pool_connections=pool, pool_maxsize=size))


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
        return prepare_request(request, f"Bearer {self._token}")


def prepare_request(request: requests.PreparedRequest, authorization: Union[str, Callable[[], str]]) -> requests.PreparedRequest:
    """What every authenticator does to a request, before the first send and before every retry (after its
    backoff): a call that moves a stream is never sent once the sync is gone (liveness.py); the Authorization
    header (`authorization`, or what it returns: called only once the sync is known to be live); the deadline hook."""
    if request.method == "POST" and (request.path_url or "").split("?")[0].endswith(_MOVING_CALLS):
        liveness.require_live(f"POST {request.path_url.split('?')[0].rsplit('/', 1)[-1]}")
    request.headers["Authorization"] = authorization if isinstance(authorization, str) else authorization()
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


# RFC 9110 delay-seconds is 1*DIGIT (ASCII); a fraction is tolerated. float() would also take "1_000",
# "1e3" or Arabic-Indic digits ("٣").
_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait for a Retry-After value: a non-negative number, or an HTTP date from now. None if neither."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if _DELAY_SECONDS.match(text):
        seconds = float(text)
    else:
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
        if self._renews_token(response_or_exception):
            # The CDK's HttpClient renews the token (auth.SharedTokenOAuthAuthenticator), unless another thread
            # already did, and retries; a second 401 for the same request falls to the manifest's 401 filter.
            return ErrorResolution(
                response_action=ResponseAction.REFRESH_TOKEN_THEN_RETRY,
                failure_type=FailureType.transient_error,
                error_message="The API rejected the access token (401): renewing it once.",
            )
        if isinstance(response_or_exception, requests.exceptions.TooManyRedirects):
            last = response_or_exception.response
            first = last.history[0].request.url if last is not None and last.history and last.history[0].request is not None else None
            request = response_or_exception.request
            raise redirected(first or (request.url if request is not None else ""), last.url if last is not None else None, loop=True)
        if isinstance(response_or_exception, _TRANSPORT_ERRORS):
            return ErrorResolution(
                response_action=ResponseAction.RETRY,
                failure_type=FailureType.transient_error,
                error_message=mask(f"{type(response_or_exception).__name__}: {response_or_exception}"),
            )
        resolution = super().interpret_response(response_or_exception)
        if (
            isinstance(response_or_exception, requests.Response)
            and resolution.response_action == ResponseAction.RETRY
            and (response_or_exception.status_code == 409 or response_or_exception.status_code >= 500)
        ):
            # The message the sync fails with once the retries are spent: the status, where, and the API's own words.
            # 409 is transient as 5xx is: the official client retries it.
            return ErrorResolution(
                response_action=ResponseAction.RETRY,
                failure_type=FailureType.transient_error,
                error_message=refused(response_or_exception),
            )
        return resolution


    def _renews_token(self, response: Any) -> bool:
        """A 401 when signed in as an External Application, the first for this request: the token may have expired
        (or been revoked) since it was sent."""
        if not isinstance(response, requests.Response) or response.status_code != 401 or response.request is None:
            return False
        if (self.config.get("credentials") or {}).get("auth_type") != "oauth2_client_credentials":  # auth.OAUTH (auth imports this module)
            return False
        request = getattr(response.request, "_request", response.request)  # requests-mock answers with a proxy of it
        renewed = self.__dict__.setdefault("_renewed_for", weakref.WeakSet())
        if request in renewed:
            return False
        renewed.add(request)
        return True


def refused(response: requests.Response) -> str:
    """`GET /api/v1/... answered HTTP 409 Conflict: <the API's message>`, masked and kept short."""
    request = response.request
    where = f"{request.method} {requests.utils.urlparse(request.url).path}" if request is not None and request.url else "a request"
    try:
        body = response.json()
        detail = body.get("message") if isinstance(body, dict) else None
    except Exception:
        detail = None
    if not isinstance(detail, str) or not detail.strip():
        text = (response.content or b"")[:200].decode("utf-8", errors="replace").strip()
        detail = text if text and not text.lstrip().startswith("<") else "no message"
    detail = " ".join(detail.split())[:300]
    return mask(
        f"The Communications Mining API answered {where} with HTTP {response.status_code} {response.reason or ''}".rstrip()
        + f": {detail}. It was retried; the API may be busy or the stream in use by another reader. Sync again later, and "
        "if it persists, report the message to UiPath support."
    )
