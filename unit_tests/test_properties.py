"""Property-based tests: bodies generated from the API's official shapes (api-shapes/) through the connector.

Valid `/results`, sources, dataset and comment-export bodies are generated with hypothesis-jsonschema
from `api-shapes/commsmining-api.schema.json` and fed through `build_records` and the
manifest's own record selectors and transformations (sources, datasets, label_defs, comments). For
every body: no exception, one record per item, `comment`/`prediction` kept whole, every promoted
column equal to the raw value it comes from, every record valid against its declared schema.
Mutated `/results` bodies (fields dropped, retyped, nested) must give either records with the odd
columns empty and named, or a clean BadResponse naming the stream, the continuation and the result.

Generation is bounded so the file stays within the CI budget, on a copy of the schema whose bodies
are still valid against the original: arrays of at most 3 items, strings of at most 12 characters,
integers of 64 bits (the official client's models),
no extra properties beyond the documented ones (the schema allows any; unknown keys are tested by
the mutations), and the rich-text markup tree (which the connector never reads, only keeps) left null.
hypothesis-jsonschema rebuilds the strategy of every object property on every draw; `_cached`
keeps them by schema, which makes generation about ten times faster and changes nothing drawn.
"""

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

import jsonschema
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from source_commsmining.envelope import BadResponse
from source_commsmining.records import build_record, build_records

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ROOT / "api-shapes" / "commsmining-api.schema.json"
SCHEMAS = ROOT / "source_commsmining" / "schemas"
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
# Examples of the tests of valid bodies: CI runs 30% of the full counts, PROPERTIES_SCALE=large
# (`make properties-large`) all of them. Drawing a body is most of an example's time (~0.1 s); at 30%
# these tests reach the same lines and branches of the connector and of the CDK's declarative
# selectors as at 100% (measured with coverage.py). The mutated-body test keeps its full count: below
# it, odd values in some columns went untried.
LARGE = os.environ.get("PROPERTIES_SCALE") == "large"


def examples(full: int) -> int:
    return full if LARGE else full * 30 // 100
TEXT_COLUMNS = {
    "comment_id": "id",
    "source_id": "source_id",
    "thread_id": "thread_id",
    "created_at": "created_at",
    "timestamp": "timestamp",
    "last_modified": "last_modified",
}
PROMOTED = list(TEXT_COLUMNS) + ["subject", "sender", "message_count", "labels", "stream_labels", "general_fields", "scores"]


# ---------------------------------------------------------------- the schema and its strategies
@lru_cache(maxsize=None)
def _shapes() -> Dict[str, Any]:
    if not SHAPES.exists():
        pytest.fail(
            f"The API's official shapes are missing: {SHAPES} (api-shapes/ in the repository). "
            "The property tests generate their bodies from it; restore it, they cannot run without it."
        )
    return json.loads(SHAPES.read_text())


def _bounded(node: Any) -> Any:
    if isinstance(node, list):
        return [_bounded(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "recursive" in str(node.get("$comment", "")):
        return {"type": ["null", "string", "integer"]}
    node = {key: _bounded(value) for key, value in node.items()}
    kind = node.get("type")
    if kind == "array":
        node.setdefault("maxItems", 3)
    elif kind == "string" and not {"enum", "pattern", "const"} & set(node):
        node.setdefault("maxLength", 12)
    elif kind == "integer":  # the official client's models are 64-bit integers
        node.setdefault("minimum", -(2**63))
        node.setdefault("maximum", 2**63 - 1)
    elif kind == "object":
        if isinstance(node.get("additionalProperties"), dict):
            node.setdefault("maxProperties", 3)
        else:
            node.setdefault("additionalProperties", False)
    return node


@lru_cache(maxsize=None)
def _bounded_defs() -> Dict[str, Any]:
    defs = _bounded(copy.deepcopy(_shapes()["$defs"]))
    for key in ("uid", "id", "source_id"):  # never empty on a real comment (a uid is `<source_id>.<id>`)
        defs["Comment"]["properties"][key]["minLength"] = 1
    for key in ("text_markup", "translated_from_markup"):  # the markup tree: never read, kept whole
        defs["MessageRichText"]["properties"][key] = {"type": "null"}
    return defs


def _cache_property_strategies() -> None:
    import hypothesis_jsonschema._from_schema as generator

    if getattr(generator.merged_as_strategies, "_cached", False):
        return
    original = generator.merged_as_strategies
    cache: Dict[Any, Any] = {}

    def merged_as_strategies(schemas, *, alphabet, custom_formats):
        key = (json.dumps(schemas, sort_keys=True), id(alphabet), id(custom_formats))
        if key not in cache:
            cache[key] = original(schemas, alphabet=alphabet, custom_formats=custom_formats)
        return cache[key]

    merged_as_strategies._cached = True
    generator.merged_as_strategies = merged_as_strategies


@lru_cache(maxsize=None)
def _strategy(name: str):
    from hypothesis_jsonschema import from_schema

    _cache_property_strategies()
    return from_schema({"$defs": _bounded_defs(), "$ref": f"#/$defs/{name}"})


def bodies(name: str):
    return st.deferred(lambda: _strategy(name))


@lru_cache(maxsize=None)
def _api_validator(name: str):
    return jsonschema.Draft202012Validator({"$defs": _shapes()["$defs"], "$ref": f"#/$defs/{name}"})


def _assert_valid_api_body(body: Any, name: str) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _api_validator(name).iter_errors(body)]
    assert not errors, f"the generator made an invalid {name}: {errors[:3]}"


@lru_cache(maxsize=None)
def _record_validator(stream: str):
    return jsonschema.Draft7Validator(json.loads((SCHEMAS / f"{stream}.json").read_text()))


def _assert_valid_record(record: Dict[str, Any], stream: str) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _record_validator(stream).iter_errors(record)]
    assert not errors, f"a {stream} record does not fit schemas/{stream}.json: {errors[:3]}"


