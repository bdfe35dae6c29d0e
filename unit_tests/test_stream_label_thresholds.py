"""stream_label_thresholds: each CM stream's label thresholds, flat, against the CDK's HttpMocker."""

import orjson
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse

from unit_tests.conftest import BASE, catalog, config, run_read

DATASET_ID = "a1a1a1a1a1a1a1a1"


def stream(name, model):
    return {"id": "s-" + name, "name": name, "title": name, "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "comment_filter": {}, **({"model": model} if model is not None else {})}


def test_one_row_per_label_threshold_with_the_stream_and_model_version():
    streams = [
        stream("triage", {"version": 3, "label_thresholds": [{"name": ["Billing", "Refund"], "threshold": 0.42},
                                                            {"name": "Billing", "threshold": 0.5},
                                                            {"name": ["Billing"], "threshold": 0.9}]}),
        stream("raw", None),
    ]
    with HttpMocker() as http:
        http.get(HttpRequest(f"{BASE}/v1/datasets/acme"),
                 HttpResponse(orjson.dumps({"status": "ok", "datasets": [{"id": DATASET_ID, "owner": "acme", "name": "collections"}]}).decode()))
        http.get(HttpRequest(f"{BASE}/v1/datasets/acme/collections/streams"),
                 HttpResponse(orjson.dumps({"status": "ok", "streams": streams}).decode()))
        output = run_read(config(streams=[], project="acme"), catalog("stream_label_thresholds", sync_mode=SyncMode.full_refresh))
    rows = sorted((r.record.data["stream"], r.record.data["label"], r.record.data.get("parent"), r.record.data["threshold"],
                   r.record.data["model_version"], r.record.data["project"], r.record.data["dataset"]) for r in output.records)
    # The stream without a model has none; "Billing" listed twice (as a string and as levels) keeps its first threshold.
    assert rows == [("triage", "Billing", None, 0.5, 3, "acme", "collections"),
                    ("triage", "Billing > Refund", "Billing", 0.42, 3, "acme", "collections")]
