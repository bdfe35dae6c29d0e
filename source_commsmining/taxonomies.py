"""One walk over a prediction's taxonomies, and the two rules read off a predicted label.

`stream_results` (records.py) and the flat tables (flat_tables.py) both read every label and
general field of a prediction; they differ only in what they do with an item of an odd shape
(a record leaves the whole column group empty, a flat table leaves the one item out), so the walk
reports odd shapes where it meets them and leaves the decision to its caller.
"""

from typing import Any, Iterator, List, Optional, Tuple

TAXONOMY = "taxonomy"
LABEL = "labels"
GENERAL_FIELD = "general_fields"
# A taxonomy's lists, in the order they are walked.
_ITEM_KINDS = (LABEL, GENERAL_FIELD)
STREAM_THRESHOLD = "stream"


class _OddShape:
    def __repr__(self) -> str:
        return "ODD"


# Where the walk met a value of a shape the API does not use (and did not walk into it).
ODD = _OddShape()


def walk(taxonomies: Any) -> Iterator[Tuple[str, Any, Any]]:
    """(kind, taxonomy name, item) for each taxonomy of a prediction and each of its items, in the API's order.

    Per taxonomy: (TAXONOMY, its name, the taxonomy object), then (LABEL, its name, label) for each
    predicted label occurrence, then (GENERAL_FIELD, its name, field) for each general field. The
    name is the API's value, of whatever type. A value of a shape the API does not use is reported
    as ODD in place of the item and not walked into: taxonomies that are not a list or a taxonomy
    that is not an object (TAXONOMY, None, ODD); a taxonomy's labels or general fields that are
    not a list (LABEL or GENERAL_FIELD, name, ODD). Items themselves are not checked: each table
    has its own rule for them. A missing or null list is empty.
    """
    if taxonomies is None:
        return
    if taxonomies.__class__ is not list:
        yield TAXONOMY, None, ODD
        return
    for taxonomy in taxonomies:
        if taxonomy.__class__ is not dict:
            yield TAXONOMY, None, ODD
            continue
        name = taxonomy.get("name")
        yield TAXONOMY, name, taxonomy
        for kind in _ITEM_KINDS:
            items = taxonomy.get(kind)
            if items is None:
                continue
            if items.__class__ is not list:
                yield kind, name, ODD
                continue
            for item in items:
                yield kind, name, item


def label_parent(name: str) -> Optional[str]:
    """A label's parent: `A > B`'s is `A`, `A > B > C`'s `A > B`; a top-level label has none (null)."""
    return name.rpartition(" > ")[0] or None


def _thresholds(occurrence_confidence: Any) -> Any:
    return occurrence_confidence.get("thresholds") if occurrence_confidence.__class__ is dict else None


def meets_stream_threshold(occurrence_confidence: Any) -> bool:
    """Whether a label occurrence passes its stream's threshold: its confidence's `thresholds` list names `stream`."""
    thresholds = _thresholds(occurrence_confidence)
    return thresholds.__class__ is list and STREAM_THRESHOLD in thresholds


def stream_thresholds(occurrence_confidence: Any) -> Optional[List[str]]:
    """The thresholds an occurrence's confidence meets (`stream`, `high_recall`, ...), names only; None without a list."""
    thresholds = _thresholds(occurrence_confidence)
    return [t for t in thresholds if t.__class__ is str] if thresholds.__class__ is list else None
