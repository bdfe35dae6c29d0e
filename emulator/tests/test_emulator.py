"""End-to-end tests of the emulator over real HTTP (requests against a started Emulator).

Why this file exists: the connector's tests trust the emulator's semantics (queue, filters,
continuations, advance/reset rules, faults); these tests pin them down.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tracemalloc

import pytest
import requests

from commsmining_emulator import Emulator, Fault
from commsmining_emulator.world import is_reupload

STREAMS = "/api/v1/datasets/acme/collections/streams"


@pytest.fixture(scope="module")
def emu():
    with Emulator(seed=7, comments=2000) as e:
        yield e


@pytest.fixture
def fresh():
    with Emulator(seed=11, comments=300) as e:
        yield e


def session(e, token=None):
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + (token or e.token)
    return s


def results(s, e, stream, **params):
    r = s.get(e.url + STREAMS + "/" + stream + "/results", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def advance(s, e, stream, tok):
    return s.post(e.url + STREAMS + "/" + stream + "/advance", json={"sequence_id": tok}, timeout=10)


# ------------------------------------------------------------------------------------ streams

def test_paginate_to_end_and_consumed(fresh):
    s = session(fresh)
    seen = []
    calls = 0
    while True:
        j = results(s, fresh, "triage", max_results=32)
        calls += 1
        assert j["status"] == "ok" and j["num_filtered"] == 0
        seen += [r["comment"]["uid"] for r in j["results"]]
        for r in j["results"]:
            assert r["prediction"]["taxonomies"][0]["name"] == "default"
        if not j["more_results"]:
            assert j["results"] == [] or len(j["results"]) <= 32
            if not j["results"]:
                break
        assert advance(s, fresh, "triage", j["continuation"]).json() == {"status": "ok", "sequence_id": j["continuation"]}
    # a re-upload is a queue entry of its own: the same uid is served again
    reuploads = sum(1 for i in range(300) if is_reupload(i))
    assert len(seen) == 300 and len(set(seen)) == 300 - reuploads and reuploads >= 2
    st = fresh.stream_state("acme", "collections", "triage")
    assert st["position"] == st["total"] == 300 and st["consumed"] == 300
    assert fresh.consumed_uids("acme", "collections", "triage") == seen
    assert sorted(fresh.served_uids("acme", "collections", "triage")) == sorted(seen)
    # at the end: empty, more_results false, continuation = current position (advancing to it is a no-op)
    j = results(s, fresh, "triage")
    assert j["results"] == [] and j["more_results"] is False
    assert advance(s, fresh, "triage", j["continuation"]).status_code == 200
    assert fresh.stream_state("acme", "collections", "triage")["position"] == 300


def test_created_at_non_decreasing_with_ties(fresh):
    s = session(fresh)
    j = results(s, fresh, "raw", max_results=32)
    created = []
    for _ in range(4):
        created += [r["comment"]["created_at"] for r in j["results"]]
        advance(s, fresh, "raw", j["continuation"])
        j = results(s, fresh, "raw", max_results=32)
    assert created == sorted(created)
    assert len(set(created)) < len(created)  # some comments share created_at


def test_repeatable_until_advanced_and_per_result_continuation(emu):
    s = session(emu)
    emu.create_stream("acme", "collections", "rep", at="start")
    a = s.get(emu.url + STREAMS + "/rep/results?max_results=5").json()
    b = s.get(emu.url + STREAMS + "/rep/results?max_results=5").json()
    assert a == b and len(a["results"]) == 5
    # advance to the 2nd comment's continuation: next batch starts at the 3rd
    assert advance(s, emu, "rep", a["results"][1]["continuation"]).status_code == 200
    c = s.get(emu.url + STREAMS + "/rep/results?max_results=5").json()
    assert c["results"][0]["comment"]["uid"] == a["results"][2]["comment"]["uid"]
    assert c["results"][:3] == a["results"][2:]


def test_comment_shape(emu):
    s = session(emu)
    j = results(s, emu, "triage", max_results=32)
    c = j["results"][0]["comment"]
    for k in ("uid", "id", "source_id", "thread_id", "timestamp", "created_at", "last_modified", "user_properties",
              "messages", "attachments", "text_format", "context", "has_annotations"):
        assert k in c
    assert c["uid"] == "%s.%s" % (c["source_id"], c["id"]) and re.fullmatch("[0-9a-f]{16}", c["source_id"])
    assert any(k.startswith("number:") for k in c["user_properties"])
    m = c["messages"][0]
    assert {"from", "to", "sent_at", "subject", "body"} <= set(m)
    lab = j["results"][0]["prediction"]["taxonomies"][0]
    assert "labels" in lab and "general_fields" in lab


def test_prediction_null_without_model(emu):
    s = session(emu)
    j = results(s, emu, "raw", max_results=3)
    assert len(j["results"]) == 3
    assert all(r["prediction"] is None and "prediction" in r for r in j["results"])
    assert "model" not in s.get(emu.url + STREAMS + "/raw").json()["stream"]


def test_filtered_empty_batch_and_max_filtered(fresh):
    s = session(fresh)
    found_empty = False
    for _ in range(200):
        j = results(s, fresh, "urgent-only", max_results=2)
        for r in j["results"]:
            assert r["comment"]["user_properties"]["string:Priority"] == "Urgent"
        assert len(j["results"]) + j["num_filtered"] <= 2
        if not j["results"] and j["more_results"]:
            found_empty = True
            assert j["num_filtered"] == 2
            before = fresh.stream_state("acme", "collections", "urgent-only")["position"]
            advance(s, fresh, "urgent-only", j["continuation"])
            assert fresh.stream_state("acme", "collections", "urgent-only")["position"] == before + 2
            break
        advance(s, fresh, "urgent-only", j["continuation"])
    assert found_empty
    # with max_filtered, filtered comments do not count towards max_results
    j = results(s, fresh, "urgent-only", max_results=3, max_filtered=1024)
    assert len(j["results"]) == 3 and j["num_filtered"] > 0
    assert all(r["comment"]["user_properties"]["string:Priority"] == "Urgent" for r in j["results"])
    # batch continuation skips a filtered tail: it is at or beyond the last result's continuation
    j = results(s, fresh, "urgent-only", max_results=1, max_filtered=1)
    assert len(j["results"]) <= 1 and j["num_filtered"] <= 2


def test_max_results_bounds(emu):
    s = session(emu)
    for bad in ("0", "33", "x"):
        r = s.get(emu.url + STREAMS + "/triage/results?max_results=" + bad)
        assert r.status_code == 400 and r.json()["status"] == "error"
    assert s.get(emu.url + STREAMS + "/triage/results?max_filtered=2000").status_code == 400
    assert len(results(s, emu, "triage")["results"]) == 16


def test_both_path_encodings(emu):
    s = session(emu)
    a = s.get(emu.url + "/api/v1/datasets/acme%2Fcollections/streams/triage/results?max_results=4").json()
    b = s.get(emu.url + "/api/v1/datasets/acme/collections/streams/triage/results?max_results=4").json()
    assert a == b and a["status"] == "ok"
    assert s.get(emu.url + "/api/v1/sources/acme%2Finbox").json()["source"]["name"] == "inbox"
    assert s.get(emu.url + "/api/v1/sources/acme/inbox").json()["source"]["name"] == "inbox"


@pytest.mark.parametrize("mode", ["accept", "refuse", "ignore"])
def test_backward_advance(mode):
    with Emulator(seed=3, comments=100, backward_advance=mode) as e:
        s = session(e)
        j1 = results(s, e, "triage", max_results=10)
        assert advance(s, e, "triage", j1["continuation"]).status_code == 200
        j2 = results(s, e, "triage", max_results=10)
        assert advance(s, e, "triage", j2["continuation"]).status_code == 200
        assert advance(s, e, "triage", j2["continuation"]).status_code == 200  # same position twice: fine
        r = advance(s, e, "triage", j1["continuation"])  # older
        pos = e.stream_state("acme", "collections", "triage")["position"]
        if mode == "accept":
            assert r.status_code == 200 and pos == 10
        elif mode == "refuse":
            assert r.status_code == 400 and "backwards" in r.json()["message"] and pos == 20
        else:
            assert r.status_code == 200 and pos == 20
        assert e.stream_state("acme", "collections", "triage")["log"][-1]["to"] == 10


def test_invalid_sequence_ids(emu):
    s = session(emu)
    j = results(s, emu, "triage", max_results=1)
    for bad in ("garbage", "", j["continuation"][:-2] + "AA"):
        r = advance(s, emu, "triage", bad)
        assert r.status_code == 400
    r = advance(s, emu, "raw", j["continuation"])  # another stream's token
    assert r.status_code == 400 and r.json() == {"status": "error", "message": "Invalid sequence_id"}
    # AdvanceStreamRequest has only `sequence_id`: another key is refused like the API's validation, and moves nothing.
    before = emu.stream_state("acme", "collections", "triage")["position"]
    for body in ({"continuation": j["continuation"]}, {"sequence_id": j["continuation"], "continuation": j["continuation"]}):
        r = s.post(emu.url + STREAMS + "/triage/advance", json=body)
        assert r.status_code == 400 and "unknown field `continuation`" in r.json()["message"]
    assert emu.stream_state("acme", "collections", "triage")["position"] == before


def test_stream_definitions_need_view_labels_and_view_streams(emu):
    """UiPath's "Get a stream by name" (and the list of streams): View labels + View streams, not Consume streams."""
    for perms, missing in ((["View labels", "Consume streams", "View sources"], "View streams"),
                           (["View streams", "Consume streams", "View sources"], "View labels")):
        tok = emu.add_token(None, permissions=perms)
        for path in ("", "/triage"):
            r = session(emu, tok).get(emu.url + STREAMS + path)
            assert r.status_code == 403
            assert r.json()["message"] == "Forbidden: missing permission '%s' on project 'acme'" % missing
    tok = emu.add_token(None, permissions=["View labels", "View streams"])
    assert session(emu, tok).get(emu.url + STREAMS + "/triage").json()["stream"]["name"] == "triage"


