"""stream_results records on an in-memory API: model_version, odd shapes, watermarks that are not times, old states.

A `created_at` that is not a time must never become the state's watermark (every later sync from
that state would fail); model_version comes from the stream definition, and a general field's
confidence is the plain number.
"""

from typing import Any, Dict, List, Optional

import orjson
import pytest
from airbyte_cdk.models import FailureType, Level, Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining.api import CmStream
from source_commsmining.results_reader import ResultsReader
from source_commsmining.state import ResultsState
from source_commsmining.timestamps import parse_timestamp
from unit_tests.conftest import PREDICTION, comment

TRIAGE = CmStream("acme", "collections", "triage")


class Queue:
    """One CM stream held in memory: results in upload order, a position, a definition; resets refuse non-times like the API."""

    def __init__(self, comments: List[Dict[str, Any]], prediction: Any = PREDICTION, model: Any = None, batch: int = 2):
        self.comments, self.prediction, self.batch = comments, prediction, batch
        self.model = {"version": 9} if model is None else (model or None)
        self.position = 0
        self.definition_reads = 0
        self.resets: List[str] = []

    def api(self) -> "Queue":
        return self

    def get_stream(self, cm: CmStream) -> Dict[str, Any]:
        self.definition_reads += 1
        return {"name": cm.stream, "model": self.model}

    def results(self, cm: CmStream, at_most: Optional[int] = None) -> Dict[str, Any]:
        end = min(len(self.comments), self.position + min(self.batch, at_most or self.batch))
        results = [
            {"comment": self.comments[i], "prediction": self.prediction, "continuation": f"c{i + 1}"} for i in range(self.position, end)
        ]
        return {"status": "ok", "results": results, "num_filtered": 0, "more_results": end < len(self.comments), "continuation": f"c{end}"}

    def advance(self, cm: CmStream, continuation: str) -> None:
        self.position = int(continuation[1:])

    def reset(self, cm: CmStream, created_at: str) -> None:
        try:
            parse_timestamp(created_at)
        except (ValueError, TypeError):  # the API answers 400 to a time it cannot read
            raise AirbyteTracedException(message=f"400: invalid to_comment_created_at {created_at!r}", failure_type=FailureType.system_error)
        self.resets.append(created_at)
        return None  # as CmApi.reset: None when done, the API's refusal otherwise


def sync(queue: Queue, state: Optional[Dict[str, Any]] = None, cap: Optional[int] = None):
    """One sync; returns (records, the last state, WARN logs)."""
    reader = ResultsReader(
        queue.api, [TRIAGE], ResultsState.parse(state), max_records=cap, flush=lambda: None, start_position="current"
    )
    records, states, warnings = [], [], []
    for message in reader.read():
        if message.type == Type.RECORD:
            records.append(orjson.loads(orjson.dumps(message.record.data)))  # as written
        elif message.type == Type.STATE:
            states.append(message.state.stream.stream_state)
        elif message.type == Type.LOG and message.log.level == Level.WARN and "(start_position current)" not in message.log.message:
            warnings.append(message.log.message)  # (these tests read from the queue's start, no start reset)
    last = states[-1]
    return records, (last if isinstance(last, dict) else last.__dict__), warnings


def test_a_first_batch_of_only_untimed_comments_leaves_no_watermark_and_the_next_sync_goes_on():
    """Garbage alone in the first batch of a first sync must not become the watermark: the next sync would fail."""
    queue = Queue([comment(1, created_at="garbage")] + [comment(i) for i in range(2, 6)], batch=1)
    records, state, warnings = sync(queue, cap=1)
    assert [r["created_at"] for r in records] == ["garbage"]  # delivered as the API sent it
    # Stopped at the cap right after its advance: the last STATE confirms the position.
    cursor = dict(state["states"][0]["cursor"])
    cursor.pop("epoch")
    assert cursor == {"continuation": "c1", "created_at": None, "batches": 1, "position_confirmed": True}
    assert len(warnings) == 1 and comment(1)["uid"] in warnings[0] and "'garbage'" in warnings[0] and "acme/collections/triage" in warnings[0]

    records, state, warnings = sync(queue, state)  # from that state: no reset to garbage, an advance, then on
    assert [r["uid"] for r in records] == [comment(i)["uid"] for i in range(2, 6)]
    assert queue.resets == [] and state["states"][0]["cursor"]["created_at"] == comment(5)["created_at"]

    # And from then on resets go back to a real watermark: resumed from a state committed mid-sync (a
    # confirmed one, written at the clean end of a sync, needs no reset).
    assert state["states"][0]["cursor"].pop("position_confirmed") is True
    sync(queue, state)
    assert queue.resets == [comment(5)["created_at"]]


def test_the_watermark_is_the_newest_parseable_created_at_of_a_batch():
    queue = Queue([comment(1), comment(2, created_at="0000-01-01T00:00:00Z"), comment(3, created_at=17)], batch=3)
    records, state, warnings = sync(queue)
    assert state["states"][0]["cursor"]["created_at"] == comment(1)["created_at"]
    assert len(records) == 3 and records[2]["created_at"] is None and records[2]["comment"]["created_at"] == 17
    assert len(warnings) == 1  # one warning for the batch, naming both comments
    assert comment(2)["uid"] in warnings[0] and comment(3)["uid"] in warnings[0] and "created_at" in warnings[0]


@pytest.mark.parametrize("watermark", ["yesterday", "0000-01-01T00:00:00Z", "garbage", ""])
def test_a_state_watermark_that_is_not_a_time_is_set_aside_with_a_warning(watermark):
    state = {"states": [{"partition": TRIAGE.as_partition(), "cursor": {"continuation": "c2", "created_at": watermark}}]}
    queue = Queue([comment(i) for i in range(1, 5)])
    records, final, warnings = sync(queue, state)
    assert queue.resets == []  # resumed as a state without a watermark: only the advance
    assert [r["uid"] for r in records] == [comment(3)["uid"], comment(4)["uid"]]
    assert final["states"][0]["cursor"]["created_at"] == comment(4)["created_at"]
    assert any("acme/collections/triage" in w and repr(watermark) in w and "not a time" in w for w in warnings)


@pytest.mark.parametrize(
    "state, said",
    [
        ({"continuation": "c7", "created_at": "2024-01-01T00:00:00Z"}, "keys: continuation, created_at"),
        ({"acme/collections/triage": {"continuation": "c7"}}, "keys: acme/collections/triage"),
        ({"states": [{"partition": {"cm_stream": TRIAGE.as_partition()}, "cursor": {"continuation": "c7"}}]}, "cm_stream"),
    ],
)
def test_a_state_of_another_shape_says_what_it_got_and_to_clear_it(state, said):
    with pytest.raises(AirbyteTracedException) as raised:
        ResultsState.parse(state)
    message = raised.value.message
    assert raised.value.failure_type == FailureType.config_error
    assert said in message and "Clear the stream_results state" in message and "c7" in message


def test_model_version_comes_from_the_stream_definition_read_once_per_sync():
    queue = Queue([comment(i) for i in range(1, 6)], batch=2)
    records, _, _ = sync(queue)
    assert [r["model_version"] for r in records] == [9] * 5
    assert queue.definition_reads == 1  # three batches, one read


@pytest.mark.parametrize("version, expected, warned", [("12", 12, False), ("v12", None, True), (True, None, True), (1.5, None, True)])
def test_model_version_is_an_integer_or_left_empty_with_a_warning(version, expected, warned):
    queue = Queue([comment(i) for i in range(1, 3)], model={"version": version})
    records, _, warnings = sync(queue)
    assert [r["model_version"] for r in records] == [expected] * 2
    assert any("model.version" in w for w in warnings) is warned


def test_a_stream_without_a_model_never_reads_its_definition_and_has_no_model_version():
    queue = Queue([comment(i) for i in range(1, 4)], prediction=None, model=False)
    records, _, warnings = sync(queue)
    assert [r["model_version"] for r in records] == [None] * 3 and queue.definition_reads == 0 and warnings == []


def test_general_field_confidence_is_the_plain_number_and_an_old_object_still_reads():
    prediction = {
        "taxonomies": [{"name": "default", "labels": [], "general_fields": [
            {"name": "amount", "value": {"formatted": "636.00 GBP"}, "confidence": 0.87, "text_spans": []},
            {"name": "old", "value": {"formatted": "x"}, "confidence": {"value": 0.5}},
            {"name": "none", "value": None, "confidence": None, "text_spans": []},
        ]}],
        "scores": [],
    }
    records, _, warnings = sync(Queue([comment(1)], prediction=prediction))
    assert [(f["name"], f["value"], f["confidence"]) for f in records[0]["general_fields"]] == [
        ("amount", "636.00 GBP", 0.87), ("old", "x", 0.5), ("none", None, None)]
    assert warnings == []


def test_odd_shapes_are_delivered_with_empty_columns_and_one_warning_per_batch():
    odd = [comment(1, messages=5), comment(2, messages=[{"subject": "plain", "from": "a@b"}]), comment(3)]
    records, _, warnings = sync(Queue(odd, prediction={"taxonomies": "x", "scores": []}, batch=3))
    assert len(records) == 3
    assert records[0]["message_count"] is None and records[1]["subject"] is None and records[1]["sender"] == "a@b"
    assert all(r["labels"] == [] for r in records) and records[0]["comment"]["messages"] == 5
    assert len(warnings) == 1
    warning = warnings[0]
    assert "acme/collections/triage" in warning and "continuation c3" in warning
    assert f"{comment(1)['uid']} (subject, sender, message_count, labels, stream_labels, general_fields)" in warning
    assert f"{comment(2)['uid']} (subject, labels" in warning


def test_each_predicted_occurrence_keeps_its_own_fields_and_stream_labels_names_a_label_once():
    """Two occurrences of "Billing > Refund" (10.00 and 20.00) are two distinct entries, and the name is not doubled."""
    from source_commsmining.records import build_records

    def refund(amount: str, extraction: float) -> Dict[str, Any]:
        span = {"content_part": "body", "message_index": 0, "utf16_byte_start": 3, "utf16_byte_end": 8}
        return {
            "name": "Billing > Refund",
            "occurrence_confidence": {"value": 0.9, "thresholds": ["stream", "balanced"]},
            "extraction_confidence": {"value": extraction, "thresholds": ["stream"] if extraction >= 0.5 else []},
            "fields": [{"name": "Amount", "value": {"formatted": amount}, "text_spans": [span]},
                       {"name": "Currency", "value": None, "text_spans": []}],
        }

    prediction = {
        "taxonomies": [{"name": "default", "labels": [refund("10.00", 0.8), refund("20.00", 0.3)], "general_fields": []}],
        "scores": [{"name": "tone", "value": -0.25}, {"name": "quality_of_service", "value": 4.5}],
    }
    body = {"results": [{"comment": comment(1), "prediction": prediction, "continuation": "c1"}], "continuation": "b"}
    [record] = build_records(body, "acme", "collections", "triage", 9, [])
    first, second = record["labels"]
    assert [f["value"] for f in first["fields"]] == ["10.00", None] and [f["value"] for f in second["fields"]] == ["20.00", None]
    assert first["fields"][0]["text_spans"] == prediction["taxonomies"][0]["labels"][0]["fields"][0]["text_spans"]
    assert (first["extraction_confidence"], first["extraction_thresholds"]) == (0.8, ["stream"])
    assert (second["extraction_confidence"], second["extraction_thresholds"]) == (0.3, [])
    assert record["stream_labels"] == ["Billing > Refund"]
    assert record["scores"] == [{"name": "tone", "value": -0.25}, {"name": "quality_of_service", "value": 4.5}]
