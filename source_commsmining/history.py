"""`dataset_comments` and `dataset_comment_labels`: a dataset's history and ground truth, from the dataset export.

The documented export (`POST /api/v1/datasets/<project>/<dataset>/export`) reads a dataset's comments
with the labels people reviewed (`annotations.labels.assigned`) and the model's predictions, without
moving any stream. The manifest declares both streams (a partition per dataset, a DatetimeBasedCursor
on upload time in windows, a cursor paginator on `continuation`); this module holds what it cannot say:

- `DatasetCommentsExtractor`: a record per exported comment, with promoted columns that stay null
  (not "None") when the API leaves a value out, and only the comments uploaded in the page's window
  `[from, to)`. The requester sends `to` = the window's inclusive end plus the cursor's granularity
  (the next window's start), so whether the API's `to` is inclusive (the emulator's) or exclusive, a
  comment uploaded exactly on a window edge is read once: by the window that starts there.
- `ExportContinuation`: the next page's token, as the extractor read it (the CDK's cursor paginator
  would parse each page a second time for it).
- `label_rows`: the flat rows of one record, one per label per kind (`reviewed`, `predicted`).

Both streams selected are read from one read of `dataset_comments` (shared_pages.py).
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Mapping, MutableMapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

import orjson
import requests
from airbyte_cdk.models import FailureType
from airbyte_cdk.sources.declarative.extractors.record_extractor import RecordExtractor
from airbyte_cdk.sources.declarative.requesters.paginators.strategies.pagination_strategy import PaginationStrategy

from source_commsmining import backlog
from source_commsmining.envelope import BadResponse, decode
from source_commsmining.timestamps import iso_instant
from source_commsmining.taxonomies import label_parent

COMMENTS = "dataset_comments"
LABELS = "dataset_comment_labels"
HISTORY = (COMMENTS, LABELS)
REVIEWED, PREDICTED = "reviewed", "predicted"
LEVELS = " > "
_EXPORT_PATH = re.compile(r"/datasets/(?P<project>[^/]+)/(?P<dataset>[^/]+)/export$")
# Where the extractor leaves an export page's `continuation` on its response for ExportContinuation.
_CONTINUATION = "commsmining_continuation"


def _text(value: Any) -> Optional[str]:
    return value if value.__class__ is str else None


def label_name(name: Any) -> Optional[str]:
    """A label's name as one string: the API sends a string (`Billing > Refund`) or the list of its levels."""
    if name.__class__ is str:
        return name or None
    if name.__class__ is list and name and all(level.__class__ is str and level for level in name):
        return LEVELS.join(name)
    return None


def _labels(container: Any, *path: str) -> List[Any]:
    for key in path:
        container = container.get(key) if container.__class__ is dict else None
    return container if container.__class__ is list else []


