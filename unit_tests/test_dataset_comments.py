"""dataset_comments: the declarative stream over the dataset export, against the CDK's HttpMocker.

The clock is fixed (the manifest's `now_utc()`), so every request body is known: a window per 30 days
from `start_date`, `to` one microsecond past each window's inclusive end, `continuation` on later pages.
"""

from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

import pytest
from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.declarative.interpolation import jinja
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse
from airbyte_cdk.test.state_builder import StateBuilder

from unit_tests.conftest import BASE, catalog, config, run_read

import orjson

NOW = datetime(2024, 3, 1, tzinfo=timezone.utc)
DATASET_ID = "a1a1a1a1a1a1a1a1"
EXPORT = f"{BASE}/v1/datasets/acme/collections/export"
WINDOW_1 = {"order_by": "created_at", "from": "2024-01-01T00:00:00.000000Z", "to": "2024-01-31T00:00:00.000000Z", "limit": 256}
WINDOW_2 = {"order_by": "created_at", "from": "2024-01-31T00:00:00.000000Z", "to": "2024-03-01T00:00:00.000001Z", "limit": 256}


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setitem(jinja._ENVIRONMENT.globals, "now_utc", lambda: NOW)


def cfg(**extra: Any) -> Dict[str, Any]:
    return config(streams=[], project="acme", start_date="2024-01-01T00:00:00Z", dataset_comments_window_days=30, **extra)


def exported(uid: str, created_at: str, **comment: Any) -> Dict[str, Any]:
    body = {"uid": uid, "id": uid.split(".")[1], "source_id": uid.split(".")[0], "thread_id": "t-" + uid, "timestamp": created_at,
            "user_properties": {}, "messages": [], "attachments": [], "last_modified": created_at, "created_at": created_at}
    body.update(comment)
    return {"comment": body,
            "annotations": {"labels": {"assigned": [{"name": "Billing > Refund", "sentiment": "positive",
                                                     "metadata": {"user_id": "u1", "timestamp": created_at}}]}},
            "predictions": {"labels": [{"name": ["Billing", "Refund"], "probability": 0.9, "sentiment": 0.5}]},
            "thread_properties": {"duration": None, "response_time": None, "num_messages": 1, "num_participants": 2,
                                  "first_sender": "a@example.com"}}


def page(comments: List[Dict[str, Any]], continuation: Optional[str] = None) -> HttpResponse:
    return HttpResponse(orjson.dumps({"status": "ok", "comments": comments, "continuation": continuation}).decode(), 200)


def mock_datasets(http: HttpMocker) -> None:
    http.get(HttpRequest(f"{BASE}/v1/datasets/acme"),
             HttpResponse(orjson.dumps({"status": "ok", "datasets": [{"id": DATASET_ID, "owner": "acme", "name": "collections"}]}).decode()))


def records(output) -> List[Dict[str, Any]]:
    return [r.record.data for r in output.records]


def test_reads_every_window_and_page_of_each_dataset_with_promoted_columns():
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=WINDOW_1), page([exported("s1.c1", "2024-01-02T00:00:00.000000Z")], "next"))
        http.post(HttpRequest(EXPORT, body={**WINDOW_1, "continuation": "next"}), page([exported("s1.c2", "2024-01-03T00:00:00Z")]))
        http.post(HttpRequest(EXPORT, body=WINDOW_2), page([exported("s1.c3", "2024-02-10T00:00:00.000000Z", thread_id=None)]))
        output = run_read(cfg(), catalog("dataset_comments"))
    got = {r["uid"]: r for r in records(output)}
    assert sorted(got) == ["s1.c1", "s1.c2", "s1.c3"]
    first = got["s1.c1"]
    assert (first["project"], first["dataset"], first["source_id"], first["comment_id"]) == ("acme", "collections", "s1", "c1")
    assert first["has_reviewed_labels"] is True and first["reviewed_label_count"] == first["predicted_label_count"] == 1
    assert first["annotations"]["labels"]["assigned"][0]["name"] == "Billing > Refund"
    assert first["thread_properties"]["num_messages"] == 1
    assert got["s1.c3"].get("thread_id") is None  # null, not the string "None"
    final = output.state_messages[-1].state.stream.stream_state.__dict__
    assert final["states"][0]["partition"]["dataset_id"] == DATASET_ID
    assert final["states"][0]["cursor"]["created_at"] == "2024-02-10T00:00:00.000000Z"


def test_a_comment_on_the_next_windows_start_is_left_to_that_window():
    # An API whose `to` is inclusive sends the comment uploaded exactly on the next window's start twice.
    edge = exported("s1.edge", "2024-01-31T00:00:00.000000Z")
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=WINDOW_1), page([exported("s1.c1", "2024-01-02T00:00:00.000000Z"), edge]))
        http.post(HttpRequest(EXPORT, body=WINDOW_2), page([edge]))
        output = run_read(cfg(), catalog("dataset_comments"))
    assert [r["uid"] for r in records(output)].count("s1.edge") == 1


def test_an_incremental_sync_starts_at_each_datasets_cursor_minus_the_lookback():
    state = StateBuilder().with_stream_state("dataset_comments", {
        "states": [{"partition": {"dataset_id": DATASET_ID, "parent_slice": {}}, "cursor": {"created_at": "2024-02-20T00:00:00.000000Z"}}],
    }).build()
    window = {"order_by": "created_at", "from": "2024-02-18T00:00:00.000000Z", "to": "2024-03-01T00:00:00.000001Z", "limit": 256}
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=window), page([exported("s1.c9", "2024-02-25T00:00:00.000000Z")]))
        output = run_read(cfg(dataset_comments_lookback_days=2), catalog("dataset_comments"), state)
    assert [r["uid"] for r in records(output)] == ["s1.c9"]


def test_a_comment_without_uid_fails_naming_the_dataset_and_the_continuation():
    broken = exported("s1.c1", "2024-01-02T00:00:00.000000Z")
    del broken["comment"]["uid"]
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=WINDOW_1), page([exported("s1.c0", "2024-01-01T10:00:00.000000Z")], "p2"))
        http.post(HttpRequest(EXPORT, body={**WINDOW_1, "continuation": "p2"}), page([broken]))
        http.post(HttpRequest(EXPORT, body=WINDOW_2), page([]))
        output = run_read(cfg(), catalog("dataset_comments", sync_mode=SyncMode.full_refresh), expecting_exception=True)
    messages = " ".join(error.trace.error.message for error in output.errors)
    assert "acme/collections" in messages and "continuation p2" in messages and "entry 0 of the page" in messages
