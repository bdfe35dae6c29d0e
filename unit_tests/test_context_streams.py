"""datasets, streams, label_defs and comments: the declarative context streams, against requests_mock."""

from typing import Any, Dict, List
from urllib.parse import parse_qs, urlsplit

import requests_mock
from airbyte_cdk.models import AirbyteStateBlob, SyncMode
from airbyte_cdk.test.state_builder import StateBuilder

from unit_tests.conftest import BASE, catalog, comment, config, run_read

ACME_ID, GLOBEX_ID = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2"
INBOX_ID, CLAIMS_ID = "18ba5ce699f8da1f", "29cb6df7aa09eb20"


def dataset(owner: str, name: str, ds_id: str, **extra: Any) -> Dict[str, Any]:
    d = {
        "id": ds_id,
        "owner": owner,
        "name": name,
        "title": name.title(),
        "created": "2023-12-04T00:00:00.000000Z",
        "last_modified": "2023-12-04T00:00:00.000000Z",
        "source_ids": [INBOX_ID],
        "has_sentiment": False,
        "model_family": "english",
        "label_defs": [
            {"name": "Billing", "title": "Billing", "description": "Money.", "instructions": "Money."},
            {"name": "Billing > Refund", "description": "Refunds.", "instructions": "Give it back."},
            {"name": "Billing > Refund > Partial", "description": "Part of it."},
        ],
        "entity_defs": [],
        "a_future_key": {"kept": True},
    }
    d.update(extra)
    return d


DATASETS = [dataset("acme", "collections", ACME_ID), dataset("globex", "claims-ds", GLOBEX_ID)]


def cm_stream(name: str, ds_id: str) -> Dict[str, Any]:
    return {
        "id": f"s-{name}",
        "dataset_id": ds_id,
        "name": name,
        "title": name,
        "created_at": "2023-12-05T00:00:00.000000Z",
        "updated_at": "2023-12-05T00:00:00.000000Z",
        "comment_filter": {"user_properties": {"string:Priority": {"one_of": ["Urgent"]}}},
        "label_threshold_filter": None,
        "model": {"version": 3, "label_thresholds": [{"name": ["Billing", "Refund"], "threshold": 0.42}]},
    }


def source(owner: str, name: str, src_id: str) -> Dict[str, Any]:
    return {"id": src_id, "owner": owner, "name": name, "title": name, "created_at": "2023-12-01T00:00:00Z"}


SOURCES = [source("acme", "inbox", INBOX_ID), source("globex", "claims", CLAIMS_ID)]


def comments_url(owner: str, name: str) -> str:
    return f"{BASE}/_private/sources/{owner}/{name}/comments"


def page(comments: List[Dict[str, Any]], continuation=None) -> Dict[str, Any]:
    return {"status": "ok", "comments": comments, "continuation": continuation}


def data(output, stream: str) -> List[Dict[str, Any]]:
    return [r.record.data for r in output.records if r.record.stream == stream]


def qs(request) -> Dict[str, List[str]]:
    # requests_mock lower-cases `.qs`; parse the raw query to compare timestamps exactly.
    return parse_qs(urlsplit(request.url).query)


def state_dict(state_message) -> Dict[str, Any]:
    blob = state_message.state.stream.stream_state
    return blob.__dict__ if isinstance(blob, AirbyteStateBlob) else blob


def cursor_by_source(state: Dict[str, Any]) -> Dict[str, str]:
    return {entry["partition"]["source_id"]: entry["cursor"]["timestamp"] for entry in state["states"]}


def comments_catalog():
    return catalog("comments", sync_mode=SyncMode.incremental)


def one_window(**overrides: Any) -> Dict[str, Any]:
    """A config whose `comments` windows span the whole history: one export per source, as the mocks answer
    the same whatever the window (the windows themselves: the tests below and test_comments_windows_e2e.py)."""
    return config(comments_window_days=36500, **overrides)


def comments_state(cursors: Dict[str, str]):
    return (
        StateBuilder()
        .with_stream_state(
            "comments",
            {
                "use_global_cursor": False,
                "states": [{"partition": {"parent_slice": {}, "source_id": sid}, "cursor": {"timestamp": ts}} for sid, ts in cursors.items()],
            },
        )
        .build()
    )


# ------------------------------------------------------------------ datasets


