"""The installed console script against the emulator over real HTTP: spec, check, discover, read."""

import json
from pathlib import Path

from commsmining_emulator.world import is_reupload

from integration_tests.conftest import (
    RAW,
    TRIAGE,
    URGENT,
    configured_catalog,
    connector_config,
    run_connector,
)


def test_spec():
    run = run_connector("spec", process=True)  # the installed script itself
    assert run.returncode == 0
    spec = run.of_type("SPEC")[0]["spec"]["connectionSpecification"]
    assert {"api_endpoint", "credentials", "streams", "max_results"} <= set(spec["properties"])
    assert [group["id"] for group in spec["groups"]] == ["sign_in", "scope", "streams_settings", "advanced"]
    assert all(prop.get("group") in {"sign_in", "scope", "streams_settings", "advanced"} for prop in spec["properties"].values())


def test_check_good_token(emulator):
    run = run_connector("check", config=connector_config(emulator))
    assert run.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["status"] == "SUCCEEDED"
    assert all(not path.endswith(("/results", "/advance")) for _, path, _ in emulator.request_log)


def test_check_bad_token(shared_emulator):
    cfg = connector_config(shared_emulator, api_token="not-a-token")
    status = run_connector("check", config=cfg).of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "rejected the API token" in status["message"]


def test_check_missing_stream(shared_emulator):
    cfg = connector_config(shared_emulator, streams=[TRIAGE, {"project": "acme", "dataset": "collections", "stream": "nope"}])
    status = run_connector("check", config=cfg).of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "acme/collections/nope" in status["message"] and "streams[1]" in status["message"]


def test_check_missing_permission(shared_emulator):
    token = shared_emulator.add_token(permissions=["View sources"])
    cfg = connector_config(shared_emulator, api_token=token)
    status = run_connector("check", config=cfg).of_type("CONNECTION_STATUS")[0]["connectionStatus"]
    assert status["status"] == "FAILED" and "Consume streams" in status["message"]


def test_discover(shared_emulator):
    catalog = run_connector("discover", config=connector_config(shared_emulator)).of_type("CATALOG")[0]["catalog"]
    streams = {s["name"]: s for s in catalog["streams"]}
    assert streams["stream_results"]["supported_sync_modes"] == ["incremental"]
    assert streams["stream_results"]["source_defined_primary_key"] == [["project"], ["dataset"], ["stream"], ["uid"]]
    assert "sources" in streams


def test_read_sources_and_results_delivers_every_consumed_comment_once(emulator):
    cfg = connector_config(emulator, streams=[TRIAGE, RAW])
    run = run_connector("read", config=cfg, catalog=configured_catalog("sources", "stream_results"))
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.uids("sources")) >= 2
    for cm in (TRIAGE, RAW):
        delivered = [r["data"]["uid"] for r in run.records if r["stream"] == "stream_results" and r["data"]["stream"] == cm["stream"]]
        consumed = emulator.consumed_uids(cm["project"], cm["dataset"], cm["stream"])
        assert len(consumed) == 300
        assert delivered == consumed  # same comments, same order, no duplicates
    raw_record = next(r["data"] for r in run.records if r["stream"] == "stream_results" and r["data"]["stream"] == "raw")
    assert raw_record.get("prediction") is None
    triage_record = next(r["data"] for r in run.records if r["stream"] == "stream_results" and r["data"]["stream"] == "triage")
    assert triage_record["labels"] and triage_record["comment"]["messages"]


def test_two_syncs_with_uploads_in_between_deliver_every_comment_exactly_once(emulator):
    cfg = connector_config(emulator)
    catalog = configured_catalog("stream_results")
    first = run_connector("read", config=cfg, catalog=catalog)
    assert first.returncode == 0, first.stderr[-2000:]
    uploaded = emulator.upload("acme", "inbox", 45)
    second = run_connector("read", config=cfg, catalog=catalog, state=first.last_state())
    assert second.returncode == 0, second.stderr[-2000:]
    delivered = first.uids() + second.uids()
    # every queue entry once: 300 seeded (a re-upload is an entry of its own, with an earlier uid) + 45
    reuploads = sum(1 for i in range(300) if is_reupload(i))
    assert len(delivered) == 345 and len(set(delivered)) == 345 - reuploads
    assert second.uids() == uploaded
    assert delivered == emulator.consumed_uids("acme", "collections", "triage")


def test_filtered_stream_with_empty_batches(emulator):
    cfg = connector_config(emulator, streams=[URGENT], max_results=4)
    run = run_connector("read", config=cfg, catalog=configured_catalog("stream_results"))
    assert run.returncode == 0, run.stderr[-2000:]
    consumed = emulator.consumed_uids("acme", "collections", "urgent-only")
    assert run.uids() == consumed and 0 < len(consumed) < 300
    assert emulator.stream_state("acme", "collections", "urgent-only")["position"] == 300


EXPECTED_RECORDS = Path(__file__).parent / "expected_records.jsonl"


def test_sources_match_the_expected_records(emulator):
    """The seeded emulator's sources, as integration_tests/expected_records.jsonl records them."""
    run = run_connector("read", config=connector_config(emulator, streams=[]), catalog=configured_catalog("sources"))
    assert run.returncode == 0, run.stderr[-2000:]
    expected = [json.loads(line) for line in EXPECTED_RECORDS.read_text().splitlines() if line.strip()]
    actual = [{"stream": r["stream"], "data": r["data"]} for r in run.records]
    assert sorted(actual, key=lambda r: r["data"]["id"]) == sorted(expected, key=lambda r: r["data"]["id"])
