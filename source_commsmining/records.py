"""Turns one `/results` entry into a `stream_results` record (a hot path: plain class checks, no copies).

The whole comment and prediction are kept untouched (unknown future keys survive); a few
promoted columns make the warehouse table usable without JSON digging. Where each column
comes from is in `schemas/stream_results.json` and docs/commsmining.md.

A promoted column is a convenience: a comment or prediction of a shape the API does not use
(`messages: 5`, `taxonomies: "x"`, `created_at: 17`) must not fail a batch the record itself is
fine for. So each column group is built on its own: a group whose source has an odd shape is left
null (or empty) and named in `problems`, which the reader logs once per batch.

One implementation, not a fast path plus a careful one. Its checks are written out in each group
builder rather than in one small helper per value: a Python call costs about 1k instructions, and
the per-value helpers made this module half as dear again (187k against 120k instructions per
record on a 32-result batch of the emulator's `triage` stream; see `build_record`'s note), and the
connector's CPU guard in `make bench` fails without the written-out checks (benchmarks/README.md).
unit_tests/test_records_equivalence.py holds it to the helper-per-value version's output.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse
from source_commsmining.taxonomies import GENERAL_FIELD, LABEL, ODD, label_parent, meets_stream_threshold, walk

_NO_MESSAGE: Dict[str, Any] = {}
# How many (uid, columns) a batch warning names before it only counts.
_NAMED_IN_WARNING = 5


class _Odd(TypeError):
    """A value of a type the API does not use where a column is promoted from."""


# The checks below are written out (`x.__class__ is str`) rather than a helper call per value: a
# record takes a few dozen of them, and each Python call costs about a thousand instructions, more
# than the check (build_record's cost note). Only the shapes checked in more than one place have a
# helper of their own: a confidence (_confidence), a field (_field); the taxonomy walk is
# taxonomies.walk, shared with the flat tables.
# Each group's builder raises _Odd at the first value of an odd shape; build_record leaves that
# group empty and names its columns.


def _confidence(value: Any) -> Tuple[Any, List[str]]:
    """(value, thresholds) of a `{value, thresholds}` confidence, or of a plain number (no thresholds); _Odd otherwise."""
    thresholds: List[str] = []
    if value.__class__ is dict:
        value, thresholds = value.get("value"), value.get("thresholds")
        if thresholds is None:
            thresholds = []
        elif thresholds.__class__ is not list:
            raise _Odd
        for threshold in thresholds:
            if threshold.__class__ is not str:
                raise _Odd
    if value is not None and value.__class__ is not float and value.__class__ is not int:
        raise _Odd
    return value, thresholds


def _field(field: Dict[str, Any]) -> Tuple[str, Optional[str], Optional[List[Any]]]:
    """(name, formatted value, text spans) of an extracted or general field; _Odd for a shape the API does not use.

    A value is `{formatted}` (the API's shape) or a plain string (older servers); the text spans are
    kept as the API gives them, not read."""
    name, value, spans = field.get("name"), field.get("value"), field.get("text_spans")
    if name is None:
        name = ""
    elif name.__class__ is not str:
        raise _Odd
    if value.__class__ is dict:
        value = value.get("formatted")
    if value is not None and value.__class__ is not str:
        raise _Odd
    if spans is not None and spans.__class__ is not list:
        raise _Odd
    return name, value, spans


def _general_field(taxonomy_name: Any, field: Any) -> Dict[str, Any]:
    """One general field's entry; a confidence is a plain number (the API's) or `{value, thresholds}` (read too)."""
    if field.__class__ is not dict:
        raise _Odd
    name, value, spans = _field(field)
    confidence = _confidence(field.get("confidence"))[0]
    return {"taxonomy": taxonomy_name, "name": name, "value": value, "confidence": confidence, "text_spans": spans}


def _taxonomy_columns(record: Dict[str, Any], taxonomies: Any, odd: List[str]) -> None:
    """Sets labels, stream_labels and general_fields in one walk; a group with an odd value anywhere is left empty.

    `labels` has one entry per predicted label occurrence: a label predicted twice in a comment (two
    refunds, two amounts) is two entries, each with its own fields and extraction confidence;
    `stream_labels` names each label meeting the stream threshold once. A confidence is `{value,
    thresholds}`; a field's value `{formatted}` (the API's shape) or a plain string (older
    servers); a field's text spans are kept as the API gives them, not read; the API gives no
    per-field confidence. A taxonomy of an odd shape (or whose name is not a string) fails both
    groups; an odd label only `labels` and `stream_labels`, an odd general field only `general_fields`.
    """
    labels: Optional[List[Dict[str, Any]]] = []
    stream_labels: List[str] = []
    general_fields: Optional[List[Dict[str, Any]]] = []
    for kind, taxonomy_name, item in walk(taxonomies):
        if kind is LABEL:
            if labels is None:
                continue
            try:  # a label's entry, written out here rather than in a function of its own (a call per label)
                if item.__class__ is not dict:
                    raise _Odd
                get = item.get
                name = get("name")
                if name is None:
                    name = ""
                elif name.__class__ is not str:
                    raise _Odd
                occurrence_confidence = get("occurrence_confidence")
                confidence, thresholds = _confidence(occurrence_confidence)
                extraction, extraction_thresholds = _confidence(get("extraction_confidence"))
                fields = get("fields")
                if fields is not None and fields.__class__ is not list:
                    raise _Odd
                extracted = []
                for field in fields or ():
                    if field.__class__ is not dict:
                        raise _Odd
                    field_name, value, spans = _field(field)
                    extracted.append({"name": field_name, "value": value, "text_spans": spans})
                meets = meets_stream_threshold(occurrence_confidence)
                labels.append(
                    {
                        "taxonomy": taxonomy_name,
                        "name": name,
                        "parent": label_parent(name),
                        "confidence": confidence,
                        "thresholds": thresholds,
                        "meets_stream_threshold": meets,
                        "extraction_confidence": extraction,
                        "extraction_thresholds": extraction_thresholds,
                        "fields": extracted,
                    }
                )
                if meets and name not in stream_labels:
                    stream_labels.append(name)
            except Exception:  # noqa: BLE001 - any shape the API does not use
                labels = None
        elif kind is GENERAL_FIELD:
            if general_fields is None:
                continue
            try:  # a confidence is a plain number (the API's) or `{value, thresholds}` (read too)
                if item.__class__ is not dict:
                    raise _Odd
                name, value, spans = _field(item)
                confidence = _confidence(item.get("confidence"))[0]
                general_fields.append({"taxonomy": taxonomy_name, "name": name, "value": value, "confidence": confidence, "text_spans": spans})
            except Exception:  # noqa: BLE001
                general_fields = None
        elif item is ODD or (taxonomy_name is not None and taxonomy_name.__class__ is not str):
            labels = general_fields = None
            break
    if labels is None:
        record["labels"], record["stream_labels"] = [], []
        odd += ["labels", "stream_labels"]
    else:
        record["labels"], record["stream_labels"] = labels, stream_labels
    if general_fields is None:
        record["general_fields"] = []
        odd.append("general_fields")
    else:
        record["general_fields"] = general_fields


def _scores(source: Any) -> List[Dict[str, Any]]:
    """prediction.scores[] as {name, value} (e.g. tone, quality of service); [] when absent."""
    if source is None:
        return []
    if source.__class__ is not list:
        raise _Odd
    scores = []
    for score in source:
        if score.__class__ is not dict:
            raise _Odd
        name, value = score.get("name"), score.get("value")
        if name is not None and name.__class__ is not str:
            raise _Odd
        if value is not None and value.__class__ is not float and value.__class__ is not int:
            raise _Odd
        scores.append({"name": name, "value": value})
    return scores


def _promote_prediction(record: Dict[str, Any], prediction: Any, odd: List[str]) -> None:
    """Sets labels, stream_labels, general_fields and scores; a group whose source is odd is left empty and named in `odd`."""
    if prediction is None:
        record["labels"], record["stream_labels"], record["general_fields"], record["scores"] = [], [], [], []
        return
    if prediction.__class__ is not dict:
        record["labels"], record["stream_labels"], record["general_fields"], record["scores"] = [], [], [], []
        odd += ["labels", "stream_labels", "general_fields", "scores"]
        return
    _taxonomy_columns(record, prediction.get("taxonomies"), odd)  # an odd one fails the labels and the general fields, not the scores
    try:
        record["scores"] = _scores(prediction.get("scores"))
    except Exception:  # noqa: BLE001
        record["scores"] = []
        odd.append("scores")


def comment_uid(comment: Mapping[str, Any]) -> Optional[str]:
    """The comment's uid; when the API leaves it out, `<source_id>.<id>`, which is what a uid is."""
    uid = comment.get("uid")
    if uid.__class__ is str and uid:
        return uid
    source_id, comment_id = comment.get("source_id"), comment.get("id")
    if source_id and comment_id:
        return f"{source_id}.{comment_id}"
    return None


