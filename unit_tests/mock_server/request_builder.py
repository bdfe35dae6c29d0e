"""The requests the declarative streams send, as the CDK's HttpMocker matches them (URL, query, token)."""

from typing import Dict, Optional, Union

from airbyte_cdk.test.mock_http import HttpRequest
from airbyte_cdk.test.mock_http.request import ANY_QUERY_PARAMS

from unit_tests.mock_server.config import API_BASE_URL, API_TOKEN

COMMENTS_PAGE_SIZE = "256"


class CmRequestBuilder:
    """One Communications Mining endpoint; `build()` gives the HttpRequest to mock."""

    @classmethod
    def sources_endpoint(cls, project: Optional[str] = None) -> "CmRequestBuilder":
        return cls(f"v1/sources/{project}" if project else "v1/sources")

    @classmethod
    def datasets_endpoint(cls, project: Optional[str] = None) -> "CmRequestBuilder":
        return cls(f"v1/datasets/{project}" if project else "v1/datasets")

    @classmethod
    def dataset_endpoint(cls, owner: str, name: str) -> "CmRequestBuilder":
        return cls(f"v1/datasets/{owner}/{name}")

    @classmethod
    def dataset_streams_endpoint(cls, owner: str, name: str) -> "CmRequestBuilder":
        return cls(f"v1/datasets/{owner}/{name}/streams")

    @classmethod
    def comments_endpoint(cls, owner: str, source: str) -> "CmRequestBuilder":
        return cls(f"_private/sources/{owner}/{source}/comments")

    def __init__(self, resource: str) -> None:
        self._resource = resource
        self._query_params: Union[str, Dict[str, str]] = {}

    def with_from_timestamp(self, from_timestamp: str, to_timestamp: str) -> "CmRequestBuilder":
        """A comments export's first page: from the cursor's start to the sync's start, 256 comments a page, with their thread properties."""
        self._query_params = {"from_timestamp": from_timestamp, "to_timestamp": to_timestamp, "limit": COMMENTS_PAGE_SIZE, "include_thread_properties": "true"}
        return self

    def with_after(self, continuation: str, to_timestamp: str) -> "CmRequestBuilder":
        """A comments export's next page: after the last page's continuation, no from_timestamp."""
        self._query_params = {"after": continuation, "to_timestamp": to_timestamp, "limit": COMMENTS_PAGE_SIZE, "include_thread_properties": "true"}
        return self

    def with_any_query_params(self) -> "CmRequestBuilder":
        self._query_params = ANY_QUERY_PARAMS
        return self

    def build(self) -> HttpRequest:
        return HttpRequest(
            url=f"{API_BASE_URL}/{self._resource}",
            query_params=self._query_params or None,
            headers={"Authorization": f"Bearer {API_TOKEN}", "Accept": "application/json"},
        )
