"""Contract test: every body the emulator serves on the connector's routes conforms to the real API.

Why this test exists: the connector is built and tested against this emulator, so an emulator that
invents shapes hides real bugs. `api-shapes/` (a JSON Schema derived from UiPath's OpenAPI
models, plus a route table) is the ground truth; this walks every route the connector uses on every
project, dataset and stream of both scenarios (results over every batch with advances in between, a
reset and the re-delivery after it, every export page, error bodies) and validates each body
against the schema type that `routes.json` names for that route.

The schema is vendored in the repository (`api-shapes/`, see its README for where it comes from).
A missing schema is a failure, never a skip: without it this test would check nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from commsmining_emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "api-shapes"
# Routes of routes.json the connector never calls (the legacy fetch, one comment by id).
NOT_USED_BY_THE_CONNECTOR = {"fetch_from_stream", "get_comment", "get_all_projects_v1", "get_users_v1", "get_threads_by_source"}
# Routes the connector is about to use that the emulator does not serve yet: each must leave this set when it does.
NOT_YET_SERVED = {"get_validation_v1", "get_model_tags", "query_audit_events", "get_source_statistics"}


def load_shapes():
    schema_path, routes_path = SHAPES / "commsmining-api.schema.json", SHAPES / "routes.json"
    if not (schema_path.is_file() and routes_path.is_file()):
        pytest.fail(
            f"the API shapes are missing: expected {schema_path} and {routes_path} "
            "(api-shapes/ in the repository); the contract cannot be checked without them"
        )
    return json.loads(schema_path.read_text()), json.loads(routes_path.read_text())


class Contract:
    """Validates bodies by route, the way routes.json maps a method + path to a response type."""

    def __init__(self, schema, routes):
        import jsonschema

        self.defs = schema["$defs"]
        self._validators = {}
        self._jsonschema = jsonschema
        self.routes = []
        for r in routes:
            # literal segments first so `sources/id:{id}` wins over `sources/{owner}`
            pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(r["path"])) + "$"
            literal = sum(1 for seg in r["path"].split("/") if seg and "{" not in seg) + (":" in r["path"])
            self.routes.append((literal, r["method"], re.compile(pattern), r))
        self.routes.sort(key=lambda t: -t[0])

    def validator(self, type_name):
        v = self._validators.get(type_name)
        if v is None:
            v = self._jsonschema.Draft202012Validator({"$defs": self.defs, "$ref": "#/$defs/%s" % type_name})
            self._validators[type_name] = v
        return v

    def route_of(self, method, path):
        for _, m, rx, r in self.routes:
            if m == method and rx.match(path):
                return r
        raise AssertionError(f"{method} {path} is not a route of routes.json")

    def type_of(self, method, path, status):
        if status >= 400:
            return "ErrorResponse"
        return self.route_of(method, path)["response"]

    def errors(self, type_name, body):
        return list(self.validator(type_name).iter_errors(body))


class Walker:
    """Calls the API like the connector does and keeps (method, path, status, type, body, errors)."""

    def __init__(self, emu, contract):
        self.emu = emu
        self.contract = contract
        self.http = requests.Session()
        self.responses = []
        self.operations = set()

    def call(self, method, path, token=None, params=None, body=None, expect=200):
        headers = {} if token is False else {"Authorization": "Bearer %s" % (token or self.emu.token)}
        r = self.http.request(method, self.emu.url + path, params=params, json=body, headers=headers, timeout=30)
        assert r.status_code == expect, (method, path, r.status_code, r.text[:300])
        obj = r.json()
        type_name = self.contract.type_of(method, path, r.status_code)
        if r.status_code < 400:
            self.operations.add(self.contract.route_of(method, path)["operation"])
        self.responses.append((method, path, r.status_code, type_name, obj, self.contract.errors(type_name, obj)))
        return obj

    def walk(self):
        sources = self.call("GET", "/api/v1/sources")["sources"]
        assert sources
        for project in sorted({s["owner"] for s in sources}):
            self.call("GET", "/api/v1/sources/%s" % project)
        for s in sources:
            self.call("GET", "/api/v1/sources/%s/%s" % (s["owner"], s["name"]))
            self.call("GET", "/api/v1/sources/id:%s" % s["id"])
            self.export(s["owner"], s["name"])
        datasets = self.call("GET", "/api/v1/datasets")["datasets"]
        assert datasets
        for project in sorted({d["owner"] for d in datasets}):
            self.call("GET", "/api/v1/datasets/%s" % project)
        for d in datasets:
            base = "/api/v1/datasets/%s/%s" % (d["owner"], d["name"])
            self.call("GET", base)
            page = self.call("POST", base + "/export", body={"order_by": "created_at", "from": "2020-01-01T00:00:00Z", "limit": 3})
            if page.get("continuation"):
                self.call("POST", base + "/export", body={"order_by": "created_at", "continuation": page["continuation"], "limit": 3})
            streams = self.call("GET", base + "/streams")["streams"]
            assert streams
            for st in streams:
                self.stream(base + "/streams/" + st["name"], filtered=bool(st.get("comment_filter")))
        self.errors(sources[0], datasets[0])
        return self.responses

    def export(self, owner, name):
        path = "/api/_private/sources/%s/%s/comments" % (owner, name)
        page = self.call("GET", path, params={"limit": 64})
        pages = 1
        while page.get("continuation"):
            page = self.call("GET", path, params={"limit": 64, "after": page["continuation"]})
            pages += 1
        # the connector's first page of an incremental sync: a time window, no continuation
        self.call("GET", path, params={"from_timestamp": "2023-12-30T00:00:00Z", "to_timestamp": "2030-01-01T00:00:00Z",
                                       "limit": 256})
        return pages

    def stream(self, path, filtered):
        definition = self.call("GET", path)["stream"]
        params = {"max_results": 32}
        if filtered:
            params["max_filtered"] = 1024
        first_created = None
        batches = 0
        while True:
            batch = self.call("GET", path + "/results", params=params)
            batches += 1
            if batch["results"] and first_created is None:
                first_created = batch["results"][0]["comment"]["created_at"]
            self.call("POST", path + "/advance", body={"sequence_id": batch["continuation"]})
            if not batch.get("more_results") or batches >= 200:
                break
        assert batches >= 2 or filtered, f"{path}: one batch only, the walk should cover several"
        # a forced re-delivery: the documented reset, then the queue from there again
        self.call("POST", path + "/reset", body={"to_comment_created_at": first_created or definition["created_at"]})
        self.call("GET", path + "/results", params=params)

    def errors(self, source, dataset):
        st_base = "/api/v1/datasets/%s/%s/streams" % (dataset["owner"], dataset["name"])
        self.call("GET", "/api/v1/sources", token=False, expect=401)
        self.call("GET", "/api/v1/sources", token="not-a-token", expect=401)
        self.call("GET", st_base + "/no-such-stream", expect=404)
        self.call("GET", st_base + "/no-such-stream/results", expect=404)
        self.call("GET", "/api/v1/datasets/%s/no-such-dataset" % dataset["owner"], expect=404)
        self.call("GET", "/api/v1/sources/%s/no-such-source" % source["owner"], expect=404)
        weak = self.emu.add_token("tok-view-sources-only", permissions=["View sources"])
        self.call("GET", "/api/v1/datasets", token=weak, expect=403)
        self.call("GET", st_base, token=weak, expect=403)
        streams = self.call("GET", st_base)["streams"]
        name = quote(streams[0]["name"])
        self.call("GET", st_base + "/%s/results" % name, token=weak, expect=403)
        self.call("POST", st_base + "/%s/advance" % name, token=weak, body={"sequence_id": "x"}, expect=403)
        self.call("POST", st_base + "/%s/reset" % name, token=weak,
                  body={"to_comment_created_at": "2024-01-01T00:00:00Z"}, expect=403)
        self.call("POST", st_base + "/%s/advance" % name, body={"sequence_id": "garbage"}, expect=400)


def walk_scenario(scenario, comments):
    contract = Contract(*load_shapes())
    with Emulator(seed=7, scenario=scenario, comments=comments) as emu:
        walker = Walker(emu, contract)
        responses = walker.walk()
    return walker, responses


def violations(responses):
    return [(m, p, s, t, e) for (m, p, s, t, _, errs) in responses for e in errs]


def describe(found, limit=25):
    lines = ["%s %s (%d, %s): %s at %s" % (m, p, s, t, e.message[:160], "/".join(map(str, e.absolute_path)))
             for (m, p, s, t, e) in found[:limit]]
    return "\n".join(lines)


@pytest.mark.parametrize("scenario,comments", [("default", 400), ("demo", None)])
def test_every_body_on_every_route_conforms_to_the_api_shapes(scenario, comments):
    walker, responses = walk_scenario(scenario, comments)
    found = violations(responses)
    assert not found, "%d schema violations in %d responses:\n%s" % (len(found), len(responses), describe(found))
    used = {r["operation"] for r in load_shapes()[1]} - NOT_USED_BY_THE_CONNECTOR - NOT_YET_SERVED
    assert used <= walker.operations, f"routes the walk never reached: {sorted(used - walker.operations)}"
    statuses = {s for (_, _, s, _, _, _) in responses}
    assert {200, 400, 401, 403, 404} <= statuses, statuses


def test_the_contract_catches_a_wrong_shape():
    """The check can fail: the pre-conformance shapes (a general field's confidence as an object,
    no `scores`) are violations."""
    contract = Contract(*load_shapes())
    bad = {"taxonomies": [{"name": "default", "labels": [], "general_fields": [
        {"name": "date", "value": None, "confidence": {"value": 0.5, "thresholds": []}, "text_spans": []}]}]}
    messages = [e.message for e in contract.errors("StreamCommentPrediction", bad)]
    assert any("scores" in m for m in messages) and any("is not valid under any of the given schemas" in m
                                                        or "is not of type" in m for m in messages), messages
