"""Sign-in as a UiPath External Application (OAuth 2.0 client credentials), beside the API token.

The manifest's authenticator is a SelectiveAuthenticator on `credentials.auth_type`:
`api_token` is transport.DeadlineBearerAuthenticator, `oauth2_client_credentials` is
`SharedTokenOAuthAuthenticator`, the CDK's declarative OAuth authenticator (the request body it
builds: grant_type, client_id, client_secret and, from `refresh_request_body`, `scope`; its
double-checked renewal under the class-wide lock; its forced renewal after a 401) with three
changes, each a requirement the CDK's cannot meet (unit_tests/test_cdk_contract.py pins what they
rely on):

- one token for the whole process: the CDK's factory builds an authenticator per requester (the
  SelectiveAuthenticator builds both choices for each), and api.CmApi builds ten requesters per
  reader thread: a sync of 16 streams read in parallel holds 160 instances of this class, each of
  which would fetch and renew a token of its own. Here the token and its expiry live in a
  `_TokenHolder` shared by every instance with the same credentials (that sync: one token);
- the token request goes through a session with transport.DeadlineAdapter and the
  read_within_deadline hook, so it has the same whole-response deadline (and adapter) as every
  API call; the CDK's sends with a bare `requests.request` and no timeout at all;
- errors name the setting to fix (`credentials.client_id`, ...), transient failures are retried
  with the configured retries, and a token that could not be renewed is dropped: no request, an
  advance or a reset least of all, is sent with it afterwards.

The token is renewed a little before it expires (a tenth of its lifetime, at most a minute) and
once after a 401 (transport.TransportAwareErrorHandler asks the CDK for that). Every access token
is registered with the secret filter as it arrives; so are the client secret and the API token.
"""

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Mapping, MutableMapping, Optional, Tuple

import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.auth.oauth import DeclarativeOauth2Authenticator
from airbyte_cdk.sources.declarative.transformations.config_transformations.config_transformation import (
    ConfigTransformation,
)
from airbyte_cdk.utils.datetime_helpers import AirbyteDateTime, ab_datetime_now
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.errors import mask, register_secret
from source_commsmining.transport import (
    ResponseDeadlineExceeded,
    mount_deadline_adapter,
    prepare_request,
    read_within_deadline,
    retry_after_seconds,
)

API_TOKEN = "api_token"
OAUTH = "oauth2_client_credentials"
# The identity server UiPath's External Applications examples post to, for tenants on UiPath's cloud.
UIPATH_CLOUD_HOSTS = ("cloud.uipath.com",)
IDENTITY_PATH = "/identity_/connect/token"
TIMEOUT = (15, 240)  # as the manifest's requesters: connect, read (the deadline is the read timeout or less)
EARLY_RENEWAL_SECONDS = 60.0


def default_token_url(api_endpoint: Any) -> Optional[str]:
    """UiPath Identity's token endpoint for a tenant on UiPath's cloud; None for any other host (Automation
    Suite installs, legacy *.reinfer.io tenants), whose token endpoint must be configured."""
    if not isinstance(api_endpoint, str):
        return None
    parts = requests.utils.urlparse(api_endpoint.strip())
    if parts.scheme.lower() == "https" and (parts.hostname or "").lower() in UIPATH_CLOUD_HOSTS:
        return f"https://{parts.hostname.lower()}{IDENTITY_PATH}"
    return None


class AddDefaultTokenUrl(ConfigTransformation):
    """Fills `credentials.token_url` for a tenant on UiPath's cloud when it is not given (config.validate_credentials
    refuses a missing one elsewhere)."""

    def transform(self, config: MutableMapping[str, Any]) -> None:
        credentials = config.get("credentials")
        if not isinstance(credentials, MutableMapping) or credentials.get("auth_type") != OAUTH:
            return
        if not (isinstance(credentials.get("token_url"), str) and credentials["token_url"].strip()):
            default = default_token_url(config.get("api_endpoint"))
            if default:
                config["credentials"] = {**credentials, "token_url": default}


