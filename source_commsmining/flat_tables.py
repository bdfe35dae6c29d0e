"""The flat tables: one row per predicted label occurrence, one per extracted or general field.

`stream_results` keeps each comment's prediction whole (and promoted columns); questions such as
"how many comments per label per day" or "which amounts were extracted" then need UNNEST or
LATERAL FLATTEN over nested arrays. These child tables answer them with plain GROUP BY and JOIN.
They are built here from the raw `prediction` and `comment` of a `stream_results` record (as the
API sent them) plus its key columns, never from its promoted columns, and only when selected.

Primary keys (every column in them is never null, so a destination's dedup never compares nulls):

- `stream_result_labels`: [project, dataset, stream, uid, taxonomy, label, occurrence].
  `occurrence` numbers the occurrences of one label within one taxonomy of one comment's
  prediction (1, 2, ... in the API's order): a label predicted twice (two refunds, each with its
  own amount) is two rows, and the same label name in two taxonomies is two rows.
- `stream_result_fields`: [project, dataset, stream, uid, taxonomy, label_key, occurrence, field,
  field_occurrence]. An extracted field belongs to one label occurrence (`label_key` = the label,
  `occurrence` its number); a general field to no label (`label_key` "", `occurrence` 0; `label`
  itself is null). `field_occurrence` numbers the fields of one name within that owner, so the
  same field name twice in one occurrence is two rows.

Numbering in the API's order means a re-delivery of the same prediction gives the same keys. A
re-delivery with a different prediction (a new model version) replaces the rows whose keys it
has again; rows of occurrences it no longer has stay (as in any child table keyed this way).

A label, field or taxonomy of a shape the API does not use (not an object, a name that is not a
non-empty string) has no key: it is left out of these tables, counted in `skipped`, and the
reader warns once per batch. It stays in `stream_results.prediction`, which is always whole.
"""

from typing import Any, Dict, List, Mapping, Optional, Tuple

from source_commsmining.taxonomies import GENERAL_FIELD, ODD, TAXONOMY, label_parent, meets_stream_threshold, stream_thresholds, walk

RESULTS = "stream_results"
LABELS = "stream_result_labels"
FIELDS = "stream_result_fields"
# Every table the results reader writes, in the order a batch is emitted.
TABLES = (RESULTS, LABELS, FIELDS)
FLAT_TABLES = (LABELS, FIELDS)
_NUMBER = (int, float)
_KEY = ("project", "dataset", "stream", "uid")


def _number(value: Any) -> Optional[float]:
    return value if value.__class__ in _NUMBER else None


def _confidence(value: Any) -> Optional[float]:
    """A `{value, thresholds}` object's value, or a plain number (a general field's); else null."""
    if value.__class__ is dict:
        return _number(value.get("value"))
    return _number(value)


def _formatted(value: Any) -> Optional[str]:
    """`value.formatted` (the API's shape) or a plain string; null for null or anything else."""
    if value.__class__ is dict:
        value = value.get("formatted")
    return value if value.__class__ is str else None


def _name(item: Any) -> Optional[str]:
    name = item.get("name") if item.__class__ is dict else None
    return name if name.__class__ is str and name else None


def _list(container: Mapping[str, Any], key: str) -> Tuple[List[Any], bool]:
    """(the list under `key`, whether it had a shape the API does not use); a missing or null list is empty."""
    items = container.get(key)
    if items is None:
        return [], False
    if items.__class__ is not list:
        return [], True
    return items, False


def _numbered(counts: Dict[Tuple[Any, ...], int], key: Tuple[Any, ...]) -> int:
    counts[key] = counts.get(key, 0) + 1
    return counts[key]