_COMMENT_TEXT = (
    ("comment_id", "id"),
    ("source_id", "source_id"),
    ("thread_id", "thread_id"),
    ("created_at", "created_at"),
    ("timestamp", "timestamp"),
    ("last_modified", "last_modified"),
)


def build_record(
    result: Mapping[str, Any],
    project: str,
    dataset: str,
    stream: str,
    model_version: Any = None,
    problems: Optional[List[Tuple[str, List[str]]]] = None,
    uid: Optional[str] = None,
) -> Dict[str, Any]:
    """The record of one result; a column whose source has an odd shape is null/empty and named in `problems`.

    Cost (the 32 results of one emulator `triage` batch, built and freed, GC set as run._tune_gc sets it;
    valgrind instruction counts): about 120k instructions per record, 187k with a helper call per
    checked value (one Python call costs ~1k; unit_tests/_records_reference.py). Shared rather than
    written out two or three times: the taxonomy walk (taxonomies.walk, one pass for the labels and
    the general fields, shared with the flat tables), the confidence check (`_confidence`) and the
    field check (`_field`). With no checks at all: 66k.
    """
    comment = result["comment"]
    prediction = result.get("prediction")
    uid = uid or comment_uid(comment)
    odd: List[str] = []
    record: Dict[str, Any] = {"uid": uid, "project": project, "dataset": dataset, "stream": stream}
    get = comment.get
    for column, key in _COMMENT_TEXT:
        value = get(key)
        if value is not None and value.__class__ is not str:
            value = None
            odd.append(column)
        record[column] = value
    messages = get("messages")
    if messages is None or messages.__class__ is list:
        first = messages[0] if messages else _NO_MESSAGE
        record["message_count"] = None if messages is None else len(messages)
    else:
        first = None
        record["message_count"] = None
    if first.__class__ is not dict:  # messages of an odd type, or a first message that is not an object
        record["subject"] = record["sender"] = None
        odd += ["subject", "sender"] if messages.__class__ is list else ["subject", "sender", "message_count"]
    else:
        subject = first.get("subject")
        if subject is not None:
            subject = subject.get("text") if subject.__class__ is dict else False
            if subject is not None and subject.__class__ is not str:  # False: not a `{text}` object
                subject = None
                odd.append("subject")
        record["subject"] = subject
        sender = first.get("from")
        if sender is not None and sender.__class__ is not str:
            sender = None
            odd.append("sender")
        record["sender"] = sender
    record["model_version"] = None if prediction is None else model_version
    _promote_prediction(record, prediction, odd)
    record["comment"] = comment
    record["prediction"] = prediction
    continuation = result.get("continuation")
    if continuation is not None and continuation.__class__ is not str:
        continuation = None
        odd.append("continuation")
    record["continuation"] = continuation
    if problems is not None and odd:
        problems.append((uid, odd))
    return record


