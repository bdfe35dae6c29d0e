"""check_depth: a batch the CDK could not write is refused before anything of it is delivered; any other is written as it came."""

import json

import pytest
from airbyte_cdk.entrypoint import AirbyteEntrypoint

from source_commsmining import messages
from source_commsmining.depth_check import MAX_RESULT_DEPTH, check_depth
from source_commsmining.envelope import BadResponse


def nested(depth: int):
    value = "bottom"
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def record(uid: str, comment, prediction=None):
    return {"uid": uid, "created_at": "2024-01-01T00:00:00Z", "comment": comment, "prediction": prediction, "labels": []}


def written(data) -> dict:
    """What a destination reads: the line the CDK writes for the record, parsed."""
    return json.loads(AirbyteEntrypoint.airbyte_message_to_string(messages.record(data, 1)))["record"]["data"]


def test_the_comment_and_prediction_are_left_as_they_came_and_written_so():
    comment = {"uid": "s.1", "messages": [{"body": {"text": "caf\u00e9 \u78ba\u8a8d"}}], "user_properties": {"number:n": 2**62}}
    prediction = {"taxonomies": [{"name": "default", "labels": [{"name": "A", "occurrence_confidence": {"value": 0.5}}]}]}
    records = [record("s.1", comment, prediction), record("s.2", {"uid": "s.2"})]
    check_depth(records, lambda: "GET /results [stream p/d/s]")
    assert records[0]["comment"] is comment and records[0]["prediction"] is prediction
    assert written(records[0]) == {**record("s.1", comment, prediction)}
    assert written(records[1])["comment"] == {"uid": "s.2"} and written(records[1]).get("prediction") is None


@pytest.mark.parametrize("depth", [300, MAX_RESULT_DEPTH - 1])
def test_a_comment_orjson_refuses_but_the_cdk_can_write_is_delivered(depth):
    comment = {"uid": "s.1", "user_properties": nested(depth - 1)}  # the comment is `depth` levels deep
    records = [record("s.1", comment)]
    check_depth(records, lambda: "unused")
    assert records[0]["comment"] is comment  # for the CDK's fallback serializer
    assert written(records[0])["comment"] == comment


def test_an_integer_beyond_64_bits_is_delivered_as_the_cdk_writes_it():
    comment = {"uid": "s.1", "user_properties": {"number:big": 2**70}}
    records = [record("s.1", comment)]
    check_depth(records, lambda: "unused")
    assert written(records[0])["comment"]["user_properties"]["number:big"] == 2**70


@pytest.mark.parametrize("key", ["comment", "prediction"])
def test_a_result_nested_past_the_limit_refuses_the_batch_naming_the_comment_and_where(key):
    deep = record("s.1", {"uid": "s.1"})
    deep[key] = {"uid": "s.1", "deep": nested(MAX_RESULT_DEPTH)}
    records = [record("s.0", {"uid": "s.0"}), deep]
    with pytest.raises(BadResponse) as refused:
        check_depth(records, lambda: "GET /results [stream p/d/s, after continuation 'c7']")
    message = refused.value.message
    assert "comment 's.1' (result 1 of the batch)" in message and f"more than {MAX_RESULT_DEPTH} levels" in message
    assert "stream p/d/s, after continuation 'c7'" in message and "not advanced" in message
