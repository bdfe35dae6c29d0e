"""Config normalisation (run by the manifest) and the checks JSON schema cannot express."""

import ipaddress
from typing import Any, Dict, List, MutableMapping
from urllib.parse import urlsplit

from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.transformations.config_transformations.config_transformation import (
    ConfigTransformation,
)
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.api import CmStream

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


def _config_error(message: str) -> AirbyteTracedException:
    return AirbyteTracedException(message=message, internal_message=message, failure_type=FailureType.config_error)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint(endpoint: Any) -> None:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise _config_error("`api_endpoint` is missing: set it to your tenant URL, e.g. https://acme.reinfer.io.")
    parts = urlsplit(endpoint.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _config_error(
            f"`api_endpoint` {endpoint!r} is not a URL: set it to your tenant URL, e.g. https://acme.reinfer.io "
            "or https://cloud.uipath.com/<org>/<tenant>/reinfer_."
        )
    if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
        raise _config_error(
            f"`api_endpoint` uses plain http:// for {parts.hostname!r}: the API token would travel unencrypted. "
            "Use https:// (plain http is only allowed for loopback hosts such as 127.0.0.1)."
        )
    if parts.query or parts.fragment:
        raise _config_error("`api_endpoint` must not contain a query or fragment: give the tenant URL only.")


def configured_streams(config: MutableMapping[str, Any]) -> List[CmStream]:
    """The `streams` entries as CmStream, refusing malformed or repeated entries by index."""
    entries = config.get("streams") or []
    if not isinstance(entries, list):
        raise _config_error("`streams` must be a list of {project, dataset, stream} objects.")
    result: List[CmStream] = []
    seen: Dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _config_error(f"`streams[{index}]` must be an object with project, dataset and stream.")
        missing = [key for key in ("project", "dataset", "stream") if not isinstance(entry.get(key), str) or not entry.get(key)]
        if missing:
            raise _config_error(
                f"`streams[{index}]` lacks {', '.join(missing)}: each entry names a project, a dataset and a stream, "
                'e.g. {"project": "acme", "dataset": "collections", "stream": "triage"}.'
            )
        cm = CmStream(entry["project"], entry["dataset"], entry["stream"])
        if "/" in cm.dataset or "/" in cm.stream or "/" in cm.project:
            raise _config_error(f"`streams[{index}]`: names cannot contain '/'; give project, dataset and stream separately.")
        if cm.key in seen:
            raise _config_error(f"`streams[{index}]` repeats `streams[{seen[cm.key]}]` ({cm.key}); list each stream once.")
        seen[cm.key] = index
        result.append(cm)
    return result


def validate_config(config: MutableMapping[str, Any]) -> List[CmStream]:
    """Checks what the spec's JSON schema cannot; returns the configured CM streams."""
    validate_endpoint(config.get("api_endpoint"))
    if not isinstance(config.get("api_token"), str) or not config["api_token"].strip():
        raise _config_error("`api_token` is missing: create one under Administration > My Account > API token.")
    return configured_streams(config)