def test_datasets_lists_every_dataset_without_project_and_keeps_every_field():
    with requests_mock.Mocker() as m:
        all_ = m.get(f"{BASE}/v1/datasets", json={"status": "ok", "datasets": DATASETS})
        output = run_read(config(), catalog("datasets", sync_mode=SyncMode.full_refresh))
    assert all_.call_count == 1
    records = sorted(data(output, "datasets"), key=lambda d: d["id"])
    assert [d["id"] for d in records] == [ACME_ID, GLOBEX_ID]
    assert records[0]["created"] == "2023-12-04T00:00:00.000000Z"
    assert records[0]["a_future_key"] == {"kept": True}
    assert len(records[0]["label_defs"]) == 3
    assert not output.errors


def test_datasets_of_one_project_when_project_is_set():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/datasets", json={"status": "ok", "datasets": DATASETS})
        one = m.get(f"{BASE}/v1/datasets/acme", json={"status": "ok", "datasets": DATASETS[:1]})
        output = run_read(config(project="acme"), catalog("datasets", sync_mode=SyncMode.full_refresh))
    assert one.call_count == 1
    assert [h.path for h in m.request_history] == ["/api/v1/datasets/acme"]
    assert [d["owner"] for d in data(output, "datasets")] == ["acme"]


# ------------------------------------------------------------------ streams and label_defs


def test_streams_of_each_dataset_carry_project_and_dataset():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/datasets", json={"status": "ok", "datasets": DATASETS})
        acme = m.get(f"{BASE}/v1/datasets/acme/collections/streams",
                     json={"status": "ok", "streams": [cm_stream("triage", ACME_ID), cm_stream("urgent-only", ACME_ID)]})
        globex = m.get(f"{BASE}/v1/datasets/globex/claims-ds/streams", json={"status": "ok", "streams": [cm_stream("claims", GLOBEX_ID)]})
        output = run_read(config(), catalog("streams", sync_mode=SyncMode.full_refresh))
    assert acme.call_count == 1 and globex.call_count == 1
    records = {(r["project"], r["dataset"], r["name"]): r for r in data(output, "streams")}
    assert set(records) == {("acme", "collections", "triage"), ("acme", "collections", "urgent-only"), ("globex", "claims-ds", "claims")}
    triage = records[("acme", "collections", "triage")]
    assert triage["model"] == {"version": 3, "label_thresholds": [{"name": ["Billing", "Refund"], "threshold": 0.42}]}
    assert triage["comment_filter"] == {"user_properties": {"string:Priority": {"one_of": ["Urgent"]}}}
    assert triage["dataset_id"] == ACME_ID


def test_streams_only_for_the_configured_project():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/datasets/acme", json={"status": "ok", "datasets": DATASETS[:1]})
        m.get(f"{BASE}/v1/datasets/acme/collections/streams", json={"status": "ok", "streams": [cm_stream("triage", ACME_ID)]})
        output = run_read(config(project="acme"), catalog("streams", sync_mode=SyncMode.full_refresh))
    assert [(r["project"], r["dataset"], r["name"]) for r in data(output, "streams")] == [("acme", "collections", "triage")]
    assert not any("globex" in h.path for h in m.request_history)


def test_label_defs_one_record_per_label_with_parent_path_project_and_dataset():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/datasets", json={"status": "ok", "datasets": DATASETS})
        m.get(f"{BASE}/v1/datasets/acme/collections", json={"status": "ok", "dataset": DATASETS[0]})
        m.get(f"{BASE}/v1/datasets/globex/claims-ds",
              json={"status": "ok", "dataset": dataset("globex", "claims-ds", GLOBEX_ID, label_defs=[{"name": "Claims", "title": "Claims"}])})
        output = run_read(config(), catalog("label_defs", sync_mode=SyncMode.full_refresh))
    records = {(r["project"], r["dataset"], r["name"]): r for r in data(output, "label_defs")}
    assert {r["label_group"] for r in data(output, "label_defs")} == {"default"}  # no label_groups: the top-level ones
    assert set(records) == {
        ("acme", "collections", "Billing"),
        ("acme", "collections", "Billing > Refund"),
        ("acme", "collections", "Billing > Refund > Partial"),
        ("globex", "claims-ds", "Claims"),
    }
    # A null field is left out of the record by the CDK's serializer: absent means null.
    assert records[("acme", "collections", "Billing")].get("parent") is None
    assert records[("acme", "collections", "Billing > Refund")]["parent"] == "Billing"
    assert records[("acme", "collections", "Billing > Refund > Partial")]["parent"] == "Billing > Refund"
    refund = records[("acme", "collections", "Billing > Refund")]
    assert refund["description"] == "Refunds." and refund["instructions"] == "Give it back."
    assert records[("acme", "collections", "Billing")]["title"] == "Billing"


# ------------------------------------------------------------------ comments


