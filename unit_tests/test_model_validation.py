"""model_validation against the CDK's HttpMocker: which versions are read, what a row holds, what is skipped."""

import json
from typing import Any, Dict, List

from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse

from unit_tests.conftest import BASE, catalog, config, run_read

ACME_ID, EMPTY_ID = "a1a1a1a1a1a1a1a1", "e0e0e0e0e0e0e0e0"


def ok(body: Dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(body=json.dumps(body), status_code=status)


def dataset(name: str, ds_id: str) -> Dict[str, Any]:
    return {"id": ds_id, "owner": "acme", "name": name, "title": name, "description": "", "created": "2024-01-01T00:00:00Z",
            "last_modified": "2024-01-01T00:00:00Z", "model_family": "english", "source_ids": [], "has_sentiment": False,
            "limited_access": False, "entity_defs": [], "general_fields": [], "label_groups": [], "label_defs": [],
            "_label_properties": [], "_timezone": "UTC", "_preferred_locales": {"default": "en", "preferences": []},
            "_dataset_flags": [], "_model_config": {}}


def trigger(name: str, ds_id: str, version=None) -> Dict[str, Any]:
    return {"id": f"s-{name}", "dataset_id": ds_id, "name": name, "title": name, "description": "",
            "created_at": "2024-01-01T00:00:00Z", "updated_at": None, "comment_filter": None,
            "model": None if version is None else {"version": version, "label_thresholds": []}}


def summary(version: int, score: int) -> Dict[str, Any]:
    return {"version": version, "labels": [{"name": "Billing > Refund", "parts": ["Billing", "Refund"]}], "entities": [],
            "num_reviewed_comments": 410, "num_labels": 1, "num_amber_labels": 2, "num_red_labels": 1,
            "mean_average_precision_safe": 0.71, "dataset_quality": "good", "dataset_score": score, "balance": 0.8,
            "balance_quality": "good", "coverage": 0.9, "coverage_quality": "excellent",
            "underperforming_labels_quality": None, "all_labels_quality": "good"}


def url(*parts: str) -> str:
    return "/".join([f"{BASE}/v1/datasets/acme", *parts])


def mock_tenant(http: HttpMocker, gone: int = 5) -> Dict[int, HttpRequest]:
    """acme/collections: streams on v3 (two) and none; tags live=3, staging=5 (5 no longer exists). acme/empty: no model."""
    http.get(HttpRequest(url=f"{BASE}/v1/datasets/acme"), ok({"status": "ok", "datasets": [dataset("collections", ACME_ID), dataset("empty", EMPTY_ID)]}))
    http.get(HttpRequest(url=url("collections", "streams")), ok({"status": "ok", "streams": [
        trigger("triage", ACME_ID, 3), trigger("urgent-only", ACME_ID, 3), trigger("raw", ACME_ID)]}))
    http.get(HttpRequest(url=url("empty", "streams")), ok({"status": "ok", "streams": [trigger("raw", EMPTY_ID)]}))
    http.get(HttpRequest(url=url("collections", "model-tags")), ok({"status": "ok", "model_tags": [
        {"name": "live", "version": 3, "updated_at": "2024-02-01T00:00:00Z"},
        {"name": "staging", "version": gone, "updated_at": "2024-03-01T00:00:00Z"}]}))
    http.get(HttpRequest(url=url("empty", "model-tags")), ok({"status": "ok", "model_tags": []}))
    requests = {3: HttpRequest(url=url("collections", "labellers", "3", "validation")),
                gone: HttpRequest(url=url("collections", "labellers", str(gone), "validation"))}
    http.get(requests[3], ok({"status": "ok", "validation": summary(3, 72)}))
    http.get(requests[gone], ok({"status": "error", "message": f"Model version {gone} not found"}, status=404))
    return requests


def rows(output) -> List[Dict[str, Any]]:
    return [r.record.data for r in output.records if r.record.stream == "model_validation"]


def logs(output) -> List[str]:
    return [m.log.message for m in output.logs]


def read_once(state=None):
    cfg = config(project="acme", streams=[])
    return run_read(cfg, catalog("model_validation", sync_mode=SyncMode.incremental), state)


def test_one_row_per_version_named_by_streams_or_tags_with_the_names_and_the_read_time():
    with HttpMocker() as http:
        requests = mock_tenant(http)
        output = read_once()
        # v3 is pinned by two streams and tagged live: read once.
        http.assert_number_of_calls(requests[3], 1)
    assert not output.errors, [e.trace.error.message for e in output.errors]
    [row] = rows(output)
    assert (row["project"], row["dataset"], row["dataset_id"], row["model_version"]) == ("acme", "collections", ACME_ID, 3)
    assert row["streams"] == ["triage", "urgent-only"] and row["model_tags"] == ["live"]
    assert row["dataset_score"] == 72 and row["dataset_quality"] == "good" and row["mean_average_precision_safe"] == 0.71
    assert row["num_amber_labels"] == 2 and row["num_red_labels"] == 1 and row["labels"][0]["parts"] == ["Billing", "Refund"]
    assert row["read_at"].endswith("Z") and row["read_at"][:2] == "20"


def test_a_version_that_no_longer_exists_and_a_dataset_without_a_model_are_skipped_with_a_log_line():
    with HttpMocker() as http:
        mock_tenant(http)
        output = read_once()
    assert not output.errors
    assert [r["model_version"] for r in rows(output)] == [3]
    messages = logs(output)
    assert any("model_validation: skipped a model version" in m and "Model version 5 not found" in m for m in messages), messages
    assert any("dataset acme/empty has no model version" in m for m in messages), messages


def test_two_syncs_give_two_rows_per_version_that_the_primary_key_keeps_apart():
    with HttpMocker() as http:
        mock_tenant(http)
        first = read_once()
        second = read_once(first.state_messages[-1].state and [first.state_messages[-1].state])
    key = lambda r: (r["project"], r["dataset"], r["model_version"], r["read_at"])  # noqa: E731
    both = rows(first) + rows(second)
    assert len(both) == 2 and len({key(r) for r in both}) == 2
    assert rows(second)[0]["read_at"] > rows(first)[0]["read_at"]
    assert second.state_messages[-1].state.stream.stream_state.state["read_at"] == rows(second)[0]["read_at"]
