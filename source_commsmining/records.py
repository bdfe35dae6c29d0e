"""Turns one `/results` entry into a `stream_results` record (a hot path: plain dict checks, no copies).

The whole comment and prediction are kept untouched (unknown future keys survive); a few
promoted columns make the warehouse table usable without JSON digging. Where each column
comes from is in `schemas/stream_results.json`.

A promoted column is a convenience: a comment or prediction of a shape the API does not use
(`messages: 5`, `taxonomies: "x"`, `created_at: 17`) must not fail a batch the record itself is
fine for. So the record is built in one go by a fast path that accepts only the documented
shape (every key present, every value of its type) and raises on anything else; only then is it
rebuilt column group by column group (`_build_carefully`, which defines what a record is), each
group that cannot be promoted left null (or empty) and named in `problems`, which the reader logs
once per batch. Where the fast path succeeds it gives exactly the careful path's record
(unit_tests/test_properties.py checks both on generated and mutated bodies).
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse

STREAM_THRESHOLD = "stream"
_NUMBER = (int, float)
_TEXT_CLASSES = frozenset((str, type(None)))
_NO_MESSAGE: Dict[str, Any] = {}
# How many (uid, columns) a batch warning names before it only counts.
_NAMED_IN_WARNING = 5


class _Odd(TypeError):
    """A value of a type the API does not use where a column is promoted from."""


def _text(value: Any) -> Optional[str]:
    if value is None or value.__class__ is str:
        return value
    raise _Odd


def _number(value: Any) -> Optional[float]:
    if value is None or value.__class__ in _NUMBER:
        return value
    raise _Odd


def _confidence(value: Any) -> Optional[float]:
    """A `{value, thresholds}` confidence's value; a plain number (a general field's) as it is."""
    if value.__class__ is dict:
        return _number(value.get("value"))
    return _number(value)


def _thresholds(value: Any) -> List[str]:
    return [] if value is None else _items(value, "thresholds")


def _formatted(value: Any) -> Optional[str]:
    """`{formatted}` (the API's shape) or a plain string (older servers)."""
    if value.__class__ is dict:
        return _text(value.get("formatted"))
    return _text(value)


def _taxonomies(prediction: Any) -> List[Dict[str, Any]]:
    return [] if prediction is None else _items(prediction, "taxonomies")


def _items(container: Any, key: str) -> List[Dict[str, Any]]:
    if container.__class__ is not dict:
        raise _Odd
    items = container.get(key)
    if items is None:
        return []
    if items.__class__ is not list:
        raise _Odd
    return items


def flatten_labels(prediction: Any) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(every predicted label flattened, names of the labels meeting the stream threshold)."""
    labels: List[Dict[str, Any]] = []
    stream_labels: List[str] = []
    for taxonomy in _taxonomies(prediction):
        taxonomy_name = _text(_items_owner(taxonomy).get("name"))
        for label in _items(taxonomy, "labels"):
            if label.__class__ is not dict:
                raise _Odd
            name = _text(label.get("name")) or ""
            occurrence = label.get("occurrence_confidence")
            thresholds = _thresholds(occurrence)
            meets = STREAM_THRESHOLD in thresholds
            parent = name.rpartition(" > ")[0]
            labels.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": name,
                    "parent": parent or None,
                    "confidence": _confidence(occurrence),
                    "thresholds": thresholds,
                    "extraction_confidence": _confidence(label.get("extraction_confidence")),
                    "meets_stream_threshold": meets,
                }
            )
            if meets:
                stream_labels.append(name)
    return labels, stream_labels


def flatten_general_fields(prediction: Any) -> List[Dict[str, Any]]:
    general_fields: List[Dict[str, Any]] = []
    for taxonomy in _taxonomies(prediction):
        taxonomy_name = _text(_items_owner(taxonomy).get("name"))
        for field in _items(taxonomy, "general_fields"):
            if field.__class__ is not dict:
                raise _Odd
            general_fields.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": _text(field.get("name")) or "",
                    "value": _formatted(field.get("value")),
                    "confidence": _confidence(field.get("confidence")),
                }
            )
    return general_fields


def _items_owner(value: Any) -> Dict[str, Any]:
    if value.__class__ is not dict:
        raise _Odd
    return value


def _flatten_fast(prediction: Any) -> Tuple[List[Dict[str, Any]], List[str], List[Dict[str, Any]]]:
    """flatten_labels and flatten_general_fields in one pass, for the shape the API documents (every key
    present); raises on anything else."""
    labels: List[Dict[str, Any]] = []
    stream_labels: List[str] = []
    general_fields: List[Dict[str, Any]] = []
    if prediction is None:
        return labels, stream_labels, general_fields
    taxonomies = prediction["taxonomies"]
    if taxonomies.__class__ is not list:  # an empty string or object would iterate as nothing
        raise _Odd
    for taxonomy in taxonomies:
        taxonomy_name = taxonomy["name"]
        labels_in, fields_in = taxonomy["labels"], taxonomy["general_fields"]
        if taxonomy_name.__class__ is not str or labels_in.__class__ is not list or fields_in.__class__ is not list:
            raise _Odd
        for label in labels_in:
            name = label["name"]
            occurrence = label["occurrence_confidence"]
            thresholds = occurrence["thresholds"]
            confidence = occurrence["value"]
            extraction = label["extraction_confidence"]["value"]
            if (
                name.__class__ is not str
                or thresholds.__class__ is not list
                or confidence.__class__ not in _NUMBER
                or extraction.__class__ not in _NUMBER
            ):
                raise _Odd
            meets = STREAM_THRESHOLD in thresholds
            labels.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": name,
                    "parent": name.rpartition(" > ")[0] or None,
                    "confidence": confidence,
                    "thresholds": thresholds,
                    "extraction_confidence": extraction,
                    "meets_stream_threshold": meets,
                }
            )
            if meets:
                stream_labels.append(name)
        for field in fields_in:
            name = field["name"]
            value = field["value"]
            if value is not None:
                value = value["formatted"]
            confidence = field["confidence"]
            if name.__class__ is not str or value.__class__ not in _TEXT_CLASSES or (
                confidence is not None and confidence.__class__ not in _NUMBER
            ):
                raise _Odd
            general_fields.append({"taxonomy": taxonomy_name, "name": name, "value": value, "confidence": confidence})
    return labels, stream_labels, general_fields


def comment_uid(comment: Mapping[str, Any]) -> Optional[str]:
    """The comment's uid; when the API leaves it out, `<source_id>.<id>`, which is what a uid is."""
    uid = comment.get("uid")
    if uid.__class__ is str and uid:
        return uid
    source_id, comment_id = comment.get("source_id"), comment.get("id")
    if source_id and comment_id:
        return f"{source_id}.{comment_id}"
    return None


def _messages(comment: Mapping[str, Any]) -> Optional[List[Any]]:
    messages = comment.get("messages")
    if messages is None or messages.__class__ is list:
        return messages
    raise _Odd


def _first_message(comment: Mapping[str, Any]) -> Dict[str, Any]:
    messages = _messages(comment)
    if not messages:
        return {}
    first = messages[0]
    if first.__class__ is not dict:
        raise _Odd
    return first


def _subject(comment: Mapping[str, Any]) -> Optional[str]:
    subject = _first_message(comment).get("subject")
    if subject is None:
        return None
    if subject.__class__ is not dict:
        raise _Odd
    return _text(subject.get("text"))


def _sender(comment: Mapping[str, Any]) -> Optional[str]:
    return _text(_first_message(comment).get("from"))


def _message_count(comment: Mapping[str, Any]) -> Optional[int]:
    messages = _messages(comment)
    return None if messages is None else len(messages)


_COMMENT_TEXT = (
    ("comment_id", "id"),
    ("source_id", "source_id"),
    ("thread_id", "thread_id"),
    ("created_at", "created_at"),
    ("timestamp", "timestamp"),
    ("last_modified", "last_modified"),
)
_FROM_COMMENT = (("subject", _subject), ("sender", _sender), ("message_count", _message_count))


def build_record(
    result: Mapping[str, Any],
    project: str,
    dataset: str,
    stream: str,
    model_version: Any = None,
    problems: Optional[List[Tuple[str, List[str]]]] = None,
    uid: Optional[str] = None,
) -> Dict[str, Any]:
    """The record of one result; a column whose source has an odd shape is null/empty and named in `problems`."""
    comment = result["comment"]
    prediction = result.get("prediction")
    uid = uid or comment_uid(comment)
    try:
        messages = comment["messages"]
        if messages.__class__ is not list:
            raise _Odd
        first = messages[0] if messages else _NO_MESSAGE
        subject = first.get("subject")
        subject = None if subject is None else subject["text"]
        sender = first.get("from")
        comment_id, source_id, thread_id = comment["id"], comment["source_id"], comment.get("thread_id")
        created_at, timestamp, last_modified = comment["created_at"], comment["timestamp"], comment["last_modified"]
        if not {
            comment_id.__class__, source_id.__class__, thread_id.__class__, created_at.__class__,
            timestamp.__class__, last_modified.__class__, subject.__class__, sender.__class__,
        } <= _TEXT_CLASSES:
            raise _Odd
        labels, stream_labels, general_fields = _flatten_fast(prediction)
        continuation = result["continuation"]
        if continuation.__class__ is not str:
            raise _Odd
        return {
            "uid": uid,
            "project": project,
            "dataset": dataset,
            "stream": stream,
            "comment_id": comment_id,
            "source_id": source_id,
            "thread_id": thread_id,
            "created_at": created_at,
            "timestamp": timestamp,
            "last_modified": last_modified,
            "subject": subject,
            "sender": sender,
            "message_count": len(messages),
            "model_version": None if prediction is None else model_version,
            "labels": labels,
            "stream_labels": stream_labels,
            "general_fields": general_fields,
            "comment": comment,
            "prediction": prediction,
            "continuation": continuation,
        }
    except Exception:  # noqa: BLE001 - any shape the API does not use; the careful path names the columns
        return _build_carefully(result, project, dataset, stream, model_version, problems, uid)


def _build_carefully(
    result: Mapping[str, Any],
    project: str,
    dataset: str,
    stream: str,
    model_version: Any,
    problems: Optional[List[Tuple[str, List[str]]]],
    uid: Optional[str],
) -> Dict[str, Any]:
    comment = result["comment"]
    prediction = result.get("prediction")
    odd: List[str] = []
    record: Dict[str, Any] = {"uid": uid, "project": project, "dataset": dataset, "stream": stream}
    for column, key in _COMMENT_TEXT:
        try:
            record[column] = _text(comment.get(key))
        except Exception:  # noqa: BLE001
            record[column] = None
            odd.append(column)
    for column, promote in _FROM_COMMENT:
        try:
            record[column] = promote(comment)
        except Exception:  # noqa: BLE001
            record[column] = None
            odd.append(column)
    record["model_version"] = None if prediction is None else model_version
    try:
        record["labels"], record["stream_labels"] = flatten_labels(prediction)
    except Exception:  # noqa: BLE001
        record["labels"], record["stream_labels"] = [], []
        odd += ["labels", "stream_labels"]
    try:
        record["general_fields"] = flatten_general_fields(prediction)
    except Exception:  # noqa: BLE001
        record["general_fields"] = []
        odd.append("general_fields")
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
