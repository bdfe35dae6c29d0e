"""FROZEN REFERENCE, for equivalence tests only: `source_commsmining/records.py` as it was before the
per-record cost was cut (commit 9c62399). Never import it from the connector; never edit it
to follow a change of records.py: a deliberate change of what a record is must change the tests that
compare against this copy (unit_tests/test_records_equivalence.py), not this copy.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse

STREAM_THRESHOLD = "stream"
_NUMBER = (int, float)
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


def _object(value: Any) -> Dict[str, Any]:
    if value.__class__ is not dict:
        raise _Odd
    return value


def _list(value: Any) -> List[Any]:
    """A list, or [] for null/absent."""
    if value is None:
        return []
    if value.__class__ is not list:
        raise _Odd
    return value


def _confidence(value: Any) -> Tuple[Optional[float], List[str]]:
    """(value, thresholds) of a `{value, thresholds}` confidence; a plain number (a general field's) as it is."""
    if value.__class__ is dict:
        thresholds = _list(value.get("thresholds"))
        for threshold in thresholds:
            if threshold.__class__ is not str:
                raise _Odd
        return _number(value.get("value")), thresholds
    return _number(value), []


def _spans(value: Any) -> Optional[List[Any]]:
    """text_spans as the API gives them (kept, not read: cheap); null when absent."""
    if value is None or value.__class__ is list:
        return value
    raise _Odd


def _formatted(value: Any) -> Optional[str]:
    """`{formatted}` (the API's shape) or a plain string (older servers)."""
    if value.__class__ is dict:
        return _text(value.get("formatted"))
    return _text(value)


def _taxonomies(prediction: Any) -> List[Any]:
    return [] if prediction is None else _list(_object(prediction).get("taxonomies"))


def _fields(fields: Any) -> List[Dict[str, Any]]:
    """A label occurrence's extracted fields: name, formatted value, text spans (the API gives no per-field confidence)."""
    out = []
    for field in _list(fields):
        field = _object(field)
        out.append(
            {
                "name": _text(field.get("name")) or "",
                "value": _formatted(field.get("value")),
                "text_spans": _spans(field.get("text_spans")),
            }
        )
    return out


def flatten_labels(prediction: Any) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(one entry per predicted label occurrence, each name meeting the stream threshold once).

    A label predicted twice in a comment (two refunds, two amounts) is two entries, each with its
    own fields and extraction confidence; `stream_labels` names it once.
    """
    labels: List[Dict[str, Any]] = []
    stream_labels: List[str] = []
    for taxonomy in _taxonomies(prediction):
        taxonomy = _object(taxonomy)
        taxonomy_name = _text(taxonomy.get("name"))
        for label in _list(taxonomy.get("labels")):
            label = _object(label)
            name = _text(label.get("name")) or ""
            confidence, thresholds = _confidence(label.get("occurrence_confidence"))
            extraction, extraction_thresholds = _confidence(label.get("extraction_confidence"))
            meets = STREAM_THRESHOLD in thresholds
            labels.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": name,
                    "parent": name.rpartition(" > ")[0] or None,
                    "confidence": confidence,
                    "thresholds": thresholds,
                    "meets_stream_threshold": meets,
                    "extraction_confidence": extraction,
                    "extraction_thresholds": extraction_thresholds,
                    "fields": _fields(label.get("fields")),
                }
            )
            if meets and name not in stream_labels:
                stream_labels.append(name)
    return labels, stream_labels


def flatten_general_fields(prediction: Any) -> List[Dict[str, Any]]:
    general_fields: List[Dict[str, Any]] = []
    for taxonomy in _taxonomies(prediction):
        taxonomy = _object(taxonomy)
        taxonomy_name = _text(taxonomy.get("name"))
        for field in _list(taxonomy.get("general_fields")):
            field = _object(field)
            general_fields.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": _text(field.get("name")) or "",
                    "value": _formatted(field.get("value")),
                    "confidence": _confidence(field.get("confidence"))[0],
                    "text_spans": _spans(field.get("text_spans")),
                }
            )
    return general_fields


def flatten_scores(prediction: Any) -> List[Dict[str, Any]]:
    """prediction.scores[] as {name, value} (e.g. tone, quality of service); [] when absent."""
    if prediction is None:
        return []
    scores = []
    for score in _list(_object(prediction).get("scores")):
        score = _object(score)
        scores.append({"name": _text(score.get("name")), "value": _number(score.get("value"))})
    return scores


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
# Each group is promoted on its own; a group that fails is left empty and its columns named.
_PREDICTION_GROUPS = (
    (("labels", "stream_labels"), flatten_labels),
    (("general_fields",), lambda prediction: (flatten_general_fields(prediction),)),
    (("scores",), lambda prediction: (flatten_scores(prediction),)),
)


def _text_or_odd(value: Any, column: str, odd: List[str]) -> Optional[str]:
    """A string (or null) as it is; anything else null, with `column` named in `odd`."""
    if value is None or value.__class__ is str:
        return value
    odd.append(column)
    return None


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

    Cost (32-result batch of the emulator's `triage` stream, timeit):
    about 10-13 us per record, against 8 us for the former fast path alone.
    """
    comment = result["comment"]
    prediction = result.get("prediction")
    uid = uid or comment_uid(comment)
    odd: List[str] = []
    record: Dict[str, Any] = {"uid": uid, "project": project, "dataset": dataset, "stream": stream}
    for column, key in _COMMENT_TEXT:
        record[column] = _text_or_odd(comment.get(key), column, odd)
    messages = comment.get("messages")
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
        record["sender"] = _text_or_odd(first.get("from"), "sender", odd)
    record["model_version"] = None if prediction is None else model_version
    for columns, promote in _PREDICTION_GROUPS:
        try:
            values = promote(prediction)
        except Exception:  # noqa: BLE001 - any shape the API does not use
            values = ([],) * len(columns)
            odd += columns
        for column, value in zip(columns, values):
            record[column] = value
    record["comment"] = comment
    record["prediction"] = prediction
    record["continuation"] = _text_or_odd(result.get("continuation"), "continuation", odd)
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