def test_comments_pages_with_from_timestamp_then_after_and_stops_on_null_continuation():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        export = m.get(
            comments_url("acme", "inbox"),
            [{"json": page([comment(1), comment(2)], "k1")}, {"json": page([comment(3)], "k2")}, {"json": page([comment(4)], None)}],
        )
        output = run_read(one_window(), comments_catalog())
    assert not output.errors
    assert export.call_count == 3
    first, second, third = (qs(h) for h in export.request_history)
    assert first["from_timestamp"] == ["1970-01-01T00:00:00.000000Z"]
    assert "after" not in first
    assert second["after"] == ["k1"] and "from_timestamp" not in second
    assert third["after"] == ["k2"] and "from_timestamp" not in third
    assert all(q["limit"] == ["256"] for q in (first, second, third))
    assert all("to_timestamp" in q for q in (first, second, third))
    records = data(output, "comments")
    assert [r["uid"] for r in records] == [comment(i)["uid"] for i in (1, 2, 3, 4)]
    assert all(r["project"] == "acme" and r["source"] == "inbox" for r in records)
    # The whole comment is kept, unknown keys too.
    assert records[0]["messages"] == comment(1)["messages"] and records[0]["thread_id"] == "thread-0"


def test_comments_keeps_unknown_keys_and_parses_offset_timestamps():
    c = comment(5, timestamp="2024-03-01T10:00:00.250000+00:00", brand_new_key={"x": 1})
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        m.get(comments_url("acme", "inbox"), json=page([c], None))
        output = run_read(one_window(), comments_catalog())
    assert data(output, "comments")[0]["brand_new_key"] == {"x": 1}
    assert cursor_by_source(state_dict(output.state_messages[-1])) == {INBOX_ID: "2024-03-01T10:00:00.250000Z"}


def test_comments_state_is_per_source():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES})
        m.get(comments_url("acme", "inbox"), json=page([comment(1), comment(9)], None))
        m.get(comments_url("globex", "claims"), json=page([comment(3, timestamp="2024-05-05T05:05:05.500000Z")], None))
        output = run_read(one_window(), comments_catalog())
    records = data(output, "comments")
    assert sorted((r["project"], r["source"]) for r in records) == [("acme", "inbox"), ("acme", "inbox"), ("globex", "claims")]
    final = state_dict(output.state_messages[-1])
    assert cursor_by_source(final) == {INBOX_ID: "2024-01-01T00:00:09.000000Z", CLAIMS_ID: "2024-05-05T05:05:05.500000Z"}


def test_comments_resume_from_state_per_source():
    state = comments_state({INBOX_ID: "2024-01-01T00:00:09.000000Z", CLAIMS_ID: "2024-05-05T05:05:05.500000+00:00"})
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES})
        inbox = m.get(comments_url("acme", "inbox"), json=page([comment(9), comment(12)], None))
        claims = m.get(comments_url("globex", "claims"), json=page([], None))
        output = run_read(one_window(start_date="2020-01-01T00:00:00Z"), comments_catalog(), state=state)
    # Each source re-reads comments_lookback_days (7 by default) before its cursor: late uploads.
    assert qs(inbox.last_request)["from_timestamp"] == ["2023-12-25T00:00:09.000000Z"]
    assert qs(claims.last_request)["from_timestamp"] == ["2024-04-28T05:05:05.500000Z"]
    final = cursor_by_source(state_dict(output.state_messages[-1]))
    assert final[INBOX_ID] == "2024-01-01T00:00:12.000000Z"
    assert final[CLAIMS_ID] == "2024-05-05T05:05:05.500000Z"


def test_comments_new_source_without_state_starts_at_start_date():
    state = comments_state({INBOX_ID: "2024-01-01T00:00:09.000000Z"})
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES})
        inbox = m.get(comments_url("acme", "inbox"), json=page([], None))
        claims = m.get(comments_url("globex", "claims"), json=page([], None))
        run_read(one_window(start_date="2023-06-01T12:00:00Z", comments_lookback_days=0), comments_catalog(), state=state)
    assert qs(inbox.last_request)["from_timestamp"] == ["2024-01-01T00:00:09.000000Z"]
    assert qs(claims.last_request)["from_timestamp"] == ["2023-06-01T12:00:00.000000Z"]


