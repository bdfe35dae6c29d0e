"""How the dataset history holds an export page: its places in the backlog taken before it is parsed, parsed once."""

import threading
from typing import Any, Dict, List, Optional

import orjson
import pytest
import requests

from source_commsmining import backlog, history
from source_commsmining.history import DatasetCommentsExtractor, ExportContinuation

WINDOW = {"order_by": "created_at", "from": "2024-01-01T00:00:00.000000Z", "to": "2024-02-01T00:00:00.000000Z"}


def item(uid: str, created_at: str) -> Dict[str, Any]:
    return {"comment": {"uid": uid, "id": uid.split(".")[1], "source_id": "s", "created_at": created_at},
            "annotations": {"labels": {"assigned": []}}, "predictions": {"labels": []}}


def page(comments: List[Dict[str, Any]], continuation: Optional[str] = None, limit: Optional[int] = 5) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = orjson.dumps({"status": "ok", "comments": comments, "continuation": continuation})
    body = dict(WINDOW, **({"limit": limit} if limit is not None else {}))
    response.request = requests.Request("POST", "https://acme.reinfer.io/api/v1/datasets/acme/claims/export", json=body).prepare()
    return response


@pytest.fixture
def parses(monkeypatch):
    """How many times an export page was parsed."""
    count = []
    decode = history.decode

    def counted(*args, **kwargs):
        count.append(1)
        return decode(*args, **kwargs)

    monkeypatch.setattr(history, "decode", counted)
    return count


@pytest.fixture
def waiting():
    try:
        yield backlog.start(backlog.Backlog(limit=8, stall_s=30))
    finally:
        backlog.stop()


def test_the_next_page_is_the_continuation_the_extractor_read_without_parsing_the_page_again(parses):
    response = page([item("s.1", "2024-01-02T00:00:00Z")], continuation="next-page")
    assert len(list(DatasetCommentsExtractor().extract_records(response))) == 1
    assert ExportContinuation().next_page_token(response, 1, None) == "next-page"
    assert len(parses) == 1


def test_the_last_page_ends_the_partition():
    response = page([item("s.1", "2024-01-02T00:00:00Z")], continuation=None)
    list(DatasetCommentsExtractor().extract_records(response))
    assert ExportContinuation().next_page_token(response, 1, None) is None


def test_a_page_the_extractor_did_not_see_is_parsed_for_its_continuation_rather_than_ending_the_read(parses):
    response = page([item("s.1", "2024-01-02T00:00:00Z")], continuation="next-page")
    assert ExportContinuation().next_page_token(response, 1, None) == "next-page"
    assert len(parses) == 1


def test_a_page_waits_for_its_places_before_it_is_parsed(parses, waiting):
    waiting.enter(6)  # six records handed over and not yet written: a page of 5 does not fit under 8
    records = []
    reader = threading.Thread(target=lambda: records.extend(DatasetCommentsExtractor().extract_records(
        page([item("s.1", "2024-01-02T00:00:00Z")]))), daemon=True)
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and not parses  # waiting, and the page not parsed yet
    waiting.leave(6)
    reader.join(5)
    assert len(records) == 1 and len(parses) == 1


def test_places_a_page_did_not_fill_are_given_back_once_it_is_read(waiting):
    comments = [item("s.1", "2024-01-02T00:00:00Z"), item("s.2", "2023-12-31T00:00:00Z"), item("s.3", "2024-01-03T00:00:00Z")]
    records = list(DatasetCommentsExtractor().extract_records(page(comments, limit=5)))
    assert [r["uid"] for r in records] == ["s.1", "s.3"]  # s.2 is the previous window's
    assert waiting.most == 5 and waiting.unwritten == 2  # the page's 5 places, then the 2 records still to write


def test_a_page_with_more_comments_than_its_limit_counts_each_one():
    waiting = backlog.start(backlog.Backlog(limit=100, stall_s=30))
    try:
        comments = [item(f"s.{i}", "2024-01-02T00:00:00Z") for i in range(4)]
        assert len(list(DatasetCommentsExtractor().extract_records(page(comments, limit=2)))) == 4
        assert waiting.unwritten == 4
    finally:
        backlog.stop()
