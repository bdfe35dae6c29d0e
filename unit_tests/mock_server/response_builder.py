"""Response bodies in the API's shapes (api-shapes/): a list endpoint's `{"status": "ok", <key>: [...]}`."""

import json
from typing import Any, Dict, List, Optional

from airbyte_cdk.test.mock_http import HttpResponse


def a_source(owner: str, name: str, source_id: str) -> Dict[str, Any]:
    return {"id": source_id, "owner": owner, "name": name, "title": name.title(), "created_at": "2023-12-01T00:00:00Z"}


def a_dataset(owner: str, name: str, dataset_id: str, **extra: Any) -> Dict[str, Any]:
    dataset = {
        "id": dataset_id, "owner": owner, "name": name, "title": name.title(), "created": "2023-12-04T00:00:00.000000Z",
        "last_modified": "2023-12-04T00:00:00.000000Z", "source_ids": [], "has_sentiment": False,
        "model_family": "english", "label_defs": [], "entity_defs": [],
    }
    dataset.update(extra)
    return dataset


def a_stream(name: str, dataset_id: str) -> Dict[str, Any]:
    return {
        "id": f"stream-{name}", "dataset_id": dataset_id, "name": name, "title": name.title(),
        "created_at": "2023-12-05T00:00:00.000000Z", "updated_at": "2023-12-05T00:00:00.000000Z",
        "comment_filter": None, "label_threshold_filter": None, "model": {"version": 3, "label_thresholds": []},
    }


def a_comment(source_id: str, number: int, timestamp: str) -> Dict[str, Any]:
    comment_id = f"{number:016x}"
    return {
        "uid": f"{source_id}.{comment_id}", "id": comment_id, "source_id": source_id, "thread_id": None,
        "timestamp": timestamp, "created_at": timestamp, "user_properties": {}, "messages": [], "attachments": [],
    }


class CmResponseBuilder:
    """A 200 answer carrying `records` under `key`; `with_continuation` adds the next page's token (comments)."""

    def __init__(self, key: str, records: Optional[List[Dict[str, Any]]] = None) -> None:
        self._body: Dict[str, Any] = {"status": "ok", key: list(records or [])}

    @classmethod
    def sources(cls, *sources: Dict[str, Any]) -> "CmResponseBuilder":
        return cls("sources", list(sources))

    @classmethod
    def datasets(cls, *datasets: Dict[str, Any]) -> "CmResponseBuilder":
        return cls("datasets", list(datasets))

    @classmethod
    def streams(cls, *streams: Dict[str, Any]) -> "CmResponseBuilder":
        return cls("streams", list(streams))

    @classmethod
    def dataset(cls, dataset: Dict[str, Any]) -> "CmResponseBuilder":
        builder = cls("dataset")
        builder._body["dataset"] = dataset
        return builder

    @classmethod
    def comments(cls, *comments: Dict[str, Any]) -> "CmResponseBuilder":
        builder = cls("comments", list(comments))
        builder._body["continuation"] = None
        return builder

    def with_continuation(self, continuation: str) -> "CmResponseBuilder":
        self._body["continuation"] = continuation
        return self

    def build(self) -> HttpResponse:
        return HttpResponse(body=json.dumps(self._body), status_code=200)


def an_error(status_code: int, message: str) -> HttpResponse:
    return HttpResponse(body=json.dumps({"status": "error", "message": message}), status_code=status_code)
