"""taxonomies.py: the one walk over a prediction's taxonomies, and the parent and stream-threshold rules every table uses."""

import pytest

from source_commsmining.flat_tables import LABELS, flat_rows
from source_commsmining.records import build_record
from source_commsmining.taxonomies import GENERAL_FIELD, LABEL, ODD, TAXONOMY, label_parent, meets_stream_threshold, walk
from unit_tests.test_label_parent import _parent as label_defs_parent  # the manifest's AddFields for label_defs


def test_the_walk_gives_each_taxonomy_then_its_labels_then_its_general_fields_in_the_apis_order():
    first = {"name": "a", "labels": [{"name": "x"}, {"name": "y"}], "general_fields": [{"name": "g"}]}
    second = {"name": "b", "general_fields": None}
    assert list(walk([first, second])) == [
        (TAXONOMY, "a", first), (LABEL, "a", {"name": "x"}), (LABEL, "a", {"name": "y"}),
        (GENERAL_FIELD, "a", {"name": "g"}), (TAXONOMY, "b", second),
    ]


def test_the_walk_reports_a_shape_the_api_does_not_use_where_it_meets_it_and_does_not_walk_into_it():
    assert list(walk(None)) == []
    assert list(walk("x")) == [(TAXONOMY, None, ODD)]
    odd_lists = {"name": 7, "labels": {"name": "x"}, "general_fields": "g"}
    assert list(walk([5, odd_lists])) == [
        (TAXONOMY, None, ODD), (TAXONOMY, 7, odd_lists), (LABEL, 7, ODD), (GENERAL_FIELD, 7, ODD),
    ]


def _one_label(name, confidence):
    result = {"comment": {"uid": "s.1", "created_at": "2024-01-01T00:00:00Z"},
              "prediction": {"taxonomies": [{"name": "t", "labels": [{"name": name, "occurrence_confidence": confidence}]}]}}
    record = build_record(result, "p", "d", "s")
    return record, flat_rows(record, (LABELS,))[0][LABELS]


@pytest.mark.parametrize("name, parent", [("A > B > C", "A > B"), ("A > B", "A"), ("A", None), ("A>B", None), ("> B", None)])
def test_a_labels_parent_is_the_same_in_stream_results_the_flat_table_and_label_defs(name, parent):
    record, rows = _one_label(name, {"value": 0.9, "thresholds": []})
    assert label_parent(name) == record["labels"][0]["parent"] == rows[0]["parent"] == label_defs_parent({"name": name}) == parent


@pytest.mark.parametrize("confidence, meets", [
    ({"value": 0.9, "thresholds": ["stream", "high_recall"]}, True),
    ({"value": 0.9, "thresholds": ["balanced"]}, False),
    ({"value": 0.9}, False),
    (0.9, False),
])
def test_an_occurrence_meets_the_stream_threshold_alike_in_stream_results_and_the_flat_table(confidence, meets):
    record, rows = _one_label("A", confidence)
    assert meets_stream_threshold(confidence) is record["labels"][0]["meets_stream_threshold"] is rows[0]["meets_stream_threshold"] is meets
    assert record["stream_labels"] == (["A"] if meets else [])