def test_stats_over_http(emu):
    requests.get(emu.url + STREAMS + "/triage/results")  # a 401, so by_status has an entry
    r = requests.get(emu.url + "/_emulator/stats")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requests"] >= 1 and body["by_status"]["401"] >= 1


def test_reset_by_created_at_and_permission(fresh):
    s = session(fresh)
    j = results(s, fresh, "triage", max_results=32)
    target = j["results"][20]["comment"]["created_at"]
    advance(s, fresh, "triage", j["continuation"])
    for value in (target, target.replace("Z", "+00:00"), target[:-1]):  # with Z, with offset, without zone
        r = s.post(fresh.url + STREAMS + "/triage/reset", json={"to_comment_created_at": value})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok" and body["stream"]["name"] == "triage" and body["sequence_id"]
        first = results(s, fresh, "triage", max_results=1)["results"][0]["comment"]
        assert first["created_at"] <= target
        idx = fresh.stream_state("acme", "collections", "triage")["position"]
        # the first comment created at or after the target (ties: the earliest of them)
        assert idx <= 20
        assert [r["comment"]["created_at"] for r in j["results"]][idx] == first["created_at"] >= target[:19]
    r = s.post(fresh.url + STREAMS + "/triage/reset", json={"to_comment_created_at": "yesterday"})
    assert r.status_code == 400
    # A reset needs what consuming needs (UiPath's reset page), not "Modify streams" nor "View sources".
    for perms, missing in ((["View sources", "View labels"], "Consume streams"),
                           (["View sources", "Consume streams"], "View labels")):
        tok = fresh.add_token(None, permissions=perms)
        r = session(fresh, tok).post(fresh.url + STREAMS + "/triage/reset", json={"to_comment_created_at": target})
        assert r.status_code == 403
        assert r.json() == {"status": "error", "message": "Forbidden: missing permission '%s' on project 'acme'" % missing}
    assert fresh.stream_state("acme", "collections", "triage")["resets"] == 3
    tok = fresh.add_token(None, permissions=["Consume streams", "View labels"])
    r = session(fresh, tok).post(fresh.url + STREAMS + "/triage/reset", json={"to_comment_created_at": target})
    assert r.status_code == 200, r.text
    assert fresh.stream_state("acme", "collections", "triage")["resets"] == 4


