"""The config checks JSON schema cannot express (the manifest's config_normalization_rules derive `api_base_url`)."""

import ipaddress
import logging
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, MutableMapping, Optional
from urllib.parse import SplitResult, urlsplit

import idna

import jsonschema
from urllib3.util import parse_url
from airbyte_cdk.sources.declarative.interpolation.macros import format_datetime

from source_commsmining.api import CmStream
from source_commsmining.auth import API_TOKEN, OAUTH, default_token_url
from source_commsmining.errors import MIN_SECRET_LENGTH, config_error, register_secret
from source_commsmining.position_plan import IF_UNREAD, SKEW, START_POSITIONS, TAKE_OVER_FROM_DATE
from source_commsmining.timestamps import instant

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
STREAM_ENTRY_KEYS = {"project", "dataset", "stream"}


def api_base_url(api_endpoint: str) -> str:
    """`https://t.reinfer.io/`, `.../api` and `.../api/` all become `https://t.reinfer.io/api`."""
    base = api_endpoint.strip().rstrip("/")
    if base.lower().endswith("/api"):
        base = base[: -len("/api")]
    return base + "/api"


# The spec's integer settings. JSON Schema counts 16.0 as an integer, so a UI or a hand-written config
# may send one; the requesters would render it as "16.0" (refused by the API), so it becomes 16.
INTEGER_SETTINGS = ("max_results", "max_filtered", "parallel_streams", "max_records_per_sync", "max_retries")


def whole_numbers(config: MutableMapping[str, Any], names=INTEGER_SETTINGS) -> None:
    """Turns whole-number floats of the integer settings into ints, in place (others are left to validation)."""
    for name in names:
        value = config.get(name)
        if isinstance(value, float) and value.is_integer():
            config[name] = int(value)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_secrets(endpoint: Any) -> List[str]:
    """A password written into `api_endpoint` (user:pass@host): masked like the token."""
    if not isinstance(endpoint, str):
        return []
    netloc = urlsplit(endpoint.strip().replace("\\", "/")).netloc
    userinfo = netloc.rpartition("@")[0] if "@" in netloc else ""
    password = userinfo.partition(":")[2]
    return [password] if password else []


def shown_endpoint(endpoint: str) -> str:
    """`endpoint` as a message may show it: any user:pass@ replaced."""
    parts = urlsplit(endpoint.strip())
    if "@" not in parts.netloc:
        return endpoint.strip()
    return parts._replace(netloc="****@" + parts.netloc.rpartition("@")[2]).geturl()