def _differences(a: Any, b: Any, path: str = "") -> List[str]:
    """Where two JSON values differ (path, both values and types): a readable failure for deep bodies."""
    if type(a) is not type(b):
        return [f"{path or '.'}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"]
    if isinstance(a, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path or '.'}: {a!r} != {b!r}"]


def _assert_same(got: Any, sent: Any) -> None:
    differences = _differences(got, sent)
    assert not differences, f"delivered != sent at {differences[:5]}"


# ---------------------------------------------------------------- what each promoted column should be
def _expected_fields(fields):
    return [
        {
            "name": "" if field["name"] is None else field["name"],
            "value": None if field["value"] is None else field["value"]["formatted"],
            "text_spans": field["text_spans"],
        }
        for field in fields
    ]


def _expected_labels(prediction: Optional[Dict[str, Any]]):
    labels, stream_labels = [], []
    for taxonomy in (prediction or {}).get("taxonomies", []):
        for label in taxonomy["labels"]:  # one entry per occurrence, even of the same name
            thresholds = label["occurrence_confidence"]["thresholds"]
            name = "" if label["name"] is None else label["name"]  # a null name is the empty string
            labels.append({
                "taxonomy": taxonomy["name"],
                "name": name,
                "parent": " > ".join(name.split(" > ")[:-1]) or None,
                "confidence": label["occurrence_confidence"]["value"],
                "thresholds": thresholds,
                "meets_stream_threshold": "stream" in thresholds,
                "extraction_confidence": label["extraction_confidence"]["value"],
                "extraction_thresholds": label["extraction_confidence"]["thresholds"] or [],  # null reads as none met
                "fields": _expected_fields(label["fields"]),
            })
            if "stream" in thresholds and name not in stream_labels:  # each name once
                stream_labels.append(name)
    return labels, stream_labels


def _expected_general_fields(prediction: Optional[Dict[str, Any]]):
    return [
        {
            "taxonomy": taxonomy["name"],
            "name": "" if field["name"] is None else field["name"],  # a null name is the empty string
            "value": None if field["value"] is None else field["value"]["formatted"],
            # A plain number (the API's shape); the older `{value}` object is read too, on purpose.
            "confidence": field["confidence"]["value"] if isinstance(field["confidence"], dict) else field["confidence"],
            "text_spans": field["text_spans"],
        }
        for taxonomy in (prediction or {}).get("taxonomies", [])
        for field in taxonomy["general_fields"]
    ]


def _expected_scores(prediction: Optional[Dict[str, Any]]):
    return [{"name": score["name"], "value": score["value"]} for score in (prediction or {}).get("scores", [])]


def _expected_columns(result: Dict[str, Any], model_version: Any) -> Dict[str, Any]:
    comment, prediction = result["comment"], result["prediction"]
    first = comment["messages"][0] if comment["messages"] else {}
    subject = first.get("subject")
    labels, stream_labels = _expected_labels(prediction)
    expected = {column: comment.get(key) for column, key in TEXT_COLUMNS.items()}
    expected.update(
        uid=comment["uid"],
        subject=None if subject is None else subject["text"],
        sender=first.get("from"),
        message_count=len(comment["messages"]),
        model_version=None if prediction is None else model_version,
        labels=labels,
        stream_labels=stream_labels,
        general_fields=_expected_general_fields(prediction),
        scores=_expected_scores(prediction),
        continuation=result["continuation"],
    )
    return expected


