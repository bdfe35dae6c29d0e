"""UiPath Identity's token endpoint, as External Applications use it (OAuth 2.0 client credentials).

Why this module exists: the connector can sign in as an External Application; this serves
`POST /identity_/connect/token` on the emulator's own server, as UiPath's examples call it: a
form-encoded body with grant_type=client_credentials, client_id, client_secret and `scope` (space
separated), answered with `{access_token, expires_in, token_type: "Bearer", scope}`. Errors follow
RFC 6749 section 5.2: `invalid_client` (401) for an unknown client or a wrong secret,
`invalid_scope` (400) for a scope the application was not granted, `unsupported_grant_type` (400).
An access token is an API token of the World with the client's permissions that expires after
`lifetime` seconds: the API answers an expired one with 401.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import parse_qs

DEFAULT_CLIENT_ID = "emulator-client"
DEFAULT_CLIENT_SECRET = "emulator-client-secret"
DEFAULT_SCOPES = ("emulator.read", "emulator.consume")
DEFAULT_LIFETIME = 3600.0
TOKEN_PATH = "/identity_/connect/token"


class Identity:
    def __init__(self, world, lifetime=DEFAULT_LIFETIME):
        self.world = world
        self.lifetime = float(lifetime)
        self.clients = {}  # client_id -> (secret, frozenset of granted scopes, permissions, projects)
        self.expiry = {}  # access token -> monotonic time it expires at
        self.issued = []  # every access token issued, in order (tests check none is printed)
        self._lock = threading.Lock()
        self.add_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_SCOPES)

    def add_client(self, client_id, client_secret, scopes=DEFAULT_SCOPES, permissions=None, projects=None):
        scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        self.clients[client_id] = (client_secret, frozenset(scopes), permissions, projects)
        return client_id

    def expired(self, token) -> bool:
        ends = self.expiry.get(token)
        return ends is not None and time.monotonic() >= ends

    def token(self, raw: bytes):
        """(status, JSON object) for a token request's form body."""
        form = {key: values[0] for key, values in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        client = self.clients.get(form.get("client_id", ""))
        if client is None or not secrets.compare_digest(client[0], form.get("client_secret", "")):
            return 401, {"error": "invalid_client"}
        secret, granted, permissions, projects = client
        asked = form.get("scope", "").split()
        if not asked or any(scope not in granted for scope in asked):
            return 400, {"error": "invalid_scope"}
        access_token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self.world.add_token(access_token, permissions, projects)
            self.expiry[access_token] = time.monotonic() + self.lifetime
            self.issued.append(access_token)
        lifetime = int(self.lifetime) if float(self.lifetime).is_integer() else self.lifetime
        return 200, {"access_token": access_token, "expires_in": lifetime, "token_type": "Bearer", "scope": " ".join(asked)}
