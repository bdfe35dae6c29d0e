"""Config normalisation (run by the manifest) and the checks JSON schema cannot express."""

import ipaddress
from typing import Any, Dict, List, Mapping, MutableMapping, Optional
from urllib.parse import urlsplit

import jsonschema
from airbyte_cdk.sources.declarative.transformations.config_transformations.config_transformation import (
    ConfigTransformation,
)

from source_commsmining.api import CmStream
from source_commsmining.errors import config_error

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def api_base_url(api_endpoint: str) -> str:
    """`https://t.reinfer.io/`, `.../api` and `.../api/` all become `https://t.reinfer.io/api`."""
    base = api_endpoint.strip().rstrip("/")
    if base.lower().endswith("/api"):
        base = base[: -len("/api")]
    return base + "/api"


class AddApiBaseUrl(ConfigTransformation):
    """Adds `api_base_url`, derived from `api_endpoint`, for the manifest's requesters."""

    def transform(self, config: MutableMapping[str, Any]) -> None:
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
            missing = [name for name in error.validator_value if name not in (error.instance or {})]
            field = ".".join(filter(None, [field, missing[0] if missing else ""]))
        hint = (error.schema or {}).get("description", "") if error.validator != "required" else ""
        line = f"`{field or 'config'}`: {error.message}"
        if error.validator == "pattern":
            line = f"`{field}`: {error.instance!r} is not a valid value"
        described.append(line + (f" ({_first_sentence(hint)})" if hint else ""))
    raise config_error("Invalid configuration: " + "; ".join(described))


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def validate_config(config: MutableMapping[str, Any], spec_schema: Optional[Mapping[str, Any]] = None) -> List[CmStream]:
    """Checks the config against the spec and what the spec cannot say; returns the CM streams."""
    if spec_schema is not None:
        validate_against_spec(config, spec_schema)
    validate_endpoint(config.get("api_endpoint"))
    if not isinstance(config.get("api_token"), str) or not config["api_token"].strip():
        raise config_error("`api_token` is missing: create one under Administration > My Account > API token.")
    if any(ch.isspace() or ord(ch) < 32 for ch in config["api_token"]):
        # A pasted trailing newline would make the HTTP library echo the header, token included.
        raise config_error("`api_token` contains spaces or line breaks: paste the token alone, without surrounding whitespace.")
    return configured_streams(config)