def test_reset_to_shared_created_at(fresh):
    s = session(fresh)
    w = fresh.world
    ds = w.dataset("acme", "collections")
    i = 50  # shares created_at with 49
    assert ds.created_at_ms(49) == ds.created_at_ms(50)
    from commsmining_emulator.generator import fmt_ms
    r = s.post(fresh.url + STREAMS + "/raw/reset", json={"to_comment_created_at": fmt_ms(ds.created_at_ms(i))})
    assert r.status_code == 200
    assert fresh.stream_state("acme", "collections", "raw")["position"] == 49


def test_auth_errors_and_404s(emu):
    r = requests.get(emu.url + STREAMS + "/triage/results")
    assert r.status_code == 401 and r.json() == {"status": "error", "message": "Unauthorized"}
    r = requests.get(emu.url + STREAMS + "/triage/results", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    tok = emu.add_token("tok-sources-only", permissions=["View sources"])
    r = session(emu, tok).get(emu.url + STREAMS + "/triage/results")
    assert r.status_code == 403 and r.json()["message"] == "Forbidden: missing permission 'Consume streams' on project 'acme'"
    s = session(emu)
    r = s.get(emu.url + STREAMS + "/nope")
    assert r.status_code == 404 and r.json() == {"status": "error", "message": "Stream 'acme/collections/nope' not found"}
    r = s.get(emu.url + "/api/v1/nonexistent_page")
    assert r.status_code == 404 and r.json() == {"status": "error", "message": "404 Not Found"}
    assert s.get(emu.url + "/api/v1/sources/nobody").status_code == 404
    assert "Server-Timing" in r.headers and r.headers["Server-Timing"].startswith("total;dur=")


def test_sources_datasets_streams(emu):
    s = session(emu)
    srcs = s.get(emu.url + "/api/v1/sources").json()["sources"]
    assert {(x["owner"], x["name"]) for x in srcs} == {("acme", "inbox"), ("acme", "support-mailbox"), ("globex", "claims")}
    sid = srcs[0]["id"]
    assert s.get(emu.url + "/api/v1/sources/id:" + sid).json()["source"]["id"] == sid
    assert len(s.get(emu.url + "/api/v1/sources/acme").json()["sources"]) == 2
    ds = s.get(emu.url + "/api/v1/datasets/acme/collections").json()["dataset"]
    assert "created" in ds and "created_at" not in ds and len(ds["source_ids"]) == 2
    assert any(" > " in d["name"] for d in ds["label_defs"])
    names = {x["name"] for x in s.get(emu.url + STREAMS).json()["streams"]}
    assert {"triage", "raw", "urgent-only"} <= names
    st = s.get(emu.url + STREAMS + "/urgent-only").json()["stream"]
    assert st["comment_filter"] and st["model"]["label_thresholds"]
    j = s.get(emu.url + "/api/v1/datasets/globex%2Fclaims-ds/streams/claims/results?max_results=32").json()
    assert len(j["results"]) == 32


def test_legacy_fetch(emu):
    s = session(emu)
    emu.create_stream("acme", "collections", "legacy", at="start")
    r = s.post(emu.url + STREAMS + "/legacy/fetch", json={"size": 8})
    j = r.json()
    assert r.status_code == 200 and len(j["results"]) == 8 and j["filtered"] == 0 and j["is_end_sequence"] is False
    assert {"comment", "sequence_id", "labels", "entities"} <= set(j["results"][0])
    assert advance(s, emu, "legacy", j["sequence_id"]).status_code == 200
    assert emu.stream_state("acme", "collections", "legacy")["position"] == 8
    assert s.post(emu.url + STREAMS + "/legacy/fetch", json={"size": 2000}).status_code == 400


def test_upload_then_results(fresh):
    s = session(fresh)
    fresh.create_stream("acme", "collections", "new", model=False, at="end")
    j = results(s, fresh, "new")
    assert j["results"] == [] and j["more_results"] is False
    uids = fresh.upload("acme", "inbox", 5) + fresh.upload("acme", "support-mailbox", 2)
    j = results(s, fresh, "new", max_results=32)
    assert [r["comment"]["uid"] for r in j["results"]] == uids and j["more_results"] is False
    assert all(r["prediction"] is None for r in j["results"])
    last_generated = fresh.world.dataset("acme", "collections").created_at_ms(299)
    from commsmining_emulator.generator import fmt_ms
    assert j["results"][0]["comment"]["created_at"] > fmt_ms(last_generated)
    advance(s, fresh, "new", j["continuation"])
    assert fresh.consumed_uids("acme", "collections", "new") == uids


# ------------------------------------------------------------------------------------ faults

def test_fault_status_retry_after_and_html(fresh):
    s = session(fresh)
    fresh.inject(Fault(route="results", kind="status", status=429, retry_after=2, times=1))
    fresh.inject(Fault(route="results", kind="html", times=1))
    r = s.get(fresh.url + STREAMS + "/triage/results")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r.json()["status"] == "error"
    r = s.get(fresh.url + STREAMS + "/triage/results")
    assert r.status_code == 502 and r.headers["Content-Type"].startswith("text/html")
    assert r.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert s.get(fresh.url + STREAMS + "/triage/results").status_code == 200
    assert fresh.stats()["by_route"]["results"] == 3


def test_fault_sequence_with_times(fresh):
    s = session(fresh)
    for st in (503, 500, 429):
        fresh.inject(Fault(route="*", status=st, times=1))
    got = [s.get(fresh.url + STREAMS + "/raw/results").status_code for _ in range(4)]
    assert got == [503, 500, 429, 200]


def test_fault_stall_and_omit_more_results_shape_the_results_answer(fresh):
    s = session(fresh)
    j = results(s, fresh, "triage", max_results=4)
    advance(s, fresh, "triage", j["continuation"])
    fresh.inject(Fault(route="results", kind="stall", times=2))
    for _ in range(2):  # stuck: nothing, more_results true, the continuation of the current position
        assert results(s, fresh, "triage", max_results=4) == {
            "status": "ok", "results": [], "num_filtered": 0, "more_results": True, "continuation": j["continuation"]}
    assert fresh.stream_state("acme", "collections", "triage")["position"] == 4
    assert len(fresh.served_uids("acme", "collections", "triage")) == 4
    fresh.inject(Fault(route="results", kind="omit_more_results", times=1))
    j = results(s, fresh, "triage", max_results=4)
    assert "more_results" not in j and len(j["results"]) == 4
    assert results(s, fresh, "triage", max_results=4)["more_results"] is True
    with pytest.raises(ValueError):
        Fault(route="advance", kind="stall")


def test_fault_drop_and_advance_faults_fire_before_change(fresh):
    s = session(fresh)
    j = results(s, fresh, "triage", max_results=4)
    fresh.inject(Fault(route="advance", kind="drop", times=1))
    with pytest.raises(requests.ConnectionError):
        advance(s, fresh, "triage", j["continuation"])
    assert fresh.stream_state("acme", "collections", "triage")["position"] == 0
    fresh.inject(Fault(route="advance", status=503, times=1))
    assert advance(s, fresh, "triage", j["continuation"]).status_code == 503
    assert fresh.stream_state("acme", "collections", "triage")["position"] == 0
    # drop_after: the server moves, the client sees an error
    fresh.inject(Fault(route="advance", kind="drop_after", times=1))
    with pytest.raises(requests.ConnectionError):
        advance(s, fresh, "triage", j["continuation"])
    assert fresh.stream_state("acme", "collections", "triage")["position"] == 4
    assert advance(s, fresh, "triage", j["continuation"]).status_code == 200  # retry is harmless
    assert fresh.request_log[-1][:2] == ("POST", STREAMS + "/triage/advance")


def test_fault_hang_and_delay(fresh):
    s = session(fresh)
    fresh.inject(Fault(route="sources", kind="hang", seconds=1.0, times=1))
    with pytest.raises(requests.exceptions.RequestException):
        s.get(fresh.url + "/api/v1/sources", timeout=0.3)
    fresh.inject(Fault(route="sources", kind="delay", seconds=0.2, times=1))
    t = time.perf_counter()
    assert s.get(fresh.url + "/api/v1/sources").status_code == 200
    assert time.perf_counter() - t >= 0.2
    fresh.set_latency(50)
    t = time.perf_counter()
    s.get(fresh.url + "/api/v1/sources")
    assert time.perf_counter() - t >= 0.05
    fresh.set_latency(0)


def test_latency_is_a_round_trip_that_counts_the_handling_inside_it(fresh, monkeypatch):
    """A tenant's latency does not grow with the emulator's own CPU: a call whose handling takes 0.3 s under
    a latency of 0.5 s takes about 0.5 s, not 0.8 s; what handling takes beyond the latency is added."""
    s = session(fresh)
    world_results = fresh.world.results

    def slow_results(*args, **kwargs):
        time.sleep(0.3)
        return world_results(*args, **kwargs)

    monkeypatch.setattr(fresh.world, "results", slow_results)
    fresh.set_latency(500)
    t = time.perf_counter()
    assert results(s, fresh, "triage", max_results=4)["results"]
    took = time.perf_counter() - t
    assert 0.5 <= took < 0.75, took
    fresh.set_latency(100)
    t = time.perf_counter()
    results(s, fresh, "triage", max_results=4)
    took = time.perf_counter() - t
    assert took >= 0.35, took  # half the latency before handling, then the handling: nothing left to wait
    fresh.set_latency(0)


def test_fault_rate_is_reproducible():
    def run():
        with Emulator(seed=5, comments=50) as e:
            e.inject(Fault(route="results", status=503, rate=0.3))
            s = session(e)
            return [s.get(e.url + STREAMS + "/raw/results").status_code for _ in range(40)]

    a, b = run(), run()
    assert a == b and 0 < a.count(503) < 40


# ------------------------------------------------------------------------------------ export

def test_comments_export_paging(fresh):
    s = session(fresh)
    base = fresh.url + "/api/_private/sources/acme/inbox/comments"
    got = []
    r = s.get(base, params={"from_timestamp": "2000-01-01T00:00:00Z", "limit": 50}).json()
    while True:
        got += r["comments"]
        if r["continuation"] is None:
            break
        r = s.get(base, params={"after": r["continuation"], "limit": 50}).json()
    ts = [c["timestamp"] for c in got]
    inbox = fresh.world.source("acme", "inbox")
    distinct = sum(1 for k in range(inbox.n_gen()) if not is_reupload(inbox.queue_index(k)))
    # every comment once (a re-uploaded one in its latest version), late uploads in timestamp order
    assert ts == sorted(ts) and len(got) == len({c["uid"] for c in got}) == distinct and inbox.total() == 180
    assert {c["source_id"] for c in got} == {fresh.world.source("acme", "inbox").id}
    mid = ts[100]
    r = s.get(base, params={"from_timestamp": mid, "to_timestamp": ts[109], "limit": 256}).json()
    assert [c["timestamp"] for c in r["comments"]] == ts[100:110] and r["continuation"] is None
    assert s.get(base, params={"limit": 1000}).status_code == 400
    assert s.get(base, params={"after": "forged"}).status_code == 400


# ------------------------------------------------------------------------------------ scale

def test_million_comments_flat_memory_and_fast():
    tracemalloc.start()
    e = Emulator(seed=7, comments=1_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000  # no per-comment allocation at construction
    with e:
        s = session(e)
        last = e.world.dataset("acme", "collections").created_at_ms(999_990)
        from commsmining_emulator.generator import fmt_ms
        r = s.post(e.url + STREAMS + "/triage/reset", json={"to_comment_created_at": fmt_ms(last)})
        assert r.status_code == 200
        results(s, e, "triage", max_results=32)  # warm
        t = time.perf_counter()
        j = results(s, e, "triage", max_results=32)
        dt = time.perf_counter() - t
        assert len(j["results"]) == 10 and j["more_results"] is False
        assert dt < 0.1
        # export seeks by binary search
        base = e.url + "/api/_private/sources/acme/support-mailbox/comments"
        t = time.perf_counter()
        r = s.get(base, params={"from_timestamp": j["results"][0]["comment"]["timestamp"], "limit": 256}).json()
        assert time.perf_counter() - t < 0.5 and 1 <= len(r["comments"]) <= 10


# ------------------------------------------------------------------------------------ admin + CLI

def test_admin_http_controls(fresh):
    u = fresh.url + "/_emulator"
    assert requests.get(u + "/health").json()["status"] == "ok"
    r = requests.post(u + "/streams", json={"project": "acme", "dataset": "collections", "name": "adm", "model": True,
                                            "comment_filter": None, "at": "end"})
    assert r.json()["stream"]["name"] == "adm"
    uids = requests.post(u + "/upload", json={"project": "acme", "source": "inbox", "n": 3}).json()["uids"]
    assert len(uids) == 3
    tok = requests.post(u + "/tokens", json={"permissions": ["Consume streams", "View labels", "View sources"]}).json()["token"]
    s = session(fresh, tok)
    j = results(s, fresh, "adm")
    assert [r["comment"]["uid"] for r in j["results"]] == uids
    advance(s, fresh, "adm", j["continuation"])
    st = requests.get(u + "/streams/acme/collections/adm").json()
    assert st["position"] == st["total"] and st["consumed"] == 3
    assert requests.get(u + "/streams/acme/collections/adm/consumed_uids").json()["uids"] == uids
    assert requests.post(u + "/faults", json={"route": "results", "status": 500, "times": 1}).status_code == 200
    assert s.get(fresh.url + STREAMS + "/adm/results").status_code == 500
    requests.post(u + "/faults", json={"route": "results", "status": 500})
    assert requests.delete(u + "/faults").status_code == 200
    assert s.get(fresh.url + STREAMS + "/adm/results").status_code == 200
    assert requests.post(u + "/latency", json={"ms": 0}).json()["ms"] == 0
    assert requests.post(u + "/faults", json={"route": "nope"}).status_code == 400


def test_cli_subprocess_sigterm(tmp_path):
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-m", "commsmining_emulator", "--port", "0", "--comments", "100",
                          "--fault", "route=results,status=503,times=1", "--ready-file", str(ready)],
                         stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = p.stdout.readline()
        m = re.match(r"commsmining-emulator listening on (http://127\.0\.0\.1:\d+) token=(\S+)", line)
        assert m, line
        url, tok = m.groups()
        assert ready.read_text().strip() == url
        h = {"Authorization": "Bearer " + tok}
        assert requests.get(url + STREAMS + "/triage/results", headers=h).status_code == 503
        assert requests.get(url + STREAMS + "/triage/results", headers=h).status_code == 200
        p.terminate()
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_keep_alive_and_content_length(emu):
    import http.client

    host, port = emu.url[len("http://"):].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    h = {"Authorization": "Bearer " + emu.token}
    for path in ("/api/v1/sources", "/api/v1/nonexistent", "/api/v1/datasets/acme%2Fcollections/streams/raw/results"):
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read()
        assert int(r.getheader("Content-Length")) == len(body) and r.getheader("Server-Timing")
        assert r.version == 11 and not r.will_close
    c.request("POST", "/api/v1/sources", body=b"{}", headers=h)
    r = c.getresponse()
    assert r.status == 405 and r.read()
    c.close()


def test_fault_parse_and_request_log(fresh):
    f = Fault.parse("route=results,status=429,retry-after=1.5,rate=0.2,times=3")
    assert (f.route, f.kind, f.status, f.retry_after, f.rate, f.times) == ("results", "status", 429, 1.5, 0.2, 3)
    assert Fault.parse("route=advance,kind=html").status == 502
    with pytest.raises(ValueError):
        Fault.parse("route=nowhere")
    s = session(fresh)
    s.get(fresh.url + "/api/v1/sources")
    assert fresh.request_log[-1:] == [("GET", "/api/v1/sources", 200)]
    assert fresh.stats()["by_route"]["sources"] >= 1