# ---------------------------------------------------------------- /results -> build_records
@pytest.mark.runs_long(30)
@settings(max_examples=examples(250), **SETTINGS)
@given(body=bodies("GetStreamResultsResponse"), model_version=st.one_of(st.none(), st.integers(1, 50)))
def test_every_valid_results_body_gives_one_faithful_record_per_result(body, model_version):
    _assert_valid_api_body(body, "GetStreamResultsResponse")
    sent = copy.deepcopy(body)
    problems: List[Any] = []
    records = build_records(body, "acme", "collections", "triage", model_version, problems)
    assert len(records) == len(body["results"])
    assert problems == []  # the API's own shapes never warn
    assert body == sent  # nothing of the body was changed
    for record, result in zip(records, body["results"]):
        assert record["comment"] == result["comment"] and record["prediction"] == result["prediction"]
        assert (record["project"], record["dataset"], record["stream"]) == ("acme", "collections", "triage")
        expected = _expected_columns(result, model_version)
        assert {column: record[column] for column in expected} == expected
        _assert_valid_record(record, "stream_results")


# ---------------------------------------------------------------- mutated /results -> records or BadResponse
_ANY_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4,
)


def _paths(node: Any, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _mutate(body: Dict[str, Any], data) -> Dict[str, Any]:
    body = copy.deepcopy(body)
    paths = [p for p in _paths(body["results"]) if p]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = body["results"]
        try:
            for step in path[:-1]:
                parent = parent[step]
            kind = data.draw(st.sampled_from(["retype", "drop", "nest"]), label="kind")
            if kind == "drop" and isinstance(parent, dict):
                del parent[path[-1]]
            elif kind == "nest":
                parent[path[-1]] = {"value": parent[path[-1]]}
            else:
                parent[path[-1]] = data.draw(_ANY_JSON, label="value")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the path
    return body


@pytest.mark.runs_long(30)
@settings(max_examples=250, phases=[Phase.explicit, Phase.reuse, Phase.generate], **SETTINGS)
@given(body=bodies("GetStreamResultsResponse"), data=st.data())
def test_a_mutated_results_body_gives_records_with_named_empty_columns_or_a_clean_bad_response(body, data):
    mutated = _mutate(body, data)
    sent = copy.deepcopy(mutated)
    problems: List[Any] = []
    try:
        records = build_records(mutated, "acme", "collections", "triage", 7, problems)
    except BadResponse as error:
        assert "acme/collections/triage" in error.message and "result " in error.message
        assert repr(mutated.get("continuation")) in error.message and "not advanced" in error.message
        return
    assert mutated == sent
    assert len(records) == len(mutated["results"])
    named: List[Any] = []
    for record, result in zip(records, mutated["results"]):
        comment = result["comment"]
        assert record["comment"] is comment and record["prediction"] is result.get("prediction")
        own: List[Any] = []  # this result's odd columns (two results may share a uid)
        assert record == build_record(result, "acme", "collections", "triage", 7, own, record["uid"])
        named += own
        odd = set(own[0][1]) if own else set()
        for column, key in TEXT_COLUMNS.items():
            raw = comment.get(key)
            if isinstance(raw, str):
                assert record[column] == raw
            else:
                assert record[column] is None and (raw is None or column in odd)
        messages = comment.get("messages")
        assert record["message_count"] == (len(messages) if isinstance(messages, list) else None)
        if not isinstance(messages, (list, type(None))):
            assert {"subject", "sender", "message_count"} <= odd
        for column in ("labels", "stream_labels", "general_fields", "scores"):
            if column in odd:
                assert record[column] == []
        try:
            expected = _expected_columns(result, 7)
        except (KeyError, TypeError, IndexError, AttributeError):
            continue  # not the documented shape: the comparisons above are what holds
        for column in PROMOTED:
            assert record[column] == expected[column] or column in odd or record[column] in (None, [])
    assert named == problems  # the batch's warning names exactly the odd columns of each result


def test_one_batch_warning_names_each_odd_comment_and_its_columns():
    from unit_tests.conftest import comment

    results = [
        {"comment": comment(1, messages=5), "prediction": None, "continuation": "c1"},
        {"comment": comment(2, created_at=17), "prediction": {"taxonomies": "x", "scores": []}, "continuation": "c2"},
        {"comment": comment(3), "prediction": {"taxonomies": [{"name": "t", "labels": ["x"], "general_fields": []}]}, "continuation": "c3"},
        {"comment": comment(4, messages=[{"subject": "a string", "from": "a@b"}]), "prediction": None, "continuation": "c4"},
    ]
    problems: List[Any] = []
    records = build_records({"results": results, "continuation": "b"}, "acme", "collections", "triage", 7, problems)
    assert len(records) == 4
    assert problems == [
        (comment(1)["uid"], ["subject", "sender", "message_count"]),
        (comment(2)["uid"], ["created_at", "labels", "stream_labels", "general_fields"]),
        (comment(3)["uid"], ["labels", "stream_labels"]),
        (comment(4)["uid"], ["subject"]),
    ]
    assert records[0]["message_count"] is None and records[1]["created_at"] is None and records[2]["labels"] == []
    assert records[3]["sender"] == "a@b" and records[3]["subject"] is None
    assert records[1]["comment"]["created_at"] == 17  # the comment itself is delivered as sent


# ---------------------------------------------------------------- declarative streams: selector + transformations
@lru_cache(maxsize=None)
def _selectors() -> Dict[str, Any]:
    """The record selector (extractor + transformations) of each declarative stream, as the manifest builds it."""
    from source_commsmining import SourceCommsmining
    from unit_tests.conftest import config

    cfg = config()
    selectors = {}
    for stream in SourceCommsmining(config=cfg).streams(cfg):
        try:
            selectors[stream.name] = stream._stream_partition_generator._partition_factory._retriever.record_selector
        except AttributeError as error:  # pragma: no cover - a CDK upgrade moved it
            pytest.fail(f"airbyte-cdk no longer builds {stream.name} the way this test reaches its record selector: {error}")
    return selectors


def _select(stream: str, body: Any, owner: Optional[str] = None, name: Optional[str] = None) -> List[Dict[str, Any]]:
    from airbyte_cdk.sources.types import StreamSlice

    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request("GET", "https://acme.reinfer.io/api/x").prepare()
    extra = {"owner": owner, "name": name} if owner is not None else {}
    stream_slice = StreamSlice(partition={"id": "p"}, cursor_slice={}, extra_fields=extra)
    return [dict(r.data) for r in _selectors()[stream].select_records(response, {}, {}, stream_slice)]


@settings(max_examples=examples(200), **SETTINGS)
@given(body=bodies("GetAllSourcesResponse"))
def test_every_valid_sources_body_gives_each_source_whole(body):
    _assert_valid_api_body(body, "GetAllSourcesResponse")
    records = _select("sources", body)
    _assert_same(records, body["sources"])
    for record in records:
        _assert_valid_record(record, "sources")


@settings(max_examples=examples(120), **SETTINGS)
@given(body=bodies("GetDatasetResponse"))
def test_every_valid_dataset_body_gives_the_dataset_and_each_label_def(body):
    _assert_valid_api_body(body, "GetDatasetResponse")
    dataset = body["dataset"]
    records = _select("datasets", {"status": "ok", "datasets": [dataset]})
    _assert_same(records, [dataset])
    _assert_valid_record(records[0], "datasets")
    label_defs = _select("label_defs", body, owner=dataset["owner"], name=dataset["name"])
    # Every group's labels with the group's name, then the top-level ones the `default` group does not list.
    grouped = [(group["name"], label_def) for group in dataset["label_groups"] for label_def in group["label_defs"]]
    listed = {(group, label_def["name"]) for group, label_def in grouped}
    expected = grouped + [("default", label_def) for label_def in dataset["label_defs"] if ("default", label_def["name"]) not in listed]
    assert len(label_defs) == len(expected)
    for record, (group, label_def) in zip(label_defs, expected):
        parent = label_def["name"].rsplit(" > ", 1)[0] if " > " in label_def["name"] else None
        _assert_same(record, {**label_def, "project": dataset["owner"], "dataset": dataset["name"], "label_group": group, "parent": parent})
        _assert_valid_record(record, "label_defs")


@settings(max_examples=examples(150), **SETTINGS)
@given(body=bodies("GetSourceCommentsResponse"), owner=st.sampled_from(["acme", "globex.eu", "0", "2024"]), name=st.sampled_from(["inbox", "claims", "1", "True"]))
def test_every_valid_export_page_gives_each_comment_whole_with_its_source(body, owner, name):
    _assert_valid_api_body(body, "GetSourceCommentsResponse")
    records = _select("comments", body, owner=owner, name=name)
    assert len(records) == len(body["comments"])
    # Thread properties come as a list beside `comments`, one per comment: each is attached to its comment.
    threads = body.get("thread_properties")
    paired = isinstance(threads, list) and len(threads) == len(body["comments"])
    for i, (record, comment) in enumerate(zip(records, body["comments"])):
        thread = {"thread_properties": threads[i]} if paired else {}
        _assert_same(record, {**comment, **thread, "project": owner, "source": name})
        _assert_valid_record(record, "comments")
