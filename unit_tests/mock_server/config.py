"""Configs for the mock-server tests of the declarative streams."""

from typing import Any, Dict, List

API_ENDPOINT = "https://acme.reinfer.io"
API_BASE_URL = f"{API_ENDPOINT}/api"
API_TOKEN = "mock-server-token-5a4b3c2d1e"


class ConfigBuilder:
    """A valid config for the tenant at API_ENDPOINT; each `with_` sets one setting."""

    def __init__(self) -> None:
        self._config: Dict[str, Any] = {"api_endpoint": API_ENDPOINT, "api_token": API_TOKEN, "max_retries": 0}

    def with_project(self, project: str) -> "ConfigBuilder":
        self._config["project"] = project
        return self

    def with_start_date(self, start_date: str) -> "ConfigBuilder":
        self._config["start_date"] = start_date
        return self

    def with_comments_lookback_days(self, days: int) -> "ConfigBuilder":
        self._config["comments_lookback_days"] = days
        return self

    def with_comments_in_one_window(self) -> "ConfigBuilder":
        """`comments` reads each source's range in one window (the paging tests mock one request per page)."""
        self._config["comments_window_days"] = 36500
        return self

    def with_streams(self, streams: List[Dict[str, str]]) -> "ConfigBuilder":
        self._config["streams"] = streams
        return self

    def build(self) -> Dict[str, Any]:
        return dict(self._config)
