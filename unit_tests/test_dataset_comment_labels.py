"""dataset_comment_labels: its rows and key (history.label_rows), and its reading from dataset_comments' pages, against HttpMocker."""

from typing import Any, Dict, List

from airbyte_cdk.test.mock_http import HttpMocker, HttpRequest
from airbyte_cdk.test.state_builder import StateBuilder

from source_commsmining.history import label_rows
from unit_tests.conftest import catalog, run_read
from unit_tests.test_dataset_comments import (  # noqa: F401  (fixed_clock: the autouse fixture)
    DATASET_ID, EXPORT, WINDOW_1, WINDOW_2, cfg, exported, fixed_clock, mock_datasets, page,
)

KEY = ("project", "dataset", "uid", "kind", "label", "occurrence")


def record(assigned: List[Any], predicted: List[Any]) -> Dict[str, Any]:
    return {"project": "acme", "dataset": "collections", "uid": "s1.c1", "created_at": "2024-01-02T00:00:00.000000Z",
            "annotations": {"labels": {"assigned": assigned}}, "predictions": {"labels": predicted}}


def test_a_label_assigned_and_predicted_is_two_rows_and_names_are_joined_levels():
    rows, skipped = label_rows(record(
        [{"name": "Billing > Refund", "sentiment": "negative", "metadata": {"user_id": "u1", "timestamp": "2024-01-03T00:00:00Z"}}],
        [{"name": ["Billing", "Refund"], "probability": 0.8, "sentiment": -0.4}, {"name": "Billing", "probability": 0.9}],
    ))
    assert skipped == 0
    by_key = {tuple(row[k] for k in KEY[3:5]): row for row in rows}
    assert set(by_key) == {("reviewed", "Billing > Refund"), ("predicted", "Billing > Refund"), ("predicted", "Billing")}
    reviewed, predicted = by_key[("reviewed", "Billing > Refund")], by_key[("predicted", "Billing > Refund")]
    assert (reviewed["parent"], reviewed["sentiment"], reviewed["probability"], reviewed["reviewed_by"]) == ("Billing", "negative", None, "u1")
    assert (predicted["probability"], predicted["sentiment"], predicted["sentiment_score"]) == (0.8, None, -0.4)
    assert by_key[("predicted", "Billing")]["parent"] is None
    assert all(row["created_at"] == "2024-01-02T00:00:00.000000Z" for row in rows)


def test_a_label_assigned_twice_is_two_rows_under_the_key():
    rows, _ = label_rows(record(
        [{"name": "Complaint", "metadata": {"user_id": "u1", "timestamp": "2024-01-03T00:00:00Z"}},
         {"name": "Complaint", "sentiment": "negative", "metadata": {"user_id": "u2", "timestamp": "2024-01-04T00:00:00Z"}}], []))
    keys = [tuple(row[k] for k in KEY) for row in rows]
    assert len(keys) == len(set(keys)) == 2
    assert [row["occurrence"] for row in rows] == [1, 2]


def test_a_label_without_a_readable_name_is_left_out_and_counted():
    rows, skipped = label_rows(record([{"name": ""}, {"sentiment": "positive"}, "Billing"], [{"name": [1, 2], "probability": 0.3}]))
    assert rows == [] and skipped == 4


def test_both_streams_come_from_the_same_pages_each_with_its_own_state():
    with HttpMocker() as http:
        mock_datasets(http)
        first, second = HttpRequest(EXPORT, body=WINDOW_1), HttpRequest(EXPORT, body=WINDOW_2)
        http.post(first, page([exported("s1.c1", "2024-01-02T00:00:00.000000Z")]))
        http.post(second, page([]))
        output = run_read(cfg(), catalog("dataset_comments", "dataset_comment_labels"))
        http.assert_number_of_calls(first, 1)  # not once per stream
        http.assert_number_of_calls(second, 1)
    streams = [r.record.stream for r in output.records]
    assert streams.count("dataset_comments") == 1 and streams.count("dataset_comment_labels") == 2
    finals = {}
    for message in output.state_messages:
        finals[message.state.stream.stream_descriptor.name] = message.state.stream.stream_state.__dict__
    assert set(finals) == {"dataset_comments", "dataset_comment_labels"}
    assert finals["dataset_comments"] == finals["dataset_comment_labels"]


def test_labels_alone_are_read_with_their_own_state():
    state = StateBuilder().with_stream_state("dataset_comment_labels", {
        "states": [{"partition": {"dataset_id": DATASET_ID, "parent_slice": {}}, "cursor": {"created_at": "2024-02-20T00:00:00.000000Z"}}],
    }).build()
    window = {"order_by": "created_at", "from": "2024-02-13T00:00:00.000000Z", "to": "2024-03-01T00:00:00.000001Z", "limit": 256}
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=window), page([exported("s1.c9", "2024-02-25T00:00:00.000000Z")]))
        output = run_read(cfg(), catalog("dataset_comment_labels"), state)
    assert {r.record.stream for r in output.records} == {"dataset_comment_labels"}
    assert {m.state.stream.stream_descriptor.name for m in output.state_messages} == {"dataset_comment_labels"}


def test_when_the_two_states_differ_both_are_read_from_the_start():
    state = StateBuilder().with_stream_state("dataset_comments", {
        "states": [{"partition": {"dataset_id": DATASET_ID, "parent_slice": {}}, "cursor": {"created_at": "2024-02-20T00:00:00.000000Z"}}],
    }).build()
    with HttpMocker() as http:
        mock_datasets(http)
        http.post(HttpRequest(EXPORT, body=WINDOW_1), page([exported("s1.c1", "2024-01-02T00:00:00.000000Z")]))
        http.post(HttpRequest(EXPORT, body=WINDOW_2), page([]))
        output = run_read(cfg(), catalog("dataset_comments", "dataset_comment_labels"), state)
    assert [r.record.data["uid"] for r in output.records if r.record.stream == "dataset_comments"] == ["s1.c1"]
