"""What the real API does that a tidy emulator would not: late uploads, re-uploads, one comment in
several streams and datasets, a /results `model`, and a reset that really moves a queue back.

Why these tests exist: the connector's delivery and keying rules are only tested against these
behaviours if the emulator really serves them, and the hooks other tests use to create them
(`Emulator.upload(..., days_back=)`, `Emulator.reupload`, `Emulator.reset`) must do what they say.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from commsmining_emulator import Emulator
from commsmining_emulator.world import _parse_time_ms

TRIAGE = "/api/v1/datasets/acme/collections/streams/triage"
ESCALATIONS = "/api/v1/datasets/acme/support-desk/streams/escalations"
INBOX_EXPORT = "/api/_private/sources/acme/inbox/comments"


@pytest.fixture()
def emu():
    with Emulator(seed=7, scenario="default", comments=600) as e:
        yield e


def get(emu, path, **params):
    r = requests.get(emu.url + path, params=params, headers={"Authorization": "Bearer " + emu.token}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def post(emu, path, body):
    r = requests.post(emu.url + path, json=body, headers={"Authorization": "Bearer " + emu.token}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def drain(emu, path, max_results=32):
    """Read a stream to its end, advancing after each batch; returns the results in order."""
    out = []
    while True:
        batch = get(emu, path + "/results", max_results=max_results)
        out += batch["results"]
        post(emu, path + "/advance", {"sequence_id": batch["continuation"]})
        if not batch["more_results"]:
            return out


def export(emu, path=INBOX_EXPORT, **params):
    out, page = [], get(emu, path, limit=256, **params)
    while True:
        out += page["comments"]
        if not page.get("continuation"):
            return out
        page = get(emu, path, limit=256, after=page["continuation"])


def ms(value):
    return _parse_time_ms(value)


def test_generated_data_has_late_uploads_by_days_and_by_years(emu):
    comments = export(emu)
    late = [ms(c["created_at"]) - ms(c["timestamp"]) for c in comments]
    days = [d for d in late if 86_400_000 <= d < 365 * 86_400_000]
    years = [d for d in late if d >= 365 * 86_400_000]
    assert days and years, "no late uploads in the generated data"
    stamps = [c["timestamp"] for c in comments]
    assert stamps == sorted(stamps), "the export is ordered by timestamp"
    assert [ms(c["created_at"]) for c in comments] != sorted(ms(c["created_at"]) for c in comments), (
        "late uploads should make the export's order differ from the upload order"
    )


def test_a_late_upload_is_missed_by_a_cursor_on_timestamp_and_found_by_a_lookback(emu):
    cursor = max(c["timestamp"] for c in export(emu))
    [uid] = emu.upload("acme", "inbox", 1, days_back=3)
    fresh = [c for c in export(emu, from_timestamp=cursor)]
    assert uid not in {c["uid"] for c in fresh}, "sent 3 days back: after the cursor it is not exported"
    since = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - timedelta(days=7)
    window = export(emu, from_timestamp=since.isoformat())
    [found] = [c for c in window if c["uid"] == uid]
    assert 3 * 86_400_000 - 1000 <= ms(found["created_at"]) - ms(found["timestamp"]) <= 3 * 86_400_000 + 1000
    # a stream's queue is in upload order: the late comment comes after everything there was
    results = drain(emu, TRIAGE)
    assert results[-1]["comment"]["uid"] == uid


def test_upload_with_an_explicit_timestamp(emu):
    when = datetime(2011, 5, 4, 12, 0, tzinfo=timezone.utc)
    [uid] = emu.upload("acme", "inbox", 1, timestamp=when)
    first = export(emu, to_timestamp="2011-12-31T00:00:00Z")
    assert [c["uid"] for c in first] == [uid] and first[0]["timestamp"].startswith("2011-05-04T12:00:00")


def test_generated_reuploads_are_served_again_and_exported_once_in_their_latest_version(emu):
    results = drain(emu, TRIAGE)
    by_uid = {}
    for r in results:
        by_uid.setdefault(r["comment"]["uid"], []).append(r["comment"])
    twice = {uid: versions for uid, versions in by_uid.items() if len(versions) > 1}
    assert twice, "no re-uploads in the generated data"
    for versions in twice.values():
        old, new = versions[0], versions[-1]
        assert new["last_modified"] > old["last_modified"] and new["created_at"] == old["created_at"]
        assert new["messages"][0]["body"]["text"] != old["messages"][0]["body"]["text"]
    exported = {c["uid"]: c for c in export(emu)} | {c["uid"]: c for c in export(emu, path=INBOX_EXPORT.replace("inbox", "support-mailbox"))}
    for uid, versions in twice.items():
        assert exported[uid] == versions[-1]


def test_reupload_at_run_time_updates_the_comment_everywhere(emu):
    drain(emu, TRIAGE)
    drain(emu, ESCALATIONS)
    target = export(emu, path=INBOX_EXPORT.replace("inbox", "support-mailbox"))[5]
    before = len(export(emu, path=INBOX_EXPORT.replace("inbox", "support-mailbox")))
    new = emu.reupload("acme", "support-mailbox", target["uid"], text="Corrected: the amount is 10 EUR.")
    assert new["uid"] == target["uid"] and new["last_modified"] > target["last_modified"]
    # every stream over a dataset holding the source serves it again, with the new text
    for path in (TRIAGE, ESCALATIONS):
        [again] = drain(emu, path)
        assert again["comment"] == new and again["comment"]["messages"][0]["body"]["text"].startswith("Corrected")
    exported = export(emu, path=INBOX_EXPORT.replace("inbox", "support-mailbox"))
    assert len(exported) == before and [c for c in exported if c["uid"] == target["uid"]] == [new]
    # over HTTP too
    r = requests.post(emu.url + "/_emulator/reupload", json={"project": "acme", "source": "support-mailbox",
                                                             "uid": target["uid"], "text": "v3"}, timeout=30)
    assert r.json()["comment"]["messages"][0]["body"]["text"] == "v3"


def test_reset_really_moves_the_queue_back_and_redelivers(emu):
    first = drain(emu, TRIAGE)
    assert get(emu, TRIAGE + "/results")["results"] == []
    cut = first[103]["comment"]["created_at"]  # not a tie (every 50th shares its predecessor's) nor a re-upload
    reset = post(emu, TRIAGE + "/reset", {"to_comment_created_at": cut})
    assert set(reset) >= {"status", "sequence_id", "stream"}
    again = drain(emu, TRIAGE)
    assert [r["comment"]["uid"] for r in again] == [r["comment"]["uid"] for r in first[103:]]
    # the Python and HTTP controls do the same
    assert emu.reset("acme", "collections", "triage", first[0]["comment"]["created_at"]) == 0
    assert [r["comment"]["uid"] for r in drain(emu, TRIAGE)] == [r["comment"]["uid"] for r in first]
    r = requests.post(emu.url + "/_emulator/reset", json={"project": "acme", "dataset": "collections", "stream": "triage",
                                                          "to_comment_created_at": cut}, timeout=30)
    assert r.json()["position"] == 103 and emu.stream_state("acme", "collections", "triage")["resets"] == 3


def test_one_comment_in_several_streams_and_datasets(emu):
    triage = {r["comment"]["uid"]: r for r in drain(emu, TRIAGE)}
    raw = {r["comment"]["uid"] for r in drain(emu, "/api/v1/datasets/acme/collections/streams/raw")}
    desk = {r["comment"]["uid"]: r for r in drain(emu, ESCALATIONS)}
    assert set(triage) == raw, "two streams over one dataset serve the same comments"
    assert desk and set(desk) < set(triage), "the support mailbox's comments are in both datasets"
    uid = next(iter(desk))
    assert desk[uid]["comment"] == triage[uid]["comment"]
    assert desk[uid]["prediction"] != triage[uid]["prediction"], "each stream has its own model"
    assert emu.comments_in_several_streams() == len(triage)


def test_model_version_is_on_the_stream_definition_and_results_may_carry_the_taxonomy(emu):
    streams = {s["name"]: s for s in get(emu, "/api/v1/datasets/acme/collections/streams")["streams"]}
    assert streams["triage"]["model"]["version"] == 3 and "model" not in streams["raw"]
    assert get(emu, ESCALATIONS)["stream"]["model"]["version"] == 4
    body = get(emu, TRIAGE + "/results")
    assert "version" not in body["model"] and body["model"]["definition"]["taxonomies"][0]["labels"]
    assert "model" not in get(emu, "/api/v1/datasets/globex/claims-ds/streams/claims/results")
    assert all(r["prediction"] is None for r in get(emu, "/api/v1/datasets/acme/collections/streams/raw/results")["results"])


def test_predictions_and_comments_carry_what_the_real_api_adds(emu):
    results = drain(emu, TRIAGE)
    predictions = [r["prediction"] for r in results]
    assert all("scores" in p for p in predictions) and any(p["scores"] for p in predictions)
    general = [f for p in predictions for t in p["taxonomies"] for f in t["general_fields"]]
    assert {type(f["confidence"]) for f in general} == {float, type(None)}
    assert any(f["text_spans"] for f in general)
    props = [r["comment"]["user_properties"] for r in results]
    assert {type(p["boolean:Escalated"]) for p in props} == {bool}
