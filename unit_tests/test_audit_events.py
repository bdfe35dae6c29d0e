"""audit_events against the CDK's HttpMocker: the query's body, continuation paging, the cursor and the 403."""

import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from airbyte_cdk.models import FailureType, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest, HttpResponse
from airbyte_cdk.test.state_builder import StateBuilder

from unit_tests.conftest import BASE, TOKEN, config, run_read

QUERY = f"{BASE}/v1/audit_events/query"
EPOCH = "1970-01-01T00:00:00.000000Z"


class Body(dict):
    """A query body to match: these keys exactly, and `filter.timestamp.maximum` the time of the sync (not known in advance).

    HttpMocker compares bodies with ==; a dict subclass's __eq__ is asked first.
    """

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, dict):
            return False
        maximum = (((other.get("filter") or {}).get("timestamp") or {}).get("maximum"))
        try:
            sent = datetime.strptime(maximum, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        except (TypeError, ValueError):
            return False
        if abs((datetime.now(timezone.utc) - sent).total_seconds()) > 120:
            return False
        stripped = json.loads(json.dumps(other))
        del stripped["filter"]["timestamp"]["maximum"]
        return stripped == dict(self)

    __hash__ = None


def query(minimum: str, continuation: Optional[str] = None) -> HttpRequest:
    body = {"limit": 128, "filter": {"timestamp": {"minimum": minimum}}}
    if continuation:
        body["continuation"] = continuation
    return HttpRequest(url=QUERY, body=Body(body))


def event(i: int) -> Dict[str, Any]:
    return {"event_id": f"ev{i:04d}", "event_type": "login", "timestamp": f"2024-03-01T00:00:{i:02d}.000000Z",
            "actor_user_id": "u1", "actor_tenant_id": "t1", "tenant_ids": ["t1"], "user_ids": None, "source_ids": None,
            "dataset_ids": ["d1"], "trigger_ids": None, "project_ids": None}


def page(events: List[Dict[str, Any]], continuation: Optional[str]) -> HttpResponse:
    body = {"status": "ok", "audit_events": events, "tenants": [{"id": "t1", "name": "tenant"}], "continuation": continuation}
    return HttpResponse(body=json.dumps(body), status_code=200)


def audit_catalog(*also: str):
    builder = CatalogBuilder().with_stream("audit_events", SyncMode.incremental)
    for name in also:
        builder = builder.with_stream(name, SyncMode.full_refresh)
    return builder.build()


def rows(output, stream: str = "audit_events") -> List[Dict[str, Any]]:
    return [r.record.data for r in output.records if r.record.stream == stream]


def test_pages_through_the_continuation_with_the_same_window_and_keeps_every_field():
    with HttpMocker() as http:
        http.post(query(EPOCH), page([event(1), event(2)], "next-1"))
        http.post(query(EPOCH, "next-1"), page([event(3)], None))
        output = run_read(config(streams=[]), audit_catalog())
    assert not output.errors
    assert [r["event_id"] for r in rows(output)] == ["ev0001", "ev0002", "ev0003"]
    assert rows(output)[0]["dataset_ids"] == ["d1"] and rows(output)[0]["actor_tenant_id"] == "t1"
    assert output.most_recent_state.stream_state.timestamp == "2024-03-01T00:00:03.000000Z"


def test_an_incremental_sync_asks_from_the_last_synced_timestamp_on():
    state = StateBuilder().with_stream_state("audit_events", {"timestamp": "2024-03-01T00:00:03.000000Z"}).build()
    with HttpMocker() as http:
        http.post(query("2024-03-01T00:00:03.000000Z"), page([event(3), event(4)], None))
        output = run_read(config(streams=[]), audit_catalog(), state)
    assert not output.errors
    assert [r["event_id"] for r in rows(output)] == ["ev0003", "ev0004"]  # the boundary event again: dedup on event_id
    assert output.most_recent_state.stream_state.timestamp == "2024-03-01T00:00:04.000000Z"


def test_403_fails_audit_events_naming_the_permission_and_the_role_and_the_other_streams_are_delivered():
    sources = {"status": "ok", "sources": [{"id": "s1", "owner": "acme", "name": "inbox"}]}
    with HttpMocker() as http:
        http.post(query(EPOCH), HttpResponse(body=json.dumps({"status": "error", "message": f"Forbidden ({TOKEN})"}), status_code=403))
        http.get(HttpRequest(url=f"{BASE}/v1/sources"), HttpResponse(body=json.dumps(sources), status_code=200))
        output = run_read(config(streams=[]), audit_catalog("sources"), expecting_exception=True)
    assert [r["id"] for r in rows(output, "sources")] == ["s1"]
    audit_errors = [e.trace.error for e in output.errors if e.trace.error.stream_descriptor and e.trace.error.stream_descriptor.name == "audit_events"]
    assert audit_errors, [e.trace.error.message for e in output.errors]
    message = audit_errors[0].message
    assert '"Read audit logs"' in message and "Audit Log Viewer role" in message and "audit_events" in message
    assert audit_errors[0].failure_type == FailureType.config_error
    assert TOKEN not in message and "****" in message  # the server echoed the token; the message masks it
