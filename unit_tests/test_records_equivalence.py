"""records.py gives exactly what its pre-optimisation version gave, on every input.

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
from unit_tests.test_properties import _ANY_JSON, _mutate, bodies, examples

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


# ---------------------------------------------------------------- results built deep, then mutated
def _object(**slots):
    """Mostly with every slot (so that the deep shapes are reached), sometimes with some left out."""
    whole = st.fixed_dictionaries(slots)
    return st.one_of(whole, whole, whole, st.fixed_dictionaries({}, optional=slots))


def _list_of(item):
    some = st.lists(item, min_size=1, max_size=2)
    return st.one_of(some, some, some, st.none(), st.just([]))


def _leaf(valid):
    """Mostly a value of the type the API uses there, sometimes any JSON value (a boolean for a number, ...)."""
    return st.one_of(valid, valid, valid, valid, st.booleans(), _ANY_JSON)


_TEXT = _leaf(st.one_of(st.none(), st.sampled_from(["", "a", "Claims", "Claims > New", "stream"]), st.text(max_size=3)))
_NUMBER = _leaf(st.one_of(st.none(), st.integers(-3, 3), st.floats(allow_nan=False)))
_THRESHOLDS = _list_of(_leaf(st.sampled_from(["stream", "balanced", "high_recall"])))
_CONFIDENCE = st.one_of(_object(value=_NUMBER, thresholds=_THRESHOLDS), _NUMBER)
_VALUE = st.one_of(_object(formatted=_TEXT), _TEXT)
_FIELD = _object(name=_TEXT, value=_VALUE, confidence=_CONFIDENCE, text_spans=st.one_of(st.none(), st.lists(_ANY_JSON, max_size=2)))
_LABEL = _object(name=_TEXT, occurrence_confidence=_CONFIDENCE, extraction_confidence=_CONFIDENCE, fields=_list_of(_FIELD))
_TAXONOMY = _object(name=_TEXT, labels=_list_of(_LABEL), general_fields=_list_of(_FIELD))
_PREDICTION = _object(taxonomies=_list_of(_TAXONOMY), scores=_list_of(_object(name=_TEXT, value=_NUMBER)))
_MESSAGE = _object(subject=st.one_of(_object(text=_TEXT), st.none()), **{"from": _TEXT})
_COMMENT = st.fixed_dictionaries(
    {"uid": st.sampled_from(["s1.c1", "s1.c2", ""])},  # "": keyed by source_id and id, or unkeyable
    optional={key: _TEXT for key in ("id", "source_id", "thread_id", "created_at", "timestamp", "last_modified")}
    | {"messages": _list_of(_MESSAGE)},
)
_RESULT = st.fixed_dictionaries({"comment": _COMMENT}, optional={"continuation": _TEXT}).flatmap(
    lambda result: st.one_of(_PREDICTION, _PREDICTION, _PREDICTION, st.none()).map(lambda prediction: {**result, "prediction": prediction})
)


@settings(max_examples=examples(500), **SETTINGS)  # CI: 150 (PROPERTIES_SCALE=large: 500)
@given(results=st.lists(_RESULT, min_size=1, max_size=3), model_version=st.one_of(st.none(), st.integers(1, 9)), data=st.data())
def test_deep_results_with_any_value_anywhere_give_what_the_reference_gave(results, model_version, data):
    body = {"results": results, "continuation": "b"}
    _assert_same_everywhere(body, model_version)  # as generated: odd values at the leaves only
    _assert_same_everywhere(_mutate(body, data), model_version)  # 1-3 slots dropped, retyped or nested


@settings(max_examples=examples(60), **SETTINGS)
@given(body=bodies("GetStreamResultsResponse"), model_version=st.one_of(st.none(), st.integers(1, 50)))
def test_valid_results_bodies_give_what_the_reference_gave(body, model_version):
    _assert_same_everywhere(body, model_version)


@settings(max_examples=examples(100), phases=[Phase.explicit, Phase.reuse, Phase.generate], **SETTINGS)
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
