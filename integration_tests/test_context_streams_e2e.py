"""datasets, streams, label_defs and comments end to end: the console script against the emulator over HTTP."""

from collections import Counter, defaultdict
from typing import Any, Dict, List

import pytest

from commsmining_emulator import Emulator
from commsmining_emulator.world import is_reupload
from integration_tests.conftest import CLAIMS, RAW, TRIAGE, URGENT, configured_catalog, connector_config, run_connector

ACME_COMMENTS = 1000  # > 256 per acme source: the export pages through several continuations
GLOBEX_COMMENTS = 50
ALL_STREAMS = {
    "sources", "stream_results", "stream_result_labels", "stream_result_fields", "datasets", "streams", "label_defs", "comments",
    "model_validation", "audit_events",
    "dataset_comments", "dataset_comment_labels", "stream_label_thresholds",
}


@pytest.fixture
def emu():
    with Emulator(seed=7, comments=ACME_COMMENTS, scenario="default") as emu:
        yield emu


def comments_catalog() -> Dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {
                    "name": "comments",
                    "json_schema": {},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                    "source_defined_cursor": True,
                    "default_cursor_field": ["timestamp"],
                },
                "sync_mode": "incremental",
                "destination_sync_mode": "append_dedup",
                "cursor_field": ["timestamp"],
                "primary_key": [["uid"]],
            }
        ]
    }


def data(run, stream: str) -> List[Dict[str, Any]]:
    return [r["data"] for r in run.records if r["stream"] == stream]


def errors(run) -> List[Dict[str, Any]]:
    return [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]


