"""Writes each record's comment and prediction as JSON once, before the batch is delivered.

A record must be one the CDK can write out: orjson (the CDK's serializer) stops at 255 levels and
its fallback near 1,000, so a comment nested deeper than MAX_RESULT_DEPTH would fail the sync
half-way through a batch with no word of which comment it was. Finding that out used to cost a
test serialisation of every batch, and the CDK then serialised the same comments again.

Here the comment and the prediction, most of a record's bytes, are serialised once into an
`orjson.Fragment`, which orjson embeds as it is when the CDK writes the record: the test is the
serialisation. A value orjson refuses (too deep, or an integer beyond 64 bits) is walked: deeper
than MAX_RESULT_DEPTH refuses the whole batch before anything of it is emitted; otherwise it stays
a plain value for the CDK's own fallback serializer. Everything else in a record (the promoted
columns) is copied from these two values or is a string, boolean or small integer, so orjson
writes it too. Kept for speed (benchmarks/README.md); unit_tests/test_cdk_contract.py pins that
the CDK writes a Fragment as it is.
"""

from typing import Any, Callable, Dict, Iterable, List

import orjson
from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse
from source_commsmining.errors import mask

# orjson parses up to 1024 levels; no real comment comes near this.
MAX_RESULT_DEPTH = 500
SERIALIZED_ONCE = ("comment", "prediction")


def serialize_once(records: List[Dict[str, Any]], where: Callable[[], str]) -> None:
    """Replaces each record's comment and prediction by their JSON (in place); refuses a batch too deep to write.

    `where` names the request and the stream's position, for the refusal (built only then)."""
    for position, record in enumerate(records):
        for key in SERIALIZED_ONCE:
            value = record.get(key)
            if value is None:
                continue
            try:
                record[key] = orjson.Fragment(orjson.dumps(value))
            except (orjson.JSONEncodeError, TypeError):
                # In a /results entry the comment and prediction sit one level below the result.
                if _depth(value) + 1 > MAX_RESULT_DEPTH:
                    raise _too_deep(record.get("uid"), position, where()) from None


def _too_deep(uid: Any, position: int, where: str) -> BadResponse:
    which = f"comment {uid!r} (result {position} of the batch)" if isinstance(uid, str) else f"result {position} of the batch"
    return BadResponse(
        message=mask(
            f"The Communications Mining API returned {which} nested more than {MAX_RESULT_DEPTH} levels deep "
            f"for {where}; it cannot be written out as a record. The stream was not advanced past it: "
            "ask UiPath support to look at this comment, then sync again."
        ),
        failure_type=FailureType.system_error,
    )


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (it may be 1024 levels deep)."""
    deepest = 0
    stack: list = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_RESULT_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest
