"""records.py gives exactly what its pre-optimisation version gave (issue #20), on every input.

`unit_tests/_records_reference.py` is a frozen copy of records.py from before its per-record cost
was cut. For valid API bodies (generated from the API's shapes, as in test_properties.py), the
same bodies mutated, and results built slot by slot where any slot may hold any JSON value, the
new and the old `build_records` / `build_record` must agree: the same records serialised byte for
byte (same keys in the same order, same values of the same types), the same `problems`, the same
comment and prediction objects (kept, not copied), or the same exception with the same message.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from source_commsmining import records as new
from unit_tests import _records_reference as old
from unit_tests.test_properties import _ANY_JSON, _mutate, bodies

SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)
WHERE = ("acme", "collections", "triage")


def _run(build, *args: Any) -> Tuple[str, Any, Any]:
    """("ok", records as JSON text, problems) or ("raised", exception type name, message) of one call."""
    problems: List[Any] = []
    try:
        built = build(*args, problems)
    except Exception as error:  # noqa: BLE001 - both versions must fail the same way
        return "raised", type(error).__name__, getattr(error, "message", None) or str(error)
    return "ok", json.dumps(built), problems


def _assert_same_everywhere(body: Dict[str, Any], model_version: Any) -> None:
    got = _run(new.build_records, body, *WHERE, model_version)
    want = _run(old.build_records, body, *WHERE, model_version)
    assert got == want
    results = body.get("results")
    for result in results if isinstance(results, list) else []:
        if not (isinstance(result, dict) and isinstance(result.get("comment"), dict)):
            continue
        for uid in (None, "given.uid"):
            got = _one(new.build_record, result, model_version, uid)
            want = _one(old.build_record, result, model_version, uid)
            assert got[:3] == want[:3]
            if got[0] == "ok":  # the comment and prediction are the result's own objects
                assert got[3]["comment"] is result["comment"] and got[3]["prediction"] is result.get("prediction")


def _one(build, result: Dict[str, Any], model_version: Any, uid: Optional[str]) -> Tuple[Any, ...]:
    problems: List[Any] = []
    try:
        record = build(result, *WHERE, model_version, problems, uid)
    except Exception as error:  # noqa: BLE001
        return "raised", type(error).__name__, str(error), None
    without = build(result, *WHERE, model_version, None, uid)  # no problems list: the same record
    assert json.dumps(without) == json.dumps(record)
    return "ok", json.dumps(record), problems, record


# ---------------------------------------------------------------- results built slot by slot
def _maybe(valid):
    """Mostly the valid shape, sometimes any JSON value at all (the odd shapes a server might send)."""
    return st.one_of(valid, valid, valid, _ANY_JSON)


def _object(**slots):
    return _maybe(st.fixed_dictionaries({}, optional=slots))


def _list_of(item):
    return _maybe(st.one_of(st.none(), st.lists(item, max_size=3)))


_NUMBERS = st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
_TEXT = _maybe(st.one_of(st.none(), st.sampled_from(["", "a", "Claims > New", "stream"]), st.text(max_size=3)))
_NUMBER = _maybe(_NUMBERS)
_THRESHOLDS = _list_of(_maybe(st.sampled_from(["stream", "balanced", "high_recall"])))
_CONFIDENCE = _maybe(st.one_of(_NUMBERS, st.fixed_dictionaries({}, optional={"value": _NUMBER, "thresholds": _THRESHOLDS})))
_VALUE = _maybe(st.one_of(st.none(), _TEXT, st.fixed_dictionaries({}, optional={"formatted": _TEXT})))
_SPANS = _maybe(st.one_of(st.none(), st.lists(_ANY_JSON, max_size=2)))
_FIELD = _object(name=_TEXT, value=_VALUE, confidence=_CONFIDENCE, text_spans=_SPANS)
_LABEL = _object(name=_TEXT, occurrence_confidence=_CONFIDENCE, extraction_confidence=_CONFIDENCE, fields=_list_of(_FIELD))
_TAXONOMY = _object(name=_TEXT, labels=_list_of(_LABEL), general_fields=_list_of(_FIELD))
_PREDICTION = _maybe(st.one_of(st.none(), st.fixed_dictionaries({}, optional={"taxonomies": _list_of(_TAXONOMY), "scores": _list_of(_object(name=_TEXT, value=_NUMBER))})))
_MESSAGE = _object(subject=_maybe(st.one_of(st.none(), st.fixed_dictionaries({}, optional={"text": _TEXT}))), **{"from": _TEXT})
_COMMENT = st.fixed_dictionaries(
    {"uid": st.sampled_from(["s1.c1", "s1.c2"])},
    optional={
        "id": _TEXT,
        "source_id": _TEXT,
        "thread_id": _TEXT,
        "created_at": _TEXT,
        "timestamp": _TEXT,
        "last_modified": _TEXT,
        "messages": _list_of(_MESSAGE),
    },
)
_RESULT = st.fixed_dictionaries({"comment": _COMMENT}, optional={"prediction": _PREDICTION, "continuation": _TEXT})


@settings(max_examples=400, **SETTINGS)
@given(results=st.lists(_RESULT, min_size=1, max_size=4), model_version=st.one_of(st.none(), st.integers(1, 9)))
def test_results_with_any_value_in_any_slot_give_what_the_reference_gave(results, model_version):
    _assert_same_everywhere({"results": results, "continuation": "b"}, model_version)


@settings(max_examples=150, **SETTINGS)
@given(body=bodies("GetStreamResultsResponse"), model_version=st.one_of(st.none(), st.integers(1, 50)))
def test_valid_results_bodies_give_what_the_reference_gave(body, model_version):
    _assert_same_everywhere(body, model_version)


@settings(max_examples=250, phases=[Phase.explicit, Phase.reuse, Phase.generate], **SETTINGS)
@given(body=bodies("GetStreamResultsResponse"), data=st.data())
def test_mutated_results_bodies_give_what_the_reference_gave(body, data):
    _assert_same_everywhere(_mutate(body, data), 7)


def test_the_reference_is_not_the_module_it_checks():
    """The comparison can fail: the reference is its own code, not records.py imported twice."""
    assert old.build_record is not new.build_record and old.__file__ != new.__file__
    result = {"comment": {"uid": "s.c", "created_at": 17}, "prediction": {"taxonomies": "x"}}
    problems: List[Any] = []
    old.build_record(result, *WHERE, 7, problems)
    assert problems == [("s.c", ["created_at", "labels", "stream_labels", "general_fields"])]