def flat_rows(record: Mapping[str, Any], tables: Tuple[str, ...] = FLAT_TABLES) -> Tuple[Dict[str, List[Dict[str, Any]]], int]:
    """({table: rows} for the flat `tables` asked for, the number of prediction items left out (no key)).

    `record` is a `stream_results` record: its key columns and its raw `comment` and `prediction`.
    """
    want_labels, want_fields = LABELS in tables, FIELDS in tables
    labels: List[Dict[str, Any]] = []
    fields: List[Dict[str, Any]] = []
    out: Dict[str, List[Dict[str, Any]]] = {}
    if want_labels:
        out[LABELS] = labels
    if want_fields:
        out[FIELDS] = fields
    prediction = record.get("prediction")
    if prediction is None or not (want_labels or want_fields):
        return out, 0
    if prediction.__class__ is not dict:
        return out, 1
    key = {column: record.get(column) for column in _KEY}
    comment = record.get("comment")
    created_at = comment.get("created_at") if comment.__class__ is dict else None
    created_at = created_at if created_at.__class__ is str else None
    skipped = 0
    label_counts: Dict[Tuple[Any, ...], int] = {}
    field_counts: Dict[Tuple[Any, ...], int] = {}

    def add_field(taxonomy_name: str, field: Any, kind: str, label: Optional[str], occurrence: int, extraction: Any) -> int:
        """Appends one `stream_result_fields` row; 1 if the field has no name (it cannot be keyed), else 0."""
        field_name = _name(field)
        if field_name is None:
            return 1
        label_key = label or ""
        fields.append(
            {
                **key,
                "taxonomy": taxonomy_name,
                "kind": kind,
                "label": label,
                "label_key": label_key,
                "occurrence": occurrence,
                "field": field_name,
                "field_occurrence": _numbered(field_counts, (taxonomy_name, label_key, occurrence, field_name)),
                "value": _formatted(field.get("value")),
                "confidence": _confidence(field.get("confidence")),
                "extraction_confidence": extraction,
                "created_at": created_at,
            }
        )
        return 0

    keyed = False  # whether the taxonomy being walked has a key (a name)
    for kind, taxonomy_name, item in walk(prediction.get("taxonomies")):
        if kind is TAXONOMY:
            keyed = taxonomy_name.__class__ is str and taxonomy_name != ""
            skipped += not keyed  # a taxonomy without a name is left out with everything in it
            continue
        if not keyed or (kind is GENERAL_FIELD and not want_fields):
            continue
        if item is ODD:
            skipped += 1
            continue
        if kind is GENERAL_FIELD:
            skipped += add_field(taxonomy_name, item, "general", None, 0, None)
            continue
        name = _name(item)
        if name is None:
            skipped += 1
            continue
        occurrence = _numbered(label_counts, (taxonomy_name, name))
        if want_labels:
            confidence = item.get("occurrence_confidence")
            labels.append(
                {
                    **key,
                    "taxonomy": taxonomy_name,
                    "label": name,
                    "occurrence": occurrence,
                    "parent": label_parent(name),
                    "confidence": _confidence(confidence),
                    "extraction_confidence": _confidence(item.get("extraction_confidence")),
                    "meets_stream_threshold": meets_stream_threshold(confidence),
                    "thresholds": stream_thresholds(confidence),
                    "created_at": created_at,
                }
            )
        if want_fields:
            extracted, odd = _list(item, "fields")
            skipped += odd
            extraction_confidence = _confidence(item.get("extraction_confidence"))
            for field in extracted:
                skipped += add_field(taxonomy_name, field, "extraction", name, occurrence, extraction_confidence)
    return out, skipped


def batch_rows(records: List[Mapping[str, Any]], tables: Tuple[str, ...]) -> Tuple[Dict[str, List[Dict[str, Any]]], List[Tuple[Any, int]]]:
    """The flat rows of a batch's records for the selected flat `tables`, and (uid, items left out) per comment."""
    rows: Dict[str, List[Dict[str, Any]]] = {table: [] for table in tables}
    skipped: List[Tuple[Any, int]] = []
    if not tables:
        return rows, skipped
    for record in records:
        built, left_out = flat_rows(record, tables)
        for table, table_rows in built.items():
            rows[table].extend(table_rows)
        if left_out:
            skipped.append((record.get("uid"), left_out))
    return rows, skipped