def validate_endpoint(endpoint: Any, field: str = "api_endpoint", example: str = "https://acme.reinfer.io") -> None:
    """Validates `api_endpoint` (or another URL setting, `field`) as the HTTP client will read it: the host
    checked is the host connected to; plain http only for loopback."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        what = "your tenant URL" if field == "api_endpoint" else "a URL"
        raise config_error(f"`{field}` is missing: set it to {what}, e.g. {example}.")
    text = endpoint.strip()
    shown = shown_endpoint(text)
    if "\\" in text or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        # urllib and urllib3 split "http://a\\@b" differently: the host checked would not be the host connected to.
        raise config_error(
            f"`{field}` {shown!r} contains a backslash, a space or a control character, which no such URL has: "
            f"give the URL alone, e.g. {example}."
        )
    parts = urlsplit(text)
    if "@" in parts.netloc:
        raise config_error(
            f"`{field}` {shown!r} holds a user name or password (user:pass@): the connector signs in with "
            f"`credentials` only. Give the URL without them, e.g. {example}."
        )
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        hint = " or https://cloud.uipath.com/<org>/<tenant>/reinfer_" if field == "api_endpoint" else ""
        raise config_error(f"`{field}` {shown!r} is not a URL: set it to e.g. {example}{hint}.")
    _refuse_non_ascii_host(text, parts, shown, field)
    try:
        connects_to = (parse_url(api_base_url(text)).host or "").strip("[]").lower()
        parts.port  # a port that is not a number raises here
    except ValueError:
        connects_to = ""
    if connects_to != parts.hostname.lower():
        raise config_error(
            f"`{field}` {shown!r} is read as host {parts.hostname!r} by one URL parser and {connects_to or 'nothing'!r} "
            f"by the HTTP client: give a plain URL, e.g. {example}."
        )
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
        raise config_error(
            f"`{field}` uses plain http:// for {parts.hostname!r}: the credentials would travel unencrypted. "  # ignore-https-check
            "Use https:// (plain http is only allowed for loopback hosts such as 127.0.0.1)."
        )
    if parts.query or parts.fragment:
        raise config_error(f"`{field}` must not contain a query or fragment: give the URL only.")


def _refuse_non_ascii_host(text: str, parts: SplitResult, shown: str, field: str) -> None:
    """An internationalised host (`tënant.reinfer.io`): the URL parsers read it differently (urllib keeps it,
    the HTTP client connects to its punycode), so it is refused with the ASCII URL to write instead."""
    host = parts.hostname or ""
    if host.isascii():
        return
    try:
        ascii_host = idna.encode(host, uts46=True, std3_rules=True).decode("ascii")
    except idna.IDNAError as error:
        raise config_error(
            f"`{field}` {shown!r} has a host, {host!r}, that is neither ASCII nor a valid internationalised "
            f"domain name ({error}): give the URL as UiPath shows it, e.g. https://acme.reinfer.io."
        )
    netloc = parts.netloc
    start = netloc.lower().rfind(host)
    if start < 0:  # the netloc spells the host in other case or form than urllib's lower-cased hostname
        netloc = ascii_host + (f":{parts.port}" if parts.port else "")
    else:
        netloc = netloc[:start] + ascii_host + netloc[start + len(host):]
    ascii_url = parts._replace(netloc=netloc).geturl()
    raise config_error(
        f"`{field}` {shown!r} has a host that is not ASCII ({host!r}). Write the host in its ASCII (punycode) "
        f"form: set `{field}` to {ascii_url}"
    )


def configured_streams(config: MutableMapping[str, Any]) -> List[CmStream]:
    """The `streams` entries as CmStream, refusing malformed or repeated entries by index."""
    entries = config.get("streams") or []
    if not isinstance(entries, list):
        raise config_error("`streams` must be a list of {project, dataset, stream} objects.")
    result: List[CmStream] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise config_error(f"`streams[{index}]` must be an object with project, dataset and stream.")
        missing = [key for key in ("project", "dataset", "stream") if not isinstance(entry.get(key), str) or not entry.get(key)]
        if missing:
            raise config_error(
                f"`streams[{index}]` lacks {', '.join(missing)}: each entry names a project, a dataset and a stream, "
                'e.g. {"project": "acme", "dataset": "collections", "stream": "triage"}.'
            )
        unknown = sorted(set(entry) - STREAM_ENTRY_KEYS)
        if unknown:
            # The spec stays open (Airbyte's checks want additionalProperties: true), so say what is ignored.
            logging.getLogger("airbyte").warning(
                f"`streams[{index}]`: ignoring unknown key(s) {', '.join(map(repr, unknown))}; an entry takes only "
                "project, dataset and stream."
            )
        for key in ("project", "dataset", "stream"):
            _refuse_dot_segment(f"streams[{index}].{key}", entry[key])
        cm = CmStream(entry["project"], entry["dataset"], entry["stream"])
        if "/" in cm.dataset or "/" in cm.stream or "/" in cm.project:
            raise config_error(f"`streams[{index}]`: names cannot contain '/'; give project, dataset and stream separately.")
        if cm.key in seen:
            raise config_error(f"`streams[{index}]` repeats `streams[{seen[cm.key]}]` ({cm.key}); list each stream once.")
        seen[cm.key] = index
        result.append(cm)
    return result


def _field_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate_against_spec(config: Mapping[str, Any], spec_schema: Mapping[str, Any]) -> None:
    """JSON-schema validation whose message names the field (the CDK's does not)."""
    errors = sorted(jsonschema.Draft7Validator(spec_schema).iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    described = []
    for error in errors[:5]:
        field = _field_path(error.absolute_path)
        if error.validator == "required" and isinstance(error.validator_value, list):
            # One error per missing property, each saying which one ("'api_token' is a required property").
            named = re.match(r"^'(.+)' is a required property$", error.message)
            missing = [name for name in error.validator_value if name not in (error.instance or {})]
            name = named.group(1) if named else (missing[0] if missing else "")
            field = f"{field}.{name}" if field and name else (field or name)
            hint = ((error.schema or {}).get("properties") or {}).get(name, {}).get("description", "")
        else:
            hint = (error.schema or {}).get("description", "")
        line = f"`{field or 'config'}`: {error.message}"
        if (error.schema or {}).get("airbyte_secret"):
            line = f"`{field}` is not valid: it must be a {(error.schema or {}).get('type', 'string')} (its value is not shown)"
        elif error.validator == "pattern":
            line = f"`{field}`: {error.instance!r} is not a valid value"
        described.append(line + (f" ({_first_sentence(hint)})" if hint else ""))
    raise config_error("Invalid configuration: " + "; ".join(described))


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def _refuse_dot_segment(field: str, value: Any) -> None:
    """"." and ".." pass the name patterns, but in a URL path they are resolved: the request would go elsewhere."""
    if value in (".", ".."):
        raise config_error(
            f"`{field}` is {value!r}, which is not a name: in the request's URL it would mean "
            f"{'this folder' if value == '.' else 'the parent folder'}. Give the {field.rsplit('.', 1)[-1]}'s name."
        )


# RFC 6750's b64token: the characters a Bearer token is made of. Real tokens are of these (the docs
# show them pasted into `Authorization: Bearer $REINFER_TOKEN`); a quote or backslash would be
# printed escaped (Python's repr in --debug header dicts, JSON), a form masking would have to chase.
_NOT_IN_A_TOKEN = set("\\\"'")


def validate_token(token: Any, field: str = "credentials.api_token") -> None:
    """The token must be something an HTTP header can carry; no message repeats it (validate_config registered it)."""
    if token is not None and not isinstance(token, str):
        raise config_error(f"`{field}` must be a string (the API token), not {type(token).__name__}: put the token in quotes.")
    if not isinstance(token, str) or not token.strip():
        raise config_error(f"`{field}` is missing: create one under Administration > My Account > API token.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        # A pasted trailing newline would make the HTTP library echo the header, token included.
        raise config_error(f"`{field}` contains spaces, line breaks or control characters: paste the token alone, without surrounding whitespace.")
    if len(token) < MIN_SECRET_LENGTH:
        raise config_error(
            f"`{field}` is {len(token)} characters long, too short to be an API token (they are long random strings): "
            "copy the whole token from Administration > My Account > API token."
        )
    if _NOT_IN_A_TOKEN & set(token):
        raise config_error(
            f"`{field}` contains a quote or a backslash, which no API token has: copy the token alone (without "
            "quotes) from Administration > My Account > API token."
        )
    try:
        token.encode("latin-1")
    except UnicodeEncodeError:
        raise config_error(
            f"`{field}` is not a valid API token: it contains characters (such as letters outside Western European "
            "alphabets, or typographic quotes) that no API token has and an HTTP header cannot carry. Copy the token "
            "again from Administration > My Account > API token."
        ) from None


def credential_secrets(config: Mapping[str, Any]) -> List[str]:
    """The secrets a config holds: the API token (also at the top level, where configs written before
    `credentials` hold it) and the client secret."""
    credentials = config.get("credentials") if isinstance(config.get("credentials"), Mapping) else {}
    found = [config.get("api_token"), credentials.get("api_token"), credentials.get("client_secret")]
    return [secret for secret in found if isinstance(secret, str)]


def as_migrated(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """`config` as the manifest's config_migrations leave it, for a config checked before the source migrated it:
    a top-level `api_token` without `credentials` is `credentials` {auth_type: api_token}."""
    if "api_token" not in config:
        return config
    migrated = {key: value for key, value in config.items() if key != "api_token"}
    if "credentials" not in config:
        migrated["credentials"] = {"auth_type": API_TOKEN, "api_token": config["api_token"]}
    return migrated


def validate_credentials(config: Mapping[str, Any]) -> None:
    """`credentials`: one of the two sign-in methods, complete, with a token endpoint the connector may call."""
    if "credentials" not in config and "api_token" in config:
        validate_token(config.get("api_token"), "api_token")  # as the user wrote it, before the migration
        return
    credentials = config.get("credentials")
    if not isinstance(credentials, Mapping):
        raise config_error(
            "`credentials` is missing: choose how the connector signs in, an External Application "
            '({"auth_type": "oauth2_client_credentials", "client_id": ..., "client_secret": ..., "scopes": ...}) or an '
            'API token ({"auth_type": "api_token", "api_token": ...}).'
        )
    kind = credentials.get("auth_type")
    if kind == API_TOKEN:
        validate_token(credentials.get("api_token"))
        return
    if kind != OAUTH:
        raise config_error(
            f"`credentials.auth_type` is {kind!r}: choose {OAUTH} (an External Application) or {API_TOKEN} (an API token)."
        )
    for name, what in (("client_id", "the App ID"), ("client_secret", "the App Secret")):
        value = credentials.get(name)
        if not isinstance(value, str) or not value.strip():
            raise config_error(
                f"`credentials.{name}` is missing: give {what} of the External Application (Automation Cloud > Admin > "
                "External Applications)."
            )
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise config_error(f"`credentials.{name}` contains spaces, line breaks or control characters: paste {what} alone.")
    scopes = credentials.get("scopes")
    if not isinstance(scopes, str) or not scopes.split():
        raise config_error(
            "`credentials.scopes` is missing: give the application scopes the External Application was granted for "
            "Communications Mining (IXP), space-separated, as listed under the application's Resources."
        )
    token_url = credentials.get("token_url")
    if token_url in (None, "") and default_token_url(config.get("api_endpoint")) is None:
        raise config_error(
            "`credentials.token_url` is missing: it defaults to https://cloud.uipath.com/identity_/connect/token only "
            "for tenants on https://cloud.uipath.com. For this `api_endpoint` (an Automation Suite install or a legacy "
            "*.reinfer.io tenant) give UiPath Identity's token endpoint, e.g. https://<host>/identity_/connect/token."
        )
    if token_url not in (None, ""):
        validate_endpoint(token_url, "credentials.token_url", "https://cloud.uipath.com/identity_/connect/token")


EARLIEST_START = datetime(1970, 1, 1, tzinfo=timezone.utc)


def validate_start_date(value: Any) -> None:
    """`start_date` must be a real time (the spec's pattern lets 2024-13-01 or T25:61:61 through), from 1970 on."""
    if value is None or value == "":
        return
    try:
        parsed = datetime.strptime(format_datetime(value, "%Y-%m-%dT%H:%M:%S%z"), "%Y-%m-%dT%H:%M:%S%z")
    except (TypeError, ValueError, OverflowError) as error:
        raise config_error(
            f"`start_date` {value!r} is not a date and time ({error}): give one such as 2024-01-01T00:00:00Z, or leave it empty."
        ) from None
    if parsed < EARLIEST_START:
        raise config_error(f"`start_date` {value!r} is before 1970-01-01T00:00:00Z: give a later time, or leave it empty for every comment.")


def validate_config(config: MutableMapping[str, Any], spec_schema: Optional[Mapping[str, Any]] = None) -> List[CmStream]:
    """Checks the config against the spec and what the spec cannot say; returns the CM streams."""
    for secret in credential_secrets(config):
        register_secret(secret)  # before any message could quote it
    for secret in endpoint_secrets(config.get("api_endpoint")):
        register_secret(secret)
    whole_numbers(config, _integer_settings(spec_schema))
    validate_credentials(config)  # before the spec: its oneOf error would say nothing useful
    if spec_schema is not None:
        validate_against_spec(as_migrated(config), spec_schema)
    validate_endpoint(config.get("api_endpoint"))
    validate_start_date(config.get("start_date"))
    _refuse_dot_segment("project", config.get("project"))
    validate_start_position(config)
    return configured_streams(config)


def validate_start_position(config: Mapping[str, Any]) -> None:
    """`start_position` is one of position_plan.START_POSITIONS (earlier values are remapped by the manifest);
    take_over_from_date needs a `start_date_for_streams` that is a real time, not in the future."""
    position = config.get("start_position") or IF_UNREAD
    if position not in START_POSITIONS:
        raise config_error(
            f"`start_position` is {position!r}: choose from_creation_if_unread (the default), current, "
            "take_over_from_creation or take_over_from_date (with start_date_for_streams)."
        )
    date = config.get("start_date_for_streams")
    if position != TAKE_OVER_FROM_DATE and date in (None, ""):
        return
    if position == TAKE_OVER_FROM_DATE and date in (None, ""):
        raise config_error(
            "`start_date_for_streams` is missing: `start_position` take_over_from_date resets each stream without "
            "state to this time, e.g. 2024-01-01T00:00:00Z. Set it, or choose another start_position."
        )
    if not isinstance(date, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T", date) or instant(date) is None:
        raise config_error(
            f"`start_date_for_streams` {date!r} is not a time: give an RFC 3339 date-time such as 2024-01-01T00:00:00Z."
        )
    if position == TAKE_OVER_FROM_DATE and instant(date) > datetime.now(timezone.utc) + SKEW:
        raise config_error(
            f"`start_date_for_streams` {date!r} is in the future: a reset there would skip every comment the stream "
            "holds until then. Give a past time, e.g. 2024-01-01T00:00:00Z."
        )


def _integer_settings(spec_schema: Optional[Mapping[str, Any]]):
    properties = (spec_schema or {}).get("properties") or {}
    return tuple(INTEGER_SETTINGS) + tuple(
        name for name, schema in properties.items() if isinstance(schema, Mapping) and schema.get("type") == "integer"
    )
