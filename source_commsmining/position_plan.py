"""Where a Communications Mining stream is read from at the start of a sync: the one decision, without I/O.

`decide` is a pure coroutine: given the selected tables' committed cursors for one CM stream, the
settings and the time, it yields the calls it needs (`GetDefinition`, `Peek`, `Uploads`,
`Advance`, `Reset`) and is sent the server's answers; it yields `Log` lines to pass on, and it
returns an `Outcome` or raises a config_error saying what it refuses. stream_position.py makes the
calls (and checks that the sync is live before each advance and reset); check.py runs it without
ever advancing or resetting; unit_tests/test_position_plan_properties.py runs it against a model.

THE INVARIANT, decided here and nowhere else:

1. A stream is never read from a position past the oldest committed cursor of any selected table.
   Tables that have a cursor decide; a selected table without one (newly added) gets rows from
   there on. Cursors of one line of reading (one `epoch`) are ordered by `batches` and the oldest
   is resumed from. Cursors of different epochs cannot be ordered, so the stream is reset to the
   oldest of their watermarks (each cursor's position is at or after its watermark's comment).
   Only `skip_uncommitted_on_refused_resume`, a choice made by name, goes on past them.
2. A reset never moves a stream forward past comments it holds: before any reset the head is
   peeked (a GET, nothing consumed) and a reset to a time after the next pending comment's
   `created_at` (or in the future) is not made.
3. A stream no selected table has a cursor for is reset to its creation only when nothing shows
   that anyone read it since (`from_creation_if_unread`, the default); otherwise, and whenever
   that cannot be told, it is refused unless the config names a choice: `current`, or
   `take_over_from_creation` / `take_over_from_date`, which replay those comments to every reader.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Generator, Mapping, Optional, Union

from airbyte_cdk.models import FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import roles
from source_commsmining.api import Refusal
from source_commsmining.errors import mask
from source_commsmining.reading_events import Log
from source_commsmining.timestamps import instant

# start_position values. The default is a value of its own, so a saved default never reads as consent to take over.
IF_UNREAD = "from_creation_if_unread"
CURRENT = "current"
TAKE_OVER_FROM_CREATION = "take_over_from_creation"
TAKE_OVER_FROM_DATE = "take_over_from_date"
START_POSITIONS = (IF_UNREAD, CURRENT, TAKE_OVER_FROM_CREATION, TAKE_OVER_FROM_DATE)
# How far in the future a time may be (clock skew between the API and this host) before it is not believed.
SKEW = timedelta(minutes=5)



def reset_needs(key: str) -> str:
    """What a reset needs (UiPath's reset page: what consuming needs; "Modify streams" only changes a definition)."""
    return roles.needs(roles.CONSUME_STREAMS, roles.VIEW_LABELS, project=key.split("/")[0])


# ---------------------------------------------------------------- what the decision asks, and is answered
@dataclass(frozen=True)
class GetDefinition:
    """The stream definition (answer: its mapping; `created_at` is read)."""


@dataclass(frozen=True)
class Peek:
    """`GET /results` for one comment: consumes nothing (answer: Head)."""


@dataclass(frozen=True)
class Uploads:
    """The dataset's comments uploaded at or after `since` and not after `until` (None: no bound), from the
    dataset export ordered by created_at (answer: Uploaded; not `complete` past a cap)."""

    since: str
    until: Optional[str]


@dataclass(frozen=True)
class Advance:
    continuation: str
    why: str

    # answer: None when accepted, the API's refusal (a 400, described) otherwise


@dataclass(frozen=True)
class Reset:
    to: str
    why: str

    # answer: None when done, a Refusal (403 or 400) otherwise


Call = Union[GetDefinition, Peek, Uploads, Advance, Reset]


@dataclass(frozen=True)
class Head:
    """The stream's next pending comment as a peek shows it. Neither uid nor created_at: nothing pending;
    `hidden`: an empty batch that skipped filtered comments, so where the stream stands is not shown."""

    uid: Optional[str] = None
    created_at: Optional[str] = None
    hidden: bool = False

    @property
    def pending(self) -> bool:
        return self.uid is not None or self.created_at is not None


@dataclass(frozen=True)
class Settings:
    start_position: str = IF_UNREAD
    start_date: Optional[str] = None
    rewind: bool = True
    skip_uncommitted: bool = False


@dataclass(frozen=True)
class Outcome:
    """Where reading starts. `confirmed`: the server is known to stand exactly at `base`'s continuation (or at
    the start reset) so the sync's last STATE may confirm it. `base`: the cursor the sync's batches count on
    from (None: a new line of reading, a new epoch)."""

    confirmed: bool
    base: Optional[Dict[str, Any]]


Step = Union[Call, Log]
Plan = Generator[Step, Any, Outcome]


class StreamInUse(AirbyteTracedException):
    """The refusal to take over a stream that was (or may have been) read since its creation."""


class UnusableStart(AirbyteTracedException):
    """The refusal of a start time that is not a past time (a stream definition's created_at, start_date_for_streams)."""


def _config_error(message: str, cls=AirbyteTracedException) -> AirbyteTracedException:
    message = mask(message)
    return cls(message=message, internal_message=message, failure_type=FailureType.config_error)


# ---------------------------------------------------------------- the decision
def decide(key: str, cursors: Mapping[str, Optional[Mapping[str, Any]]], settings: Settings, now: datetime) -> Plan:
    """The plan for CM stream `key` given each selected table's committed cursor (None: none). See the module docstring."""
    committed = {table: dict(cursor) for table, cursor in cursors.items() if cursor}
    if not committed:
        return (yield from _start(key, settings, now))
    missing = sorted(table for table, cursor in cursors.items() if not cursor)
    if missing:
        yield Log(
            f"stream_results {key}: {', '.join(missing)} has no state yet (newly selected); the stream resumes from "
            f"the committed state of {', '.join(sorted(committed))}, never past the oldest, so {', '.join(missing)} "
            "gets rows from there on. To fill it from the stream's start, clear the state of every results table.",
            Level.WARN,
        )
    if len({cursor.get("epoch") for cursor in committed.values()}) > 1:
        return (yield from _rejoin(key, committed, settings, now))
    oldest = min(committed.values(), key=age)
    confirmed = all(
        c.get("position_confirmed") is True and c.get("continuation") == oldest.get("continuation")
        for c in committed.values()
    )
    if not confirmed:
        oldest.pop("position_confirmed", None)
    return (yield from _resume(key, oldest, confirmed, settings, now))


def age(cursor: Mapping[str, Any]) -> int:
    """A cursor's `batches`; -1 for one written before `batches` existed (its age is unknown: the oldest)."""
    batches = cursor.get("batches")
    return batches if batches.__class__ is int and batches >= 0 else -1


def forward_past(target: Optional[str], head: Head, now: datetime) -> Optional[str]:
    """Why a reset to `target` could move the stream forward past comments it holds; None if it cannot.

    A reset goes to the first comment created at or after `target`; the peeked head is where the stream
    stands. Only `created_at` is compared (`last_modified` may be far later than the comment's place in the
    queue). A re-upload at the head keeps its old `created_at` and can make a safe reset look unsafe: that
    costs a refusal, never a comment.
    """
    when = instant(target)
    if when is None:
        return f"{target!r} is not a time."
    if when > now + SKEW:
        return f"{target} is in the future."
    if head.hidden:
        return "the stream's next comments are filtered out, so where it stands cannot be compared with that time."
    if not head.pending:
        return None
    at = instant(head.created_at)
    if at is not None and when <= at:
        return None
    return (
        f"{target} is after the stream's next pending comment (uploaded {head.created_at!r}): a reset there would "
        "move the stream forward past comments not delivered."
    )


def _resume(key: str, cursor: Dict[str, Any], confirmed: bool, settings: Settings, now: datetime) -> Plan:
    """Puts the stream at the cursor's continuation C, never forward past a comment not delivered.

    `Advance(C)` first: a no-op on a stream at C. A confirmed cursor says the sync that wrote it left the
    stream exactly there: done, no reset (UiPath advises against routine resets; they make other readers
    re-read). Otherwise the server may be ahead and advancing to an older token is undocumented (moved
    back, refused with 400, or ignored): with `rewind_on_resume` the stream is reset to the cursor's
    watermark W (if safe) and advanced to C again, which puts it at C in all three readings. A refused C
    is never "continued from the watermark": a forged watermark would skip comments.
    """
    continuation, watermark = cursor["continuation"], cursor.get("created_at")
    refused = yield Advance(continuation, "the advance to the state's continuation")
    if refused is None and confirmed:
        yield Log(
            f"stream_results {key}: the state's position is confirmed (the sync that wrote it ended with the stream "
            "there): advanced to its continuation, no reset."
        )
        return Outcome(True, cursor)
    if refused is None and not (settings.rewind and watermark):
        why = "rewind_on_resume is off" if not settings.rewind else "the state has no created_at watermark yet"
        yield Log(
            f"stream_results {key}: the state was committed in the middle of a sync; {why}, so the stream is only "
            "advanced to its continuation (a server that ignores an older token stays ahead)."
        )
        return Outcome(False, cursor)
    how = "the API accepted the state's continuation" if refused is None else (
        f"the API refused to advance to the state's continuation ({refused})"
    )
    refusal, unsafe = None, None
    if settings.rewind and watermark:
        unsafe = forward_past(watermark, (yield Peek()), now)
        if unsafe is None:
            refusal = yield Reset(watermark, "the reset to the state's watermark")
            if refusal is None:
                again = yield Advance(continuation, "the advance to the state's continuation")
                if again is None:
                    yield Log(
                        f"stream_results {key}: the state was committed in the middle of a sync ({how}): reset the "
                        f"stream to the watermark {watermark}, then advanced to the continuation."
                    )
                    return Outcome(True, cursor)
                refused = refused or again
    if refused is None:
        # Accepted, but the reset could not back it up: right if the server honours an older token.
        reason = f"the watermark {unsafe}" if unsafe else _refused_reset(key, refusal)
        yield Log(
            f"stream_results {key}: the state was committed in the middle of a sync and the stream was advanced to "
            f"its continuation, but not reset to its watermark: {reason} If the server ignored the older "
            "continuation, the comments after the committed state are not delivered again.",
            Level.WARN,
        )
        return Outcome(False, cursor)
    if settings.skip_uncommitted:
        yield Log(
            f"stream_results {key}: {how}, and the stream cannot be put back where the destination committed. Going "
            "on from the stream's current position as skip_uncommitted_on_refused_resume asks: the comments after "
            "the destination's last commit are not delivered.",
            Level.WARN,
        )
        return Outcome(False, cursor)
    raise _refused_resume(key, watermark, refused, settings, refusal, unsafe)


def _rejoin(key: str, committed: Dict[str, Dict[str, Any]], settings: Settings, now: datetime) -> Plan:
    """Cursors of different epochs (one table committed after the stream was started anew, another only
    before): their `batches` cannot be ordered, so the stream is reset to the oldest of their watermarks,
    which is at or before every one of their positions. Without a watermark each, or without a safe reset,
    it is refused (or skipped past, if the config says so)."""
    tables = ", ".join(sorted(committed))
    why = (
        f"the committed states of {tables} come from different starts of the stream (one table's state was "
        "committed after the stream was started anew, another's only before), so which is older cannot be told "
        "from their positions"
    )
    watermarks = [(instant(c.get("created_at")), c.get("created_at")) for c in committed.values()]
    problem = None
    if any(at is None for at, _ in watermarks):
        problem = "and not every one of them has a created_at watermark to go back to"
    elif not settings.rewind:
        problem = "and rewind_on_resume is off, so the stream is not reset to the older watermark"
    else:
        oldest = min(watermarks)[1]
        problem = forward_past(oldest, (yield Peek()), now)
        if problem is None:
            refusal = yield Reset(oldest, "the reset to the oldest committed watermark")
            if refusal is None:
                yield Log(
                    f"stream_results {key}: {why}: reset the stream to the oldest of their watermarks, {oldest}, and "
                    "reading from there (rows that come again are removed by dedup on each table's primary key).",
                    Level.WARN,
                )
                return Outcome(False, None)
            problem = _refused_reset(key, refusal)
        problem = f"and the reset to the oldest of their watermarks is not made: {problem}"
    if settings.skip_uncommitted:
        yield Log(
            f"stream_results {key}: {why}, {problem}. Going on from the stream's current position as "
            "skip_uncommitted_on_refused_resume asks: comments after the older committed state may not be delivered.",
            Level.WARN,
        )
        return Outcome(False, None)
    raise _config_error(
        f"stream_results {key}: {why}, {problem}. Nothing was read from this stream and it was not moved. Reset the "
        "stream in Communications Mining by hand to before the comments the destination lacks and clear the state "
        "of every results table (start_position then applies), or set skip_uncommitted_on_refused_resume to true "
        "to go on from where the stream stands."
    )


def _start(key: str, settings: Settings, now: datetime) -> Plan:
    """No selected table has a cursor (a first sync, a stream newly configured, cleared data).

    The stream is reset to a fixed time before it is read, so a failed first sync run again starts from
    the same place: its creation when nothing shows it was read since (the default), or the time the
    config names to take it over. `current` reads from where it stands.
    """
    mode = settings.start_position
    if mode not in START_POSITIONS:  # config.validate_start_position refuses it first; never read as a take-over
        raise _config_error(f"`start_position` is {mode!r}: choose one of {', '.join(START_POSITIONS)}.")
    if mode == CURRENT:
        yield Log(
            f"stream_results {key}: no table has state for this stream; reading from where it stands (start_position "
            "current). If this sync fails before the destination commits its state, the comments it consumed are "
            "not read again.",
            Level.WARN,
        )
        return Outcome(False, None)
    created, definition = None, {}
    if mode != TAKE_OVER_FROM_DATE:
        definition = yield GetDefinition()
        created = definition.get("created_at")
        problem = _not_a_past_time(created, now)
        if problem:
            raise _config_error(
                f"stream_results {key}: the stream definition's created_at is {created!r}, {problem}, so it is not "
                f"used as the stream's start (start_position {mode}). Nothing was read and the stream was not moved. "
                "Set start_position to current (read from where the stream stands) or to take_over_from_date with "
                "start_date_for_streams.",
                UnusableStart,
            )
    target = settings.start_date if mode == TAKE_OVER_FROM_DATE else created
    problem = _not_a_past_time(target, now)
    if problem:  # config.validate_start_position refuses it before; kept here so the decision holds alone
        raise _config_error(f"`start_date_for_streams` is {target!r}, {problem}: give a past time.", UnusableStart)
    head = yield Peek()
    if mode == IF_UNREAD:
        taken = yield from _read_since_creation(created, head, definition)
        if taken:
            raise _config_error(_in_use(key, created, head, taken), StreamInUse)
    unsafe = forward_past(target, head, now)
    if unsafe:
        raise _config_error(
            f"stream_results {key}: no table has state for this stream, and start_position {mode} would reset it to "
            f"{target}, but {unsafe} Nothing was read and the stream was not moved. Set start_position to current to "
            f"read from where it stands, or take_over_from_date with start_date_for_streams at or before "
            f"{head.created_at or 'its next pending comment'}."
        )
    where = f"its creation time {target}" if mode != TAKE_OVER_FROM_DATE else f"start_date_for_streams {target}"
    refusal = yield Reset(target, f"the start reset to {where}")
    if refusal is not None:
        fix = (
            f"Give the token {reset_needs(key)}: a reset needs what reading needs"
            if refusal.status == 403
            else "Set start_date_for_streams to a time the API accepts (with start_position take_over_from_date)"
        )
        raise _config_error(
            f"stream_results {key}: the start reset (to {where}, start_position {mode}) was refused by the API "
            f"({refusal.status}: {refusal.reason}). Nothing was read from this stream. {fix}, or set start_position "
            "to current to read from where the stream stands (a first sync that fails then loses the comments it "
            "consumed)."
        )
    verb = "taken over" if mode != IF_UNREAD else "not read since its creation"
    yield Log(f"stream_results {key}: no table has state for this stream ({verb}): reset it to {where}, then reading.")
    return Outcome(True, None)


def _not_a_past_time(value: Any, now: datetime) -> Optional[str]:
    at = instant(value)
    if at is None:
        return "not a time"
    if at > now + SKEW:
        return "in the future"
    return None


def _read_since_creation(created: str, head: Head, definition: Mapping[str, Any]) -> Generator[Step, Any, Optional[str]]:
    """Why the stream may have been read since its creation; None only when nothing shows it was.

    Unread means no comment the stream would serve was uploaded between its creation and its next pending
    comment: the dataset export (ordered by created_at) lists what was uploaded, and each such comment must
    be shown hidden by the stream's `comment_filter` (`hides`). Anything else, or an answer that cannot be
    had, counts as read: such a comment was consumed, or hidden by something this cannot evaluate (a filter
    on other fields, label thresholds), which the API does not let a client tell apart.
    """
    if head.hidden:
        return "its next comments are filtered out, so where it stands is not shown"
    at, start = instant(head.created_at), instant(created)
    if head.pending and at is None:
        return f"its next pending comment's created_at {head.created_at!r} is not a time"
    if at is not None and at < start:
        return "it stands before its creation time (it was reset by hand, or by another reader)"
    uploaded = yield Uploads(created, head.created_at if head.pending else None)
    if uploaded.unavailable:
        return f"the dataset export, which tells what was uploaded before its next comment, could not be read ({uploaded.unavailable})"
    if not uploaded.complete:
        return "more comments were uploaded between its creation and its next pending comment than are looked at"
    if head.pending and not any(c.get("uid") == head.uid for c in uploaded.comments):
        return "the dataset export does not list its next pending comment"
    before = [c for c in uploaded.comments if c.get("uid") != head.uid]
    served = [c for c in before if hides(definition.get("comment_filter"), c) is not True]
    if not served:
        return None
    first = served[0].get("created_at")
    if not head.pending:
        return f"nothing is pending, yet comments it would serve were uploaded since its creation (the first at {first})"
    return f"comments it would serve were uploaded between its creation and its next pending comment (the first at {first})"


def hides(comment_filter: Any, comment: Mapping[str, Any]) -> Optional[bool]:
    """Whether a stream's `comment_filter` keeps `comment` out of the stream: True, False, or None when it cannot
    be told here (a filter on other fields than `sources` and `user_properties`, a property the comment lacks, a
    condition of another kind). Only a sure True lets a comment count as never served."""
    if not comment_filter:
        return False
    if not isinstance(comment_filter, Mapping):
        return None
    known = {"sources", "user_properties"}
    if any(value not in (None, [], {}) for key, value in comment_filter.items() if key not in known):
        return None
    sources = comment_filter.get("sources")
    if sources and comment.get("source_id") not in sources:
        return True
    properties = comment.get("user_properties") if isinstance(comment.get("user_properties"), Mapping) else {}
    unknown = False
    for name, condition in (comment_filter.get("user_properties") or {}).items():
        value = properties.get(name)
        if value is None or not isinstance(condition, Mapping) or set(condition) - {"one_of", "not_one_of", "minimum", "maximum"}:
            unknown = True
            continue
        try:
            kept = (
                ("one_of" not in condition or value in condition["one_of"])
                and ("not_one_of" not in condition or value not in condition["not_one_of"])
                and ("minimum" not in condition or value >= condition["minimum"])
                and ("maximum" not in condition or value <= condition["maximum"])
            )
        except TypeError:
            unknown = True
            continue
        if not kept:
            return True
    return None if unknown else False


def _in_use(key: str, created: str, head: Head, why: str) -> str:
    stands = (
        f"its next pending comment was uploaded at {head.created_at}" if head.pending
        else "nothing is pending" if not head.hidden else "its position is hidden by its filter"
    )
    return (
        f"stream_results {key}: no table has state for this stream and it may have been read since it was created "
        f"({created}): {why}. Where it stands now: {stands}. A stream has one position for all its readers, so it is "
        "not moved: nothing was read. The reader may be another integration (a robot, another connection), this "
        "connection's own first sync that failed before the destination committed, or comments hidden by the "
        "stream's filter. Choose in start_position: `current` (start where it stands, nothing replayed), "
        "`take_over_from_creation` (reset it to its creation: replays those comments to every reader of the "
        "stream), or `take_over_from_date` with start_date_for_streams (the same from that time). Best: give this "
        "connection a stream of its own."
    )


def _refused_reset(key: str, refusal: Optional[Refusal]) -> str:
    if refusal is None:
        return ""
    if refusal.status != 403:
        return f"the API refused the reset ({refusal.status}: {refusal.reason})."
    return (
        f"the API refused the reset (403: {refusal.reason}). A reset needs what reading the stream needs, "
        f"{reset_needs(key)}; if the token has them, the API refused for the reason it gives."
    )


def _refused_resume(
    key: str, watermark: Optional[str], refused: str, settings: Settings, refusal: Optional[Refusal], unsafe: Optional[str]
) -> AirbyteTracedException:
    """The config_error of a stream whose state's continuation the API refuses, with the ways out that apply."""
    by_hand = "reset the stream in Communications Mining by hand to a time before the comments the destination lacks"
    if not watermark:
        why, recover = "the state has no created_at watermark to reset to (no comment of this stream was delivered yet)", by_hand
    elif not settings.rewind:
        why = "rewind_on_resume is off"
        recover = (
            f"turn rewind_on_resume on (a reset needs what reading the stream needs, {reset_needs(key)}), or "
            f"reset the stream in Communications Mining by hand to {watermark}"
        )
    elif unsafe:
        why, recover = f"it is not reset to the state's watermark because {unsafe}", by_hand
    elif refusal:
        why = f"the API refused to reset it ({refusal.status}: {refusal.reason}) to the state's watermark"
        recover = (
            f"give the token {reset_needs(key)} (a reset needs what reading needs) or, if it has them, resolve "
            f"what the API's refusal says; or reset the stream in Communications Mining by hand to {watermark}"
        )
    else:
        why, recover = f"even after a reset to the state's watermark {watermark} the API refused the continuation", by_hand
    return _config_error(
        f"stream_results {key}: the API refused to advance to the state's continuation ({refused}): the stream is not "
        "where the destination committed (it is ahead, or the continuation is not one the API knows), and "
        f"{why}. Nothing was read from this stream and it was not moved forward, so nothing is skipped. To deliver "
        f"the comments after the committed state: {recover}, then sync again; or clear the state of the results "
        "tables, so start_position applies. Each configured stream must be dedicated to this connection: check that "
        "no other consumer reads it. To skip those comments instead: set skip_uncommitted_on_refused_resume to true."
    )
