"""Refuses a batch holding a comment too deeply nested to be written out as a record.

A record must be one the CDK can write out: orjson (the CDK's serializer) stops at 255 levels and
its fallback near 1,000, so a comment nested deeper than MAX_RESULT_DEPTH would fail the sync
half-way through a batch with no word of which comment it was. So before anything of a batch is
delivered its comments and predictions are serialised once as a test (orjson, cheap); only a batch
orjson refuses (too deep, or an integer beyond 64 bits, which the CDK's fallback writes) is walked,
and one deeper than MAX_RESULT_DEPTH is refused. Then the CDK serialises the records as it does any
other: the comments are serialised twice, which costs about 29k instructions per record
(benchmarks/README.md: not worth a reliance on how the CDK writes record data).
"""

from typing import Any, Callable, Dict, Iterable, List

import orjson
from airbyte_cdk.models import FailureType

from source_commsmining.envelope import BadResponse
from source_commsmining.errors import mask

# orjson parses up to 1024 levels; no real comment comes near this.
MAX_RESULT_DEPTH = 500
# The values of a record that come from the API as they are (everything else is built from them).
CHECKED = ("comment", "prediction")


def check_depth(records: List[Dict[str, Any]], where: Callable[[], str]) -> None:
    """Refuses a batch with a comment or prediction too deep to write; the records are left as they are.

    `where` names the request and the stream's position, for the refusal (built only then)."""
    try:
        orjson.dumps([[record.get(key) for key in CHECKED] for record in records])
        return
    except (orjson.JSONEncodeError, TypeError):
        pass
    for position, record in enumerate(records):
        for key in CHECKED:
            # In a /results entry the comment and prediction sit one level below the result.
            if _depth(record.get(key)) + 1 > MAX_RESULT_DEPTH:
                raise _too_deep(record.get("uid"), position, where())


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
