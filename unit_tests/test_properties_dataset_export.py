"""Property-based: dataset export pages generated from the API's official shapes through dataset_comments and dataset_comment_labels.

Bodies of `ExportDatasetResponse` (api-shapes/, bounded as in test_properties.py) with each comment's
`created_at` drawn as an RFC 3339 time and a non-empty `uid` (the shapes only say "string"; a comment
the API sent without them fails the page, see test_dataset_comments.py). For every page: one record per exported comment,
the entry kept whole, promoted columns equal to their sources, every record valid against
schemas/dataset_comments.json, and label rows valid against schemas/dataset_comment_labels.json
with no two rows under one key.
"""

from datetime import datetime
from typing import Any, Dict

import orjson
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from source_commsmining.history import DatasetCommentsExtractor, label_name, label_rows
from unit_tests.test_properties import SETTINGS, _assert_same, _assert_valid_api_body, _assert_valid_record, bodies, examples

KEY = ("project", "dataset", "uid", "kind", "label", "occurrence")
TIMES = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1))


def _page(body: Dict[str, Any]) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = orjson.dumps(body)
    response.headers["Content-Type"] = "application/json"
    response.request = requests.Request("POST", "https://acme.reinfer.io/api/v1/datasets/acme/claims%2Dds/export",
                                        json={"order_by": "created_at"}).prepare()
    return response


@settings(max_examples=examples(80), **SETTINGS)
@given(body=bodies("ExportDatasetResponse"), data=st.data())
def test_every_valid_export_page_gives_each_comment_whole_and_its_label_rows(body, data):
    _assert_valid_api_body(body, "ExportDatasetResponse")
    for item in body["comments"]:
        item["comment"]["created_at"] = data.draw(TIMES).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        item["comment"]["uid"] = item["comment"]["uid"] or "s.c"  # the API's uids are `<source_id>.<id>`, never empty
    records = list(DatasetCommentsExtractor().extract_records(_page(body)))
    assert len(records) == len(body["comments"])
    for record, item in zip(records, body["comments"]):
        comment = item["comment"]
        assert (record["project"], record["dataset"], record["uid"], record["created_at"]) == ("acme", "claims-ds", comment["uid"], comment["created_at"])
        assert (record["source_id"], record["timestamp"], record.get("thread_id")) == (comment["source_id"], comment["timestamp"], comment.get("thread_id"))
        _assert_same(record["comment"], comment)
        _assert_same(record["predictions"], item["predictions"])
        assert record["has_reviewed_labels"] == bool(item["annotations"]["labels"]["assigned"])
        _assert_valid_record(record, "dataset_comments")
        rows, skipped = label_rows(record)
        named = [label for label in item["annotations"]["labels"]["assigned"] + item["predictions"]["labels"] if label_name(label["name"])]
        assert len(rows) == len(named) and skipped == len(item["annotations"]["labels"]["assigned"]) + len(item["predictions"]["labels"]) - len(named)
        keys = [tuple(row[k] for k in KEY) for row in rows]
        assert len(keys) == len(set(keys)), "two label rows under one key"
        for row in rows:
            _assert_valid_record(row, "dataset_comment_labels")