def build_records(
    body: Mapping[str, Any],
    project: str,
    dataset: str,
    stream: str,
    model_version: Any = None,
    problems: Optional[List[Tuple[str, List[str]]]] = None,
) -> List[Dict[str, Any]]:
    """The records of one decoded `/results` body; a result that cannot be keyed fails the whole batch.

    A record without a uid could not be deduplicated or found again, and skipping it would lose
    the comment for good once the stream is advanced; so the batch is refused before anything of
    it is emitted, with a message that says which result it was. `model_version` is the stream
    definition's (the body carries none), given to the records that have a prediction; `problems`
    collects, per uid, the columns left empty because their source had an unexpected shape.
    """
    records = []
    for index, result in enumerate(body["results"]):
        comment = result.get("comment") if result.__class__ is dict else None
        uid = comment_uid(comment) if comment.__class__ is dict else None
        if uid is None:
            raise _unkeyable(result, index, body, f"{project}/{dataset}/{stream}")
        records.append(build_record(result, project, dataset, stream, model_version, problems, uid))
    return records


def first_few(items: List[str]) -> str:
    """`a; b; c; and 4 more` for a batch warning: the first few named, the rest counted."""
    more = len(items) - _NAMED_IN_WARNING
    return "; ".join(items[:_NAMED_IN_WARNING]) + (f"; and {more} more" if more > 0 else "")


def describe_problems(problems: List[Tuple[str, List[str]]]) -> str:
    """`<uid> (subject, labels); ...`: the comments whose promoted columns were left empty."""
    return first_few([f"{uid} ({', '.join(columns)})" for uid, columns in problems])


def _unkeyable(result: Any, index: int, body: Mapping[str, Any], where: str) -> BadResponse:
    comment = result.get("comment") if isinstance(result, dict) else None
    known = {key: comment.get(key) for key in ("id", "source_id", "created_at")} if isinstance(comment, dict) else {}
    what = "no comment" if not isinstance(comment, dict) else "a comment without uid (nor source_id and id)"
    return BadResponse(
        message=(
            f"/results for {where} returned {what} in result {index + 1} of {len(body['results'])} "
            f"(known fields: {known or 'none'}; result continuation {result.get('continuation') if isinstance(result, dict) else None!r}; "
            f"batch continuation {body.get('continuation')!r}). Nothing of this batch was emitted and the stream was "
            "not advanced, so no comment is lost; the next sync will meet the same batch until the API serves it whole."
        ),
        failure_type=FailureType.system_error,
    )
