"""model_validation and audit_events end to end: the console script against the emulator over HTTP."""

from collections import Counter
from typing import Any, Dict, List

import pytest

from commsmining_emulator import Emulator
from integration_tests.conftest import connector_config, run_connector

CURSORS = {"model_validation": "read_at", "audit_events": "timestamp"}
KEYS = {"model_validation": [["project"], ["dataset"], ["model_version"], ["read_at"]], "audit_events": [["event_id"]],
        "sources": [["id"]], "datasets": [["id"]]}
# What the emulator's datasets name: streams' model.version and model tags (live, staging).
VERSIONS = {("acme", "collections"): {3, 5}, ("acme", "support-desk"): {4}, ("globex", "claims-ds"): {2}}


@pytest.fixture
def emu():
    with Emulator(seed=7, comments=60, scenario="default") as emu:
        yield emu


def catalog(*names: str) -> Dict[str, Any]:
    streams = []
    for name in names:
        incremental = name in CURSORS
        streams.append({
            "stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
            "sync_mode": "incremental" if incremental else "full_refresh",
            "destination_sync_mode": "append" if incremental else "overwrite",
            **({"cursor_field": [CURSORS[name]]} if incremental else {}),
            "primary_key": KEYS[name],
        })
    return {"streams": streams}


def data(run, stream: str) -> List[Dict[str, Any]]:
    return [r["data"] for r in run.records if r["stream"] == stream]


def errors(run) -> List[Dict[str, Any]]:
    return [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


def last_state(run, stream: str):
    states = [s for s in run.states if s["stream"]["stream_descriptor"]["name"] == stream]
    return [states[-1]]


def test_discover_offers_both_streams_incrementally_with_their_cursor_and_key(emu):
    run = run_connector("discover", connector_config(emu, streams=[]))
    assert run.returncode == 0, run.stderr
    streams = {s["name"]: s for s in run.of_type("CATALOG")[0]["catalog"]["streams"]}
    for name, cursor in CURSORS.items():
        assert "incremental" in streams[name]["supported_sync_modes"]
        assert streams[name]["default_cursor_field"] == [cursor] and streams[name]["source_defined_cursor"]
        assert streams[name]["source_defined_primary_key"] == KEYS[name]
    assert "model_tags" not in streams  # read only as a parent of model_validation


def test_two_syncs_of_model_validation_give_two_reads_of_every_version(emu):
    cfg = connector_config(emu, streams=[])
    first = run_connector("read", cfg, catalog("model_validation"))
    assert first.returncode == 0, first.stderr
    second = run_connector("read", cfg, catalog("model_validation"), last_state(first, "model_validation"))
    assert second.returncode == 0, second.stderr
    rows = data(first, "model_validation") + data(second, "model_validation")
    reads = Counter((r["project"], r["dataset"], r["model_version"]) for r in rows)
    assert reads == Counter({(p, d, v): 2 for (p, d), versions in VERSIONS.items() for v in versions})
    assert len({(r["project"], r["dataset"], r["model_version"], r["read_at"]) for r in rows}) == len(rows)
    collections = {r["model_version"]: r for r in data(first, "model_validation") if r["dataset"] == "collections"}
    assert collections[3]["model_tags"] == ["live"] and collections[3]["streams"] == ["triage", "urgent-only"]
    assert collections[5]["model_tags"] == ["staging"] and collections[5]["streams"] == []
    assert collections[5]["dataset_score"] > collections[3]["dataset_score"]  # the newer model is better here


def test_a_deleted_model_version_is_skipped_with_a_log_line_and_the_sync_succeeds(emu):
    emu.delete_model_version("acme", "collections", 5)
    run = run_connector("read", connector_config(emu, streams=[]), catalog("model_validation"))
    assert run.returncode == 0, run.stderr
    assert {(r["dataset"], r["model_version"]) for r in data(run, "model_validation")} == {
        ("collections", 3), ("support-desk", 4), ("claims-ds", 2)}
    logs = [m["log"]["message"] for m in run.of_type("LOG")]
    assert any("model_validation: skipped a model version" in m and "Model version 5" in m for m in logs)


def test_audit_events_second_sync_reads_only_the_events_after_the_first(emu):
    cfg = connector_config(emu, streams=[])
    first = run_connector("read", cfg, catalog("audit_events"))
    assert first.returncode == 0, first.stderr
    old = data(first, "audit_events")
    assert len(old) == len(emu.world.audit.events) > 128  # more than one page of the query
    assert sum(1 for path in (p for _, p, _ in emu.request_log) if "audit_events" in path) >= 2
    cursor = last_state(first, "audit_events")[0]["stream"]["stream_state"]["timestamp"]
    assert cursor == max(e["timestamp"] for e in old)
    new = emu.add_audit_events(3)
    second = run_connector("read", cfg, catalog("audit_events"), last_state(first, "audit_events"))
    assert second.returncode == 0, second.stderr
    again = data(second, "audit_events")
    # The window starts at the cursor, inclusive: only the event(s) at the cursor are read again (dedup on event_id).
    assert {e["event_id"] for e in again if e["timestamp"] != cursor} == {e["event_id"] for e in new}
    assert all(e["timestamp"] == cursor for e in again if e["event_id"] not in {n["event_id"] for n in new})
    assert len(again) <= len(new) + 1


def test_without_the_audit_permission_audit_events_fails_and_the_other_streams_are_delivered(emu):
    token = emu.add_token("tok-no-audit-log", permissions=["View sources", "View labels", "View streams"])
    cfg = connector_config(emu, streams=[], api_token=token)
    run = run_connector("read", cfg, catalog("sources", "datasets", "model_validation", "audit_events"))
    assert run.returncode != 0
    delivered = Counter(r["stream"] for r in run.records)
    assert delivered["sources"] == 3 and delivered["datasets"] == 3 and delivered["model_validation"] == 4
    assert delivered["audit_events"] == 0
    [audit] = [e for e in errors(run) if (e.get("stream_descriptor") or {}).get("name") == "audit_events"]
    assert '"Read audit logs"' in audit["message"] and "Audit Log Viewer role" in audit["message"]
    assert audit["failure_type"] == "config_error"
    assert token not in run.raw


def test_every_record_the_emulator_serves_conforms_to_its_stream_schema(emu):
    """The schemas are as strict as the API's models (non-null where the model says so): real-shaped records pass."""
    import json
    from pathlib import Path

    import jsonschema

    names = ["sources", "datasets", "streams", "label_defs", "comments", "model_validation", "audit_events"]
    keys = {"streams": [["id"]], "label_defs": [["project"], ["dataset"], ["label_group"], ["name"]], "comments": [["uid"]]}
    cat = catalog(*[n for n in names if n not in keys])
    cat["streams"] += [{"stream": {"name": n, "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
                        "sync_mode": "full_refresh", "destination_sync_mode": "overwrite", "primary_key": keys[n]} for n in keys]
    run = run_connector("read", connector_config(emu, streams=[]), cat)
    assert run.returncode == 0, run.stderr
    schemas = Path(__file__).resolve().parents[1] / "source_commsmining" / "schemas"
    seen = Counter()
    for record in run.records:
        schema = json.loads((schemas / f"{record['stream']}.json").read_text())
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(record["data"])]
        assert not errors, (record["stream"], errors[:3])
        seen[record["stream"]] += 1
    assert set(seen) == set(names), seen
