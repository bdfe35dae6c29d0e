"""Model tags, validation summaries, the audit log and source statistics: what the emulator's answers mean."""

import requests

from commsmining_emulator import Emulator


def call(emu, method, path, body=None, token=None):
    return requests.request(method, emu.url + path, json=body, timeout=30,
                            headers={"Authorization": "Bearer %s" % (token or emu.token)})


def test_audit_query_pages_cover_every_event_in_the_window_once_in_timestamp_order():
    with Emulator(comments=50) as emu:
        window = {"minimum": emu.world.audit.events[10]["timestamp"], "maximum": emu.world.audit.events[200]["timestamp"]}
        seen, continuation = [], None
        while True:
            page = call(emu, "POST", "/api/v1/audit_events/query",
                        {"limit": 50, "continuation": continuation, "filter": {"timestamp": window}}).json()
            seen += page["audit_events"]
            continuation = page["continuation"]
            if not continuation:
                break
        assert [e["event_id"] for e in seen] == [e["event_id"] for e in emu.world.audit.events[10:201]]
        assert call(emu, "POST", "/api/v1/audit_events/query", {"continuation": "forged"}).status_code == 400


def test_audit_query_needs_the_audit_permission():
    with Emulator(comments=50) as emu:
        weak = emu.add_token("tok-labels", permissions=["View sources", "View labels", "View streams", "Consume streams"])
        r = call(emu, "POST", "/api/v1/audit_events/query", {}, token=weak)
        assert r.status_code == 403 and "Read audit logs" in r.json()["message"]


def test_validation_exists_for_the_versions_streams_and_tags_name_until_deleted():
    with Emulator(comments=50) as emu:
        base = "/api/v1/datasets/acme/collections"
        assert {t["name"]: t["version"] for t in call(emu, "GET", base + "/model-tags").json()["model_tags"]} == {"live": 3, "staging": 5}
        assert call(emu, "GET", base + "/labellers/5/validation").json()["validation"]["version"] == 5
        assert call(emu, "GET", base + "/labellers/6/validation").status_code == 404
        emu.set_model_tag("acme", "collections", "staging", 6)
        assert call(emu, "GET", base + "/labellers/6/validation").status_code == 200
        emu.delete_model_version("acme", "collections", 6)
        assert call(emu, "GET", base + "/labellers/6/validation").status_code == 404


def test_source_statistics_count_what_the_export_serves_under_the_same_filter():
    with Emulator(comments=200) as emu:
        src = emu.world.source("acme", "inbox")
        exported = emu.world.export(src, None, None, None, 10_000)["comments"]
        path = "/api/v1/sources/acme/inbox/statistics"
        assert call(emu, "POST", path, {}).json()["statistics"]["num_comments"] == len(exported)
        cut = sorted(c["timestamp"] for c in exported)[len(exported) // 2]
        later = call(emu, "POST", path, {"comment_filter": {"timestamp": {"minimum": cut}}}).json()["statistics"]["num_comments"]
        assert later == sum(1 for c in exported if c["timestamp"] >= cut)
        urgent = {"user_properties": {"string:Priority": {"one_of": ["Urgent"]}}}
        count = call(emu, "POST", path, {"comment_filter": urgent}).json()["statistics"]["num_comments"]
        assert count == sum(1 for c in exported if c["user_properties"].get("string:Priority") == "Urgent") > 0
        assert call(emu, "POST", path, {"comment_filter": {"messages": {}}}).status_code == 400