def test_discover_lists_every_stream(emu):
    run = run_connector("discover", connector_config(emu))
    assert run.returncode == 0, run.stderr
    streams = {s["name"]: s for s in run.of_type("CATALOG")[0]["catalog"]["streams"]}
    assert set(streams) == ALL_STREAMS
    assert streams["comments"]["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert streams["comments"]["default_cursor_field"] == ["timestamp"]
    assert streams["comments"]["source_defined_primary_key"] == [["uid"]]
    for name in ("stream_results", "stream_result_labels", "stream_result_fields"):
        assert streams[name]["supported_sync_modes"] == ["incremental"]
    for name in ("datasets", "streams", "label_defs"):
        assert streams[name]["supported_sync_modes"] == ["full_refresh"]
    assert streams["label_defs"]["source_defined_primary_key"] == [["project"], ["dataset"], ["label_group"], ["name"]]


def test_context_streams_join_to_stream_results(emu):
    cfg = connector_config(emu, streams=[TRIAGE, CLAIMS])
    run = run_connector("read", cfg, configured_catalog("datasets", "streams", "label_defs", "stream_results"))
    assert run.returncode == 0, run.stderr
    assert not errors(run)

    datasets = data(run, "datasets")
    assert {(d["owner"], d["name"]) for d in datasets} == {("acme", "collections"), ("acme", "support-desk"), ("globex", "claims-ds")}
    assert all(d.get("created") and d.get("label_defs") for d in datasets)

    streams = {(s["project"], s["dataset"], s["name"]): s for s in data(run, "streams")}
    for cm in (TRIAGE, RAW, URGENT, CLAIMS):
        assert (cm["project"], cm["dataset"], cm["stream"]) in streams
    assert streams[("acme", "collections", "triage")]["model"]["version"] == 3
    assert streams[("acme", "collections", "urgent-only")]["comment_filter"]
    assert streams[("globex", "claims-ds", "claims")]["model"]["label_thresholds"]

    label_defs = data(run, "label_defs")
    assert label_defs
    names = defaultdict(set)
    for label in label_defs:
        names[(label["project"], label["dataset"], label["label_group"])].add(label["name"])
    for label in label_defs:
        if " > " in label["name"]:
            assert label["parent"] == label["name"].rsplit(" > ", 1)[0]
            assert label["parent"] in names[(label["project"], label["dataset"], label["label_group"])]
        else:
            assert label.get("parent") is None  # null: the CDK leaves a null top-level field out
    assert len({(l["project"], l["dataset"], l["label_group"], l["name"]) for l in label_defs}) == len(label_defs)
    # Every label group of every dataset, as the emulator serves them (a name can repeat across groups).
    served = {(d["owner"], d["name"], g["name"], label["name"]) for d in datasets for g in d["label_groups"] for label in g["label_defs"]}
    assert {(l["project"], l["dataset"], l["label_group"], l["name"]) for l in label_defs} == served
    assert len({key[2] for key in served}) > 1 and len({key[:2] + key[3:] for key in served}) < len(served)

    results = data(run, "stream_results")
    assert results
    predicted = defaultdict(set)
    for result in results:
        for label in result.get("labels") or []:  # a prediction's taxonomy is its label group
            predicted[(result["project"], result["dataset"], label["taxonomy"])].add(label["name"])
        # Each result joins to its stream definition.
        assert (result["project"], result["dataset"], result["stream"]) in streams
    assert predicted
    for key, labels in predicted.items():
        assert labels <= names[key], labels - names[key]


def test_comments_incremental_exports_everything_then_only_new_and_moves_no_stream(emu):
    # Without the lookback window, so that only the new comments and the cursor's ties come again
    # (the lookback's re-reads: test_records_e2e.py).
    cfg = connector_config(emu, comments_lookback_days=0)
    first = run_connector("read", cfg, comments_catalog())
    assert first.returncode == 0, first.stderr
    assert not errors(first)
    records = data(first, "comments")
    uids = [r["uid"] for r in records]
    # a re-upload is a queue entry, not a comment: the export has each comment once, in its latest version
    acme_comments = sum(1 for i in range(ACME_COMMENTS) if not is_reupload(i))
    assert len(uids) == len(set(uids)) == acme_comments + GLOBEX_COMMENTS
    per_source = Counter((r["project"], r["source"]) for r in records)
    assert per_source[("globex", "claims")] == GLOBEX_COMMENTS
    assert per_source[("acme", "inbox")] + per_source[("acme", "support-mailbox")] == acme_comments
    # Paged with continuations, never a destructive call.
    log = emu.request_log
    exports = [path for method, path, status in log if "/_private/sources/" in path]
    assert any("after=" in path for path in exports)
    assert all(method == "GET" for method, path, status in log)
    state = first.last_state()
    assert state and state[0]["stream"]["stream_descriptor"]["name"] == "comments"
    assert len(state[0]["stream"]["stream_state"]["states"]) == 3  # one cursor per source

    last_ts = {}
    for r in records:
        key = (r["project"], r["source"])
        last_ts[key] = max(last_ts.get(key, ""), r["timestamp"])

    new_uids = emu.upload("acme", "inbox", 5)
    second = run_connector("read", cfg, comments_catalog(), state=state)
    assert second.returncode == 0, second.stderr
    again = data(second, "comments")
    again_uids = {r["uid"] for r in again}
    assert set(new_uids) <= again_uids
    old = [r for r in again if r["uid"] not in set(new_uids)]
    # Besides the new comments, at most each source's last timestamp's ties are read again.
    assert all(r["uid"] in set(uids) and r["timestamp"] == last_ts[(r["project"], r["source"])] for r in old), old
    assert len(again) <= len(new_uids) + 3 * 2
    new_state = {e["partition"]["source_id"]: e["cursor"]["timestamp"] for e in second.last_state()[0]["stream"]["stream_state"]["states"]}
    inbox_new_ts = max(r["timestamp"] for r in again if r["uid"] in set(new_uids))
    assert inbox_new_ts in new_state.values()

    for cm in (TRIAGE, RAW, URGENT, CLAIMS):
        st = emu.stream_state(cm["project"], cm["dataset"], cm["stream"])
        assert st["advances"] == 0 and st["resets"] == 0
    assert emu.stream_state("acme", "collections", "triage")["advances"] == 0
