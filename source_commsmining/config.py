"""Config normalisation (run by the manifest) and the checks JSON schema cannot express."""

import ipaddress
import logging
import re
from typing import Any, Dict, List, Mapping, MutableMapping, Optional
from urllib.parse import urlsplit

import jsonschema
from airbyte_cdk.sources.declarative.transformations.config_transformations.config_transformation import (
    ConfigTransformation,
)

from source_commsmining.api import CmStream
from source_commsmining.errors import config_error, register_secret
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


class AddApiBaseUrl(ConfigTransformation):
    """Adds `api_base_url`, derived from `api_endpoint`, for the manifest's requesters; integer settings
    given as whole-number floats (16.0) become integers."""

    def transform(self, config: MutableMapping[str, Any]) -> None:
        whole_numbers(config)
        endpoint = config.get("api_endpoint")
        if isinstance(endpoint, str) and endpoint.strip():
            config["api_base_url"] = api_base_url(endpoint)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint(endpoint: Any) -> None:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise config_error("`api_endpoint` is missing: set it to your tenant URL, e.g. https://acme.reinfer.io.")
    parts = urlsplit(endpoint.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise config_error(
            f"`api_endpoint` {endpoint!r} is not a URL: set it to your tenant URL, e.g. https://acme.reinfer.io "
            "or https://cloud.uipath.com/<org>/<tenant>/reinfer_."
        )
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
        raise config_error(
            f"`api_endpoint` uses plain http:// for {parts.hostname!r}: the API token would travel unencrypted. "  # ignore-https-check
            "Use https:// (plain http is only allowed for loopback hosts such as 127.0.0.1)."
        )
    if parts.query or parts.fragment:
        raise config_error("`api_endpoint` must not contain a query or fragment: give the tenant URL only.")


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
        hint = (error.schema or {}).get("description", "") if error.validator != "required" else ""
        line = f"`{field or 'config'}`: {error.message}"
        if error.validator == "pattern":
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


def validate_token(token: Any) -> None:
    """The token must be something an HTTP header can carry; no message repeats it (validate_config registered it)."""
    if not isinstance(token, str) or not token.strip():
        raise config_error("`api_token` is missing: create one under Administration > My Account > API token.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in token):
        # A pasted trailing newline would make the HTTP library echo the header, token included.
        raise config_error("`api_token` contains spaces, line breaks or control characters: paste the token alone, without surrounding whitespace.")
    try:
        token.encode("latin-1")
    except UnicodeEncodeError:
        raise config_error(
            "`api_token` is not a valid API token: it contains characters (such as letters outside Western European "
            "alphabets, or typographic quotes) that no API token has and an HTTP header cannot carry. Copy the token "
            "again from Administration > My Account > API token."
        ) from None


def validate_config(config: MutableMapping[str, Any], spec_schema: Optional[Mapping[str, Any]] = None) -> List[CmStream]:
    """Checks the config against the spec and what the spec cannot say; returns the CM streams."""
    if isinstance(config.get("api_token"), str):
        register_secret(config["api_token"])  # before any message could quote it
    whole_numbers(config, _integer_settings(spec_schema))
    if spec_schema is not None:
        validate_against_spec(config, spec_schema)
    validate_endpoint(config.get("api_endpoint"))
    validate_token(config.get("api_token"))
    _refuse_dot_segment("project", config.get("project"))
    validate_start_position(config)
    return configured_streams(config)


def validate_start_position(config: Mapping[str, Any]) -> None:
    """`start_position` date needs a `start_date_for_streams` that is a real time (the pattern lets 2024-13-01 by)."""
    position = config.get("start_position", "stream_created")
    if position not in ("stream_created", "date", "current"):
        raise config_error(
            f"`start_position` is {position!r}: choose stream_created (the default), date (with "
            "start_date_for_streams) or current."
        )
    date = config.get("start_date_for_streams")
    if position != "date" and date in (None, ""):
        return
    if position == "date" and date in (None, ""):
        raise config_error(
            "`start_date_for_streams` is missing: `start_position` date resets each stream without state to this "
            "time, e.g. 2024-01-01T00:00:00Z. Set it, or choose start_position stream_created or current."
        )
    if not isinstance(date, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T", date) or instant(date) is None:
        raise config_error(
            f"`start_date_for_streams` {date!r} is not a time: give an RFC 3339 date-time such as 2024-01-01T00:00:00Z."
        )


def _integer_settings(spec_schema: Optional[Mapping[str, Any]]):
    properties = (spec_schema or {}).get("properties") or {}
    return tuple(INTEGER_SETTINGS) + tuple(
        name for name, schema in properties.items() if isinstance(schema, Mapping) and schema.get("type") == "integer"
    )
