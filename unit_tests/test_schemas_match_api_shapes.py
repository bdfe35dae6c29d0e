"""Every stream's JSON schema declares what the API's model defines, with its type and nullability, and nothing else.

The API's models are the vendored shapes (api-shapes/commsmining-api.schema.json, see its README).
For a stream that is one API object per record, each property of the model must be in the
stream's schema with the same JSON types (null included exactly when the model allows null);
the schema may declare nothing the model lacks, except the columns the connector adds itself,
listed here per stream. Where our schema describes a nested object's properties, those are
checked against the nested model the same way (only the ones we declare).
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

import pytest

from source_commsmining import SourceCommsmining

ROOT = Path(__file__).resolve().parents[1]
SHAPES = json.loads((ROOT / "api-shapes" / "commsmining-api.schema.json").read_text())["$defs"]

# stream -> (the API model of one record, the columns the connector adds to it)
STREAM_MODELS: Dict[str, Tuple[str, Set[str]]] = {
    "sources": ("Source", set()),
    "datasets": ("Dataset", set()),
    "streams": ("Trigger", {"project", "dataset"}),
    "label_defs": ("LabelDef", {"project", "dataset", "label_group", "parent"}),
    "comments": ("Comment", {"project", "source", "thread_properties"}),
    "model_validation": ("ValidationSummaryV1", {"project", "dataset", "dataset_id", "model_version", "read_at", "model_tags", "streams"}),
    "audit_events": ("AuditEvent", set()),
    "dataset_comments": ("ExportedComment", {"project", "dataset", "uid", "comment_id", "source_id", "thread_id", "created_at",
                                             "timestamp", "last_modified", "has_reviewed_labels", "reviewed_label_count",
                                             "predicted_label_count"}),
}
# Nested objects whose properties our schemas describe: (stream, column) -> the API model.
NESTED_MODELS = {
    ("comments", "thread_properties"): "GetSourceCommentsResponseThreadPropertiesInner",
    ("streams", "model"): "TriggerUserModel",
    ("stream_results", "comment"): "Comment",
    ("dataset_comments", "comment"): "Comment",
    ("stream_results", "prediction"): "StreamCommentPrediction",
}
# Streams whose records the connector builds from several API objects: their API parts are
# checked through NESTED_MODELS (stream_results keeps `comment` and `prediction` whole).
BUILT_BY_THE_CONNECTOR = {"stream_results", "stream_result_labels", "stream_result_fields", "dataset_comment_labels", "stream_label_thresholds"}
_ORDER = ["null", "string", "integer", "number", "boolean", "object", "array"]


def shape_types(prop: Dict[str, Any]) -> Optional[Set[str]]:
    """The JSON types a shapes property allows (enums are their base type); None for "any value"."""
    if "$ref" in prop:
        return shape_types(SHAPES[prop["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in prop:
        out: Set[str] = set()
        for member in prop["anyOf"]:
            types = shape_types(member)
            if types is None:
                return None
            out |= types
        return out
    if "type" in prop:
        return {prop["type"]}
    return None


def model_of(prop: Dict[str, Any]) -> Dict[str, Any]:
    """The definition a property refers to (through `$ref` or a nullable `anyOf`)."""
    if "$ref" in prop:
        return SHAPES[prop["$ref"].rsplit("/", 1)[-1]]
    for member in prop.get("anyOf", []):
        if member.get("type") != "null":
            return model_of(member)
    return prop


def our_types(prop: Dict[str, Any]) -> Optional[Set[str]]:
    declared = prop.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def schemas() -> Dict[str, Dict[str, Any]]:
    out = {}
    for stream in SourceCommsmining().resolved_manifest["streams"]:
        path = ROOT / stream["schema_loader"]["file_path"]
        out[stream["name"]] = json.loads(path.read_text())
    return out


SCHEMAS = schemas()


def differences(ours: Dict[str, Any], model: Dict[str, Any], where: str, connector: Set[str], complete: bool):
    """What differs between our `properties` and the model's: missing, extra and mistyped properties."""
    found = []
    model_props = model.get("properties", {})
    if complete:
        found += [f"{where}.{name}: in the API's model, missing from our schema" for name in sorted(set(model_props) - set(ours))]
    found += [f"{where}.{name}: not in the API's model (nor a column the connector adds)"
              for name in sorted(set(ours) - set(model_props) - connector)]
    for name in sorted(set(ours) & set(model_props)):
        expected, declared = shape_types(model_props[name]), our_types(ours[name])
        if expected is not None and declared != expected:
            found.append(f"{where}.{name}: type {sorted(declared or [])} but the API's model says {sorted(expected)}")
        items = model_props[name].get("items") or model_of(model_props[name]).get("items")
        if items is not None and "items" in ours[name]:
            item_types, our_item = shape_types(items), our_types(ours[name]["items"])
            if item_types is not None and our_item is not None and our_item != item_types:
                found.append(f"{where}.{name}[]: items {sorted(our_item)} but the API's model says {sorted(item_types)}")
    return found


@pytest.mark.parametrize("stream", sorted(STREAM_MODELS))
def test_each_stream_schema_declares_every_field_of_its_api_model_with_its_type_and_nothing_else(stream):
    model_name, connector = STREAM_MODELS[stream]
    schema = SCHEMAS[stream]
    assert schema.get("additionalProperties") is True, f"{stream}: a real response may carry fields the shapes do not list"
    found = differences(schema["properties"], SHAPES[model_name], stream, connector, complete=True)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("stream,column", sorted(NESTED_MODELS))
def test_nested_objects_we_describe_match_their_api_model(stream, column):
    prop = SCHEMAS[stream]["properties"][column]
    assert "object" in our_types(prop)
    found = differences(prop.get("properties", {}), SHAPES[NESTED_MODELS[(stream, column)]], f"{stream}.{column}", set(), complete=False)
    assert not found, "\n".join(found)


def test_every_stream_is_compared_with_an_api_model_or_built_by_the_connector():
    unmapped = set(SCHEMAS) - set(STREAM_MODELS) - BUILT_BY_THE_CONNECTOR
    assert not unmapped, f"add these streams to STREAM_MODELS (their API model and the columns the connector adds): {sorted(unmapped)}"


def test_the_comparison_catches_a_missing_a_made_up_and_a_mistyped_field():
    """The check can fail: the label_defs schema before it met the shapes (a `description` the API does not
    have, no `trainable`, `properties` or `_flags`) and a non-nullable type where the model allows null."""
    ours = dict(SCHEMAS["label_defs"]["properties"])
    for name in ("trainable", "properties", "_flags"):
        ours.pop(name)
    ours["description"] = {"type": ["null", "string"]}
    ours["title"] = {"type": "string"}
    found = differences(ours, SHAPES["LabelDef"], "label_defs", STREAM_MODELS["label_defs"][1], complete=True)
    assert sorted(line.split(":")[0] for line in found) == [
        "label_defs._flags", "label_defs.description", "label_defs.properties", "label_defs.title", "label_defs.trainable",
    ], found