# ------------------------------------------------------------------ one token per process
class _TokenHolder:
    """The access token and its (early) expiry, shared by every authenticator with the same credentials."""

    def __init__(self) -> None:
        self.token: Optional[str] = None
        self.expires: AirbyteDateTime = AirbyteDateTime.from_datetime(datetime.min)


_HOLDERS: Dict[Tuple[str, ...], _TokenHolder] = {}
_HOLDERS_LOCK = threading.Lock()


def _holder(key: Tuple[str, ...]) -> _TokenHolder:
    with _HOLDERS_LOCK:
        holder = _HOLDERS.get(key)
        if holder is None:
            holder = _HOLDERS[key] = _TokenHolder()
        return holder


def early_expiry(expires: AirbyteDateTime) -> AirbyteDateTime:
    """When to renew a token that expires at `expires`: a tenth of its remaining lifetime before, at most a minute."""
    lifetime = (expires - ab_datetime_now()).total_seconds()
    margin = min(EARLY_RENEWAL_SECONDS, max(0.0, lifetime) / 10)
    return expires - timedelta(seconds=margin)


@dataclass
class SharedTokenOAuthAuthenticator(DeclarativeOauth2Authenticator):
    """The CDK's declarative OAuth authenticator (client credentials), with one shared token, the response
    deadline on the token request, and errors that name the setting to fix (module docstring)."""

    def __post_init__(self, parameters: Mapping[str, Any]) -> None:
        super().__post_init__(parameters)
        self._session: Optional[requests.Session] = None
        self._key: Optional[Tuple[str, ...]] = None

    # ---------------------------------------------------------------- the shared token
    @property
    def holder(self) -> _TokenHolder:
        if self._key is None:
            self._key = (
                str(self.get_token_refresh_endpoint()),
                str(self.get_client_id()),
                str(self.get_client_secret() or ""),
                " ".join(str(self.get_refresh_request_body().get("scope") or "").split()),
            )
        return _holder(self._key)

    @property
    def access_token(self) -> str:
        token = self.holder.token
        if token is None:
            raise ValueError("access_token is not set")
        return token

    @access_token.setter
    def access_token(self, value: str) -> None:
        register_secret(value)
        self.holder.token = value

    def get_token_expiry_date(self) -> AirbyteDateTime:
        holder = self.holder
        return holder.expires if holder.token is not None else AirbyteDateTime.from_datetime(datetime.min)

    def set_token_expiry_date(self, value: AirbyteDateTime) -> None:
        if not isinstance(value, AirbyteDateTime):
            value = self._parse_token_expiration_date(value)
        self.holder.expires = early_expiry(value)

    def refresh_and_set_access_token(self) -> None:
        """The CDK's forced renewal (after a 401); a token that could not be renewed is dropped, so the next request
        renews again or is not sent."""
        try:
            super().refresh_and_set_access_token()
        except BaseException:
            self.holder.token = None
            raise

    def get_access_token(self) -> str:
        try:
            return super().get_access_token()
        except BaseException:
            self.holder.token = None
            raise

    # ---------------------------------------------------------------- every request
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return prepare_request(request, lambda: self.get_auth_header()["Authorization"])

    # ---------------------------------------------------------------- the token request
    def refresh_access_token(self) -> Tuple[str, AirbyteDateTime]:
        """POSTs the form (grant_type, client_id, client_secret, scope) and returns the token and its expiry."""
        body = self._token_response()
        token = body.get(self.get_access_token_name())
        if not isinstance(token, str) or not token.strip():
            raise _token_error(
                f"The token endpoint {self._shown_url()} answered without an access token: check "
                "`credentials.token_url` (it must be UiPath Identity's /identity_/connect/token).",
                FailureType.config_error,
            )
        register_secret(token)
        expires_in = body.get(self.get_expires_in_name())
        try:
            seconds = float(expires_in)
        except (TypeError, ValueError):
            seconds = 3600.0  # UiPath's tokens last an hour; a 401 renews one that does not
        return token, ab_datetime_now() + timedelta(seconds=max(0.0, seconds))

    def _shown_url(self) -> str:
        parts = requests.utils.urlparse(str(self.get_token_refresh_endpoint()))
        return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"

    def _settings(self) -> Tuple[int, float]:
        try:
            retries = max(0, int(float(self.config.get("max_retries", 8))))
        except (TypeError, ValueError):
            retries = 8
        try:
            base = max(0.01, float(self.config.get("retry_backoff_seconds", 2)))
        except (TypeError, ValueError):
            base = 2.0
        return retries, base

    def _token_response(self) -> Mapping[str, Any]:
        if self._session is None:
            self._session = requests.Session()
            mount_deadline_adapter(self._session)
        retries, base = self._settings()
        url = str(self.get_token_refresh_endpoint())
        last, wait = "", None
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(wait if wait else min(base * 2 ** (attempt - 1), 60.0))
            wait = None
            try:
                response = self._session.post(
                    url,
                    data=self.build_refresh_request_body(),
                    headers={"Accept": "application/json", **(self.build_refresh_request_headers() or {})},
                    timeout=TIMEOUT,
                    hooks={"response": read_within_deadline},
                    allow_redirects=False,
                )
            except ResponseDeadlineExceeded as error:
                last = f"it sent no complete answer in time ({mask(str(error))})"
                continue
            except requests.exceptions.RequestException as error:
                last = f"it could not be reached ({type(error).__name__}: {mask(str(error))[:300]})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"it answered HTTP {response.status_code}"
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                wait = min(wait, 300.0) if wait else None
                continue
            return self._answer(response)
        raise _token_error(
            f"Could not get an access token from the token endpoint {self._shown_url()}: {last}, after {retries + 1} "
            "attempt(s). Check `credentials.token_url` and that this network can reach it; if it is right, UiPath "
            "Identity may be unavailable: sync again later.",
            FailureType.transient_error,
        )

    def _answer(self, response: requests.Response) -> Mapping[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok and isinstance(body, Mapping):
            return body
        error = body.get("error") if isinstance(body, Mapping) else None
        url = self._shown_url()
        if error == "invalid_client" or (response.status_code == 401 and error is None):
            raise _token_error(
                f"The token endpoint {url} refused the External Application's credentials (HTTP {response.status_code} "
                "invalid_client): check `credentials.client_id` and `credentials.client_secret` (the App ID and App "
                "Secret shown when the application was registered in Automation Cloud under Admin > External "
                "Applications; a regenerated secret replaces the old one).",
                FailureType.config_error,
            )
        if error == "invalid_scope":
            raise _token_error(
                f"The token endpoint {url} refused the scopes in `credentials.scopes` (invalid_scope): give exactly "
                "the application scopes the External Application was granted (space-separated, as listed under Admin "
                "> External Applications > the application > Resources).",
                FailureType.config_error,
            )
        if error in ("unauthorized_client", "unsupported_grant_type"):
            raise _token_error(
                f"The token endpoint {url} does not let this External Application use the client-credentials grant "
                f"({error}): register it as a confidential application with application scopes, then check "
                "`credentials.client_id`.",
                FailureType.config_error,
            )
        if response.is_redirect or response.status_code == 404 or not isinstance(body, Mapping):
            raise _token_error(
                f"{url} answered HTTP {response.status_code} with no OAuth answer: it is not a token endpoint. Check "
                "`credentials.token_url` (UiPath Identity's, e.g. https://cloud.uipath.com/identity_/connect/token; "
                "an Automation Suite install serves https://<host>/identity_/connect/token).",
                FailureType.config_error,
            )
        detail = " ".join(str(error or body.get("message") or "no detail").split())[:100]
        raise _token_error(
            f"The token endpoint {url} refused the token request (HTTP {response.status_code}: {detail}). Check "
            "`credentials.client_id`, `credentials.client_secret`, `credentials.scopes` and `credentials.token_url`.",
            FailureType.config_error,
        )


def _token_error(message: str, failure_type: FailureType) -> AirbyteTracedException:
    message = mask(message)
    return AirbyteTracedException(message=message, internal_message=message, failure_type=failure_type)