def test_comments_lookback_is_configurable_and_never_reaches_before_start_date():
    state = comments_state({INBOX_ID: "2024-01-01T00:00:09.000000Z", CLAIMS_ID: "2024-01-01T00:00:09.000000Z"})
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES})
        inbox = m.get(comments_url("acme", "inbox"), json=page([], None))
        claims = m.get(comments_url("globex", "claims"), json=page([], None))
        run_read(one_window(start_date="2023-12-31T00:00:00Z", comments_lookback_days=30), comments_catalog(), state=state)
    assert qs(inbox.last_request)["from_timestamp"] == ["2023-12-31T00:00:00.000000Z"]
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES})
        inbox = m.get(comments_url("acme", "inbox"), json=page([], None))
        claims = m.get(comments_url("globex", "claims"), json=page([], None))
        run_read(one_window(comments_lookback_days=3), comments_catalog(), state=state)
    assert qs(inbox.last_request)["from_timestamp"] == ["2023-12-29T00:00:09.000000Z"]


def test_comments_start_date_honoured_with_offset():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        export = m.get(comments_url("acme", "inbox"), json=page([comment(1)], None))
        run_read(one_window(start_date="2024-02-01T02:00:00+01:00"), comments_catalog())
    assert qs(export.last_request)["from_timestamp"] == ["2024-02-01T01:00:00.000000Z"]


def test_comments_full_refresh_without_state_starts_at_start_date():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        export = m.get(comments_url("acme", "inbox"), json=page([comment(1)], None))
        output = run_read(one_window(start_date="2022-01-01T00:00:00Z"), catalog("comments", sync_mode=SyncMode.full_refresh))
    assert qs(export.last_request)["from_timestamp"] == ["2022-01-01T00:00:00.000000Z"]
    assert [r["uid"] for r in data(output, "comments")] == [comment(1)["uid"]]


def test_comments_never_touch_any_stream_endpoint():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        m.get(comments_url("acme", "inbox"), json=page([comment(1)], None))
        run_read(one_window(), comments_catalog())
    assert all(h.method == "GET" for h in m.request_history)
    assert not any("/streams" in h.path or "/datasets" in h.path for h in m.request_history)


def test_403_on_comments_names_the_permission():
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        m.get(comments_url("acme", "inbox"), status_code=403,
              json={"status": "error", "message": "Forbidden: missing permission 'View sources' on project 'acme'"})
        output = run_read(config(), comments_catalog(), expecting_exception=True)
    messages = " ".join(e.trace.error.message for e in output.errors)
    assert "`comments` need" in messages and "View sources" in messages


def test_label_defs_cover_every_label_group_and_a_name_repeats_only_across_groups():
    """Labels in `label_groups[]` (other taxonomies) are kept, and the key has the group."""
    groups = [
        {"name": "default", "label_defs": [{"name": "Billing"}, {"name": "Complaint"}], "label_collection_name": None,
         "trainable": True, "hidden": False, "instructions": ""},
        {"name": "tone", "label_defs": [{"name": "Complaint"}, {"name": "Praise"}], "label_collection_name": None,
         "trainable": True, "hidden": False, "instructions": ""},
    ]
    acme = dataset("acme", "collections", ACME_ID, label_defs=[{"name": "Billing"}, {"name": "Complaint"}], label_groups=groups)
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/datasets/acme", json={"status": "ok", "datasets": [acme]})
        m.get(f"{BASE}/v1/datasets/acme/collections", json={"status": "ok", "dataset": acme})
        output = run_read(config(project="acme"), catalog("label_defs", sync_mode=SyncMode.full_refresh))
    keys = [(r["project"], r["dataset"], r["label_group"], r["name"]) for r in data(output, "label_defs")]
    assert sorted(keys) == [("acme", "collections", "default", "Billing"), ("acme", "collections", "default", "Complaint"),
                            ("acme", "collections", "tone", "Complaint"), ("acme", "collections", "tone", "Praise")]


def test_comments_window_is_an_advanced_setting_of_30_days_and_cuts_each_source_into_windows_meeting_at_1_ms():
    from source_commsmining.source import SourceCommsmining

    spec = SourceCommsmining().spec(None).connectionSpecification
    window = spec["properties"]["comments_window_days"]
    assert window["default"] == 365 and window["group"] == "advanced"
    assert {"id": "advanced", "title": "Advanced"} in spec["groups"]
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": SOURCES[:1]})
        export = m.get(comments_url("acme", "inbox"), json=page([], None))
        run_read(config(start_date="2024-01-01T00:00:00Z", comments_window_days=100), comments_catalog())
    windows = sorted((qs(h)["from_timestamp"][0], qs(h)["to_timestamp"][0]) for h in export.request_history)
    assert windows[0] == ("2024-01-01T00:00:00.000000Z", "2024-04-09T23:59:59.999000Z")
    assert windows[1][0] == "2024-04-10T00:00:00.000000Z"
    assert all(later[0] > earlier[1] for earlier, later in zip(windows, windows[1:]))
