"""Turns one `/results` entry into a `stream_results` record (a hot path: plain dict checks, no copies).

The whole comment and prediction are kept untouched (unknown future keys survive); a few
promoted columns make the warehouse table usable without JSON digging.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse

STREAM_THRESHOLD = "stream"


def _confidence(value: Any) -> Optional[float]:
    return value.get("value") if value.__class__ is dict else None


def _thresholds(value: Any) -> List[str]:
    thresholds = value.get("thresholds") if value.__class__ is dict else None
    return thresholds if thresholds.__class__ is list else []


def _formatted(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        formatted = value.get("formatted")
        return None if formatted is None else str(formatted)
    return None if value is None else str(value)


def flatten_prediction(
    prediction: Optional[Mapping[str, Any]],
) -> Tuple[List[Dict[str, Any]], List[str], List[Dict[str, Any]]]:
    """Returns (labels, names of labels meeting the stream threshold, general fields)."""
    labels: List[Dict[str, Any]] = []
    stream_labels: List[str] = []
    general_fields: List[Dict[str, Any]] = []
    if not isinstance(prediction, dict):
        return labels, stream_labels, general_fields
    for taxonomy in prediction.get("taxonomies") or ():
        taxonomy_name = taxonomy.get("name")
        for label in taxonomy.get("labels") or ():
            name = label.get("name") or ""
            occurrence = label.get("occurrence_confidence")
            thresholds = _thresholds(occurrence)
            meets = STREAM_THRESHOLD in thresholds
            parent = name.rpartition(" > ")[0]
            labels.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": name,
                    "parent": parent or None,
                    "confidence": occurrence.get("value") if occurrence.__class__ is dict else None,
                    "thresholds": thresholds,
                    "extraction_confidence": _confidence(label.get("extraction_confidence")),
                    "meets_stream_threshold": meets,
                }
            )
            if meets:
                stream_labels.append(name)
        for field in taxonomy.get("general_fields") or ():
            general_fields.append(
                {
                    "taxonomy": taxonomy_name,
                    "name": field.get("name") or "",
                    "value": _formatted(field.get("value")),
                    "confidence": _confidence(field.get("confidence")),
                }
            )
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


def build_record(
    result: Mapping[str, Any], project: str, dataset: str, stream: str, model_version: Any = None
) -> Dict[str, Any]:
    comment = result["comment"]
    prediction = result.get("prediction")
    messages = comment.get("messages") or []
    first = messages[0] if messages and isinstance(messages[0], dict) else {}
    subject = first.get("subject")
    labels, stream_labels, general_fields = flatten_prediction(prediction)
    return {
        "uid": comment_uid(comment),
        "project": project,
        "dataset": dataset,
        "stream": stream,
        "comment_id": comment.get("id"),
        "source_id": comment.get("source_id"),
        "thread_id": comment.get("thread_id"),
        "created_at": comment.get("created_at"),
        "timestamp": comment.get("timestamp"),
        "last_modified": comment.get("last_modified"),
        "subject": subject.get("text") if isinstance(subject, dict) else None,
        "sender": first.get("from"),
        "message_count": len(messages),
        "model_version": model_version,
        "labels": labels,
        "stream_labels": stream_labels,
        "general_fields": general_fields,
        "comment": comment,
        "prediction": prediction,
        "continuation": result.get("continuation"),
    }


def build_records(body: Mapping[str, Any], project: str, dataset: str, stream: str) -> List[Dict[str, Any]]:
    """The records of one decoded `/results` body; a result that cannot be keyed fails the whole batch.

    A record without a uid could not be deduplicated or found again, and skipping it would lose
    the comment for good once the stream is advanced; so the batch is refused before anything of
    it is emitted, with a message that says which result it was.
    """
    model = body.get("model")
    version = model.get("version") if isinstance(model, dict) else None
    records = []
    for index, result in enumerate(body["results"]):
        comment = result.get("comment") if result.__class__ is dict else None
        record = build_record(result, project, dataset, stream, version) if comment.__class__ is dict else None
        if record is None or record["uid"] is None:
            raise _unkeyable(result, index, body, f"{project}/{dataset}/{stream}")
        records.append(record)
    return records


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