def _sent(response: requests.Response) -> Mapping[str, Any]:
    """The body of the export request that `response` answers (its window, `limit`, `continuation`)."""
    try:
        sent = orjson.loads(response.request.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return sent if sent.__class__ is dict else {}


def _page_size(response: requests.Response) -> int:
    """The comments an export page may hold: the request's `limit`."""
    limit = _sent(response).get("limit")
    return limit if limit.__class__ is int and limit > 0 else 1


def _bad(names: Mapping[str, str], request_body: Mapping[str, Any], what: str) -> BadResponse:
    return BadResponse(
        message=(
            f"The Communications Mining API's export of dataset {names['project']}/{names['dataset']} (stream "
            f"{COMMENTS}, continuation {request_body.get('continuation') or 'none: the first page'}, window "
            f"{request_body.get('from')} to {request_body.get('to')}) sent {what}. Sync again; if it persists, "
            "report it to UiPath support."
        ),
        failure_type=FailureType.system_error,
    )


def build_record(item: Mapping[str, Any], names: Mapping[str, str]) -> Dict[str, Any]:
    """A `dataset_comments` record: the exported comment whole, plus its key and promoted columns."""
    comment = item["comment"]
    assigned = _labels(item.get("annotations"), "labels", "assigned")
    predicted = _labels(item.get("predictions"), "labels")
    return {
        "project": names["project"],
        "dataset": names["dataset"],
        "uid": comment["uid"],
        "comment_id": _text(comment.get("id")),
        "source_id": _text(comment.get("source_id")),
        "thread_id": _text(comment.get("thread_id")),
        "created_at": comment["created_at"],
        "timestamp": _text(comment.get("timestamp")),
        "last_modified": _text(comment.get("last_modified")),
        "has_reviewed_labels": bool(assigned),
        "reviewed_label_count": len(assigned),
        "predicted_label_count": len(predicted),
        "comment": comment,
        "annotations": item.get("annotations"),
        "predictions": item.get("predictions"),
        "thread_properties": item.get("thread_properties"),
    }


@dataclass
class DatasetCommentsExtractor(RecordExtractor):
    """`dataset_comments` records of one export page, keeping those uploaded in the request's [from, to)."""

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        waiting = backlog.current()  # a read's records wait for the output here, not in the CDK's queue (backlog.py)
        if waiting is None:
            yield from self._records(response)
            return
        # The page's places are taken before it is parsed: what the backlog bounds is comments in memory.
        places = _page_size(response)
        waiting.enter(places)
        try:
            for record in self._records(response):
                if places:
                    places -= 1
                else:
                    waiting.enter()  # more comments than the request's `limit`
                yield record
        finally:
            waiting.leave(places)

    def _records(self, response: requests.Response) -> Iterator[Dict[str, Any]]:
        body = decode(response, required=("comments",))
        request = response.request
        match = _EXPORT_PATH.search(urlsplit(request.url).path)
        if match is None:
            raise ValueError(f"not a dataset export URL: {urlsplit(request.url).path}")
        names = {key: unquote(value) for key, value in match.groupdict().items()}
        sent = _sent(response)
        low, high = iso_instant(sent.get("from")), iso_instant(sent.get("to"))
        comments = body["comments"]
        if comments.__class__ is not list:
            raise _bad(names, sent, f"`comments` as {type(comments).__name__}, not a list")
        setattr(response, _CONTINUATION, body.get("continuation"))
        for index in range(len(comments)):
            # The page lets go of each comment as its record leaves, so a record written is memory freed.
            item, comments[index] = comments[index], None
            comment = item.get("comment") if item.__class__ is dict else None
            uid = comment.get("uid") if comment.__class__ is dict else None
            created = iso_instant(comment.get("created_at")) if comment.__class__ is dict else None
            if uid.__class__ is not str or not uid or created is None:
                shown = f"comment {uid}" if uid.__class__ is str and uid else f"entry {index} of the page"
                raise _bad(names, sent, f"{shown} without a `uid` and an RFC 3339 `created_at` (a comment cannot be keyed "
                                        "or placed without them)")
            if (low is not None and created < low) or (high is not None and created >= high):
                continue  # another window's (an API whose `to` is inclusive sends the next window's first comment)
            yield build_record(item, names)


@dataclass
class ExportContinuation(PaginationStrategy):
    """The next export page: the `continuation` the extractor read from this page, without parsing it again.

    The CDK's CursorPagination parses the whole page again for that one string (2 MB of objects for
    256 comments), in every partition's thread at once. A page the extractor did not see (which the
    CDK's retriever never does: records first, then the next token) is parsed here, as it would be.
    """

    @property
    def initial_token(self) -> Optional[Any]:
        return None

    def next_page_token(self, response: requests.Response, last_page_size: int, last_record: Any,
                        last_page_token_value: Optional[Any] = None, page_size_override: Optional[int] = None) -> Optional[Any]:
        if not hasattr(response, _CONTINUATION):
            setattr(response, _CONTINUATION, decode(response).get("continuation"))
        return getattr(response, _CONTINUATION) or None

    def get_page_size(self) -> Optional[int]:
        return None


def label_rows(record: Mapping[str, Any]) -> Tuple[List[Dict[str, Any]], int]:
    """(the `dataset_comment_labels` rows of a `dataset_comments` record, labels left out for want of a name).

    Key [project, dataset, uid, kind, label, occurrence]: `occurrence` numbers the entries of one label
    of one kind in the API's order, so a label assigned twice (with other metadata or sentiment) is two
    rows, as is a label both assigned and predicted. Parent: the name without its last level.
    """
    key = {"project": record["project"], "dataset": record["dataset"], "uid": record["uid"]}
    created_at = record.get("created_at")
    rows: List[Dict[str, Any]] = []
    counts: Dict[Tuple[str, str], int] = {}
    skipped = 0
    for kind, labels in ((REVIEWED, _labels(record.get("annotations"), "labels", "assigned")),
                         (PREDICTED, _labels(record.get("predictions"), "labels"))):
        for label in labels:
            name = label_name(label.get("name")) if label.__class__ is dict else None
            if name is None:
                skipped += 1
                continue
            counts[(kind, name)] = occurrence = counts.get((kind, name), 0) + 1
            metadata = label.get("metadata") if kind == REVIEWED else None
            metadata = metadata if metadata.__class__ is dict else {}
            probability = label.get("probability") if kind == PREDICTED else None
            sentiment = label.get("sentiment")
            rows.append({
                **key,
                "kind": kind,
                "label": name,
                "occurrence": occurrence,
                "parent": label_parent(name),
                "probability": probability if probability.__class__ in (int, float) else None,
                # A reviewed label's sentiment is `positive`/`negative`; a predicted one's is a score.
                "sentiment": sentiment if kind == REVIEWED and sentiment.__class__ is str else None,
                "sentiment_score": sentiment if kind == PREDICTED and sentiment.__class__ in (int, float) else None,
                "reviewed_by": _text(metadata.get("user_id")),
                "reviewed_at": _text(metadata.get("timestamp")),
                "created_at": created_at,
            })
    return rows, skipped


@dataclass
class DatasetCommentLabelsExtractor(DatasetCommentsExtractor):
    """`dataset_comment_labels` rows of one export page (what the stream reads when read on its own)."""

    def extract_records(self, response: requests.Response) -> Iterable[MutableMapping[Any, Any]]:
        for record in self._records(response):
            yield from label_rows(record)[0]
