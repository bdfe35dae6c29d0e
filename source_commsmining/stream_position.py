"""Where a stream starts reading at the start of a sync: the state's position, or its start position.

Reading is destructive, so this is where a comment could be lost before anything is read: a
stream must be put back where the destination last committed, never forward past a comment not
delivered. `Positioning.resume` does that for a stream the state has a cursor for,
`Positioning.start` puts a stream the state has no cursor for at the configured start position.
Both yield the log lines to print and return whether the server's position is now known to be
exactly the state's (or the start) position: only then may the sync's last STATE confirm it.
See README "Delivery guarantees" for why.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Generator, Optional

from airbyte_cdk.models import FailureType, Level
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import liveness, roles
from source_commsmining.api import CmApi, CmStream
from source_commsmining.envelope import BadResponse
from source_commsmining.errors import config_error, describe
from source_commsmining.reading_events import Log
from source_commsmining.timestamps import instant

# How far in the future a watermark may be (clock skew between the API and this host) before it is not believed.
_WATERMARK_SKEW = timedelta(minutes=5)


def _reset_permissions(cm: CmStream) -> str:
    """UiPath's reset page: a reset needs what consuming needs; "Modify streams" only changes a stream's definition."""
    return (
        f"A reset needs the 'Consume streams' and 'View labels' permissions on project '{cm.project}' {roles.RESET} "
        "(the same as reading the stream); if the token has them, the API refused the reset for the reason it gives."
    )


@dataclass(frozen=True)
class Positioning:
    """The connector's settings for putting a stream in place (rewind_on_resume, skip_uncommitted_on_refused_resume,
    start_position, start_date_for_streams)."""

    rewind: bool = True
    skip_uncommitted: bool = False
    start_position: str = "stream_created"
    start_date: Optional[str] = None

    def start(self, api: CmApi, cm: CmStream) -> Generator[Log, None, bool]:
        """A stream the state has no cursor for (a first sync, a stream newly configured, cleared data): put it at
        its start position before reading, so a failed first sync, re-run, starts from the same place.

        `stream_created` resets it to its definition's `created_at` (where a new stream starts), `date` to the
        configured date; `current` reads from wherever it is, and a failed first sync then loses what it consumed.
        """
        if self.start_position == "current":
            yield Log(
                f"stream_results {cm.key}: no state for this stream, reading from its current position (start_position "
                "current). If this sync fails before the destination commits its state, the comments it consumed "
                "are not read again.",
                Level.WARN,
            )
            return False
        if self.start_position == "date":
            to, where = self.start_date or "", f"the configured start_date_for_streams {self.start_date}"
        else:
            to = api.get_stream(cm).get("created_at")
            where = f"its creation time {to} (start_position stream_created)"
            if instant(to) is None:
                raise config_error(
                    f"stream_results {cm.key}: the stream definition's created_at is {to!r}, not a time, so the stream "
                    "cannot be reset to where it started. Set start_position to date (with start_date_for_streams) or "
                    "to current."
                )
        liveness.require_live(f"stream_results {cm.key}: the reset to the start position")
        refusal = api.reset(cm, to)
        if refusal:
            raise config_error(
                f"stream_results {cm.key}: the state has no position for this stream (first sync, a stream newly added, "
                f"or cleared data), so it is reset to {where} before reading, and the API refused the reset (403: "
                f"{refusal}). {_reset_permissions(cm)} Nothing was read from this stream. Give the token those "
                "permissions, or set start_position to current to read from the stream's current position instead "
                "(then a first sync that fails loses the comments it consumed)."
            )
        yield Log(f"stream_results {cm.key}: no state for this stream: reset it to {where}, then reading.")
        return True

    def resume(self, api: CmApi, cm: CmStream, cursor: Dict[str, Any]) -> Generator[Log, None, bool]:
        """Puts the server stream at the state's continuation C, never forward past a comment not delivered.

        First `advance(C)`: a no-op on a stream that is at C, in every reading of the API (it is the
        stream's own position). A state with `position_confirmed` says the sync that wrote it left the
        stream exactly at C, so that is all (no reset: UiPath advises against routine resets, and a
        reset makes any other consumer of the stream re-read). A state without it was committed in the
        middle of a sync: the server may be ahead. Advancing to an older token is undocumented: it may
        move the stream back, be refused (400), or be ignored. So, when `rewind_on_resume`, the stream
        is then reset to the state's `created_at` watermark W and advanced to C again, which puts it at
        C in all three readings.

        A reset to W must never move the stream forward past comments it has not delivered (a state
        edited by hand or a stream recreated can carry a W ahead of the stream): before it, `/results`
        is peeked at (a GET consumes nothing) and the reset is made only if W is not after the first
        pending comment (`_reset_is_safe`).

        A refused C (400) is found before any reset. It means the stream is not where the state says
        (ahead, or the token is not one the API knows). A reset to W (if safe) followed by C accepted
        recovers a server that refuses older tokens; anything else fails the stream with a config_error
        saying how to recover, unless the user chose to skip (`skip_uncommitted_on_refused_resume`).
        Never "go on from the watermark": that is how a forged watermark skipped comments (issue 18.6).
        """
        continuation = cursor["continuation"]
        watermark = cursor.get("created_at")
        liveness.require_live(f"stream_results {cm.key}: the advance to the state's continuation")
        refused = self._try_advance(api, cm, continuation)
        if refused is None and cursor.get("position_confirmed") is True:
            yield Log(
                f"stream_results {cm.key}: the state's position is confirmed (the sync that wrote it ended with the "
                "stream there): advanced to its continuation, no reset."
            )
            return True
        if refused is None and not (self.rewind and watermark):
            why = "rewind_on_resume is off" if not self.rewind else "the state has no created_at watermark yet"
            yield Log(
                f"stream_results {cm.key}: the state was committed in the middle of a sync; {why}, so the stream is only "
                "advanced to its continuation (a server that ignores an older token stays ahead)."
            )
            return False
        how = "the API accepted the state's continuation" if refused is None else (
            f"the API refused to advance to the state's continuation ({describe(refused)})"
        )
        reset_refusal, unsafe = None, None
        if self.rewind and watermark:
            unsafe = self._reset_is_unsafe(api, cm, watermark)
            if unsafe is None:
                liveness.require_live(f"stream_results {cm.key}: the reset to the state's watermark")
                reset_refusal = api.reset(cm, watermark)
                if reset_refusal is None:
                    again = self._try_advance(api, cm, continuation)
                    if again is None:
                        yield Log(
                            f"stream_results {cm.key}: the state was committed in the middle of a sync ({how}): reset "
                            f"the stream to the watermark {watermark}, then advanced to the continuation."
                        )
                        return True
                    refused = refused or again
        if refused is None:
            # Accepted, but the reset could not back it up: right if the server honours an older token.
            reason = unsafe or f"the API refused the reset (403: {reset_refusal}). {_reset_permissions(cm)}"
            yield Log(
                f"stream_results {cm.key}: the state was committed in the middle of a sync and the stream was advanced "
                f"to its continuation, but not reset to its watermark: {reason} If the server ignored the older "
                "continuation, the comments after the committed state are not delivered again.",
                Level.WARN,
            )
            return False
        if self.skip_uncommitted:
            yield Log(
                f"stream_results {cm.key}: {how}, and the stream cannot be put back where the destination committed. "
                "Going on from the stream's current position as skip_uncommitted_on_refused_resume asks: the comments "
                "after the destination's last commit are not delivered.",
                Level.WARN,
            )
            return False
        raise self._refused_resume(cm, watermark, refused, reset_refusal, unsafe)

    @staticmethod
    def _try_advance(api: CmApi, cm: CmStream, continuation: str) -> Optional[BadResponse]:
        """Advance to a state's continuation: None when accepted, the 400 when refused; anything else raises."""
        try:
            api.advance(cm, continuation)
        except BadResponse as error:
            if error.status_code != 400:
                raise
            return error
        return None

    @staticmethod
    def _reset_is_unsafe(api: CmApi, cm: CmStream, watermark: str) -> Optional[str]:
        """Why a reset to `watermark` could move the stream forward past a comment not delivered; None if it cannot.

        A reset goes to the first comment created at or after the watermark. The first comment `/results`
        would serve now (a GET: nothing is consumed) is where the stream is: if the watermark is not after its
        `created_at`, the reset moves the stream back or leaves it. With nothing pending, a watermark not in
        the future is safe. Only `created_at` is compared: `last_modified` may be far later than the comment's
        place in the queue. A re-upload at the head of the queue keeps its old `created_at`, so it can make
        an honest state look unsafe; that costs a reset (a warning) or, if the continuation was refused too, a
        config_error, never a comment.
        """
        when = instant(watermark)
        if when is None:
            return f"its watermark {watermark!r} is not a time."
        if when > datetime.now(timezone.utc) + _WATERMARK_SKEW:
            return f"its watermark {watermark} is in the future (a state edited by hand or from elsewhere?)."
        body = api.results(cm, at_most=1)
        results = body.get("results")
        if not results:
            if body.get("more_results") is False or not body.get("num_filtered"):
                return None
            return "the stream's next comments are filtered out, so its position cannot be compared with the watermark."
        comment = results[0].get("comment") if isinstance(results[0], dict) else None
        comment = comment if isinstance(comment, dict) else {}
        head = instant(comment.get("created_at"))
        if head is not None and when <= head:
            return None
        return (
            f"its watermark {watermark} is after the stream's next comment ({comment.get('created_at')!r}): a reset "
            "would move the stream forward past comments not delivered."
        )

    def _refused_resume(
        self,
        cm: CmStream,
        watermark: Optional[str],
        error: BadResponse,
        refusal: Optional[str] = None,
        unsafe: Optional[str] = None,
    ) -> AirbyteTracedException:
        """The config_error of a stream whose state's continuation the API refuses, with the ways out that apply."""
        by_hand = "reset the stream in Communications Mining by hand to a time before the comments the destination lacks"
        if not watermark:
            why = "the state has no created_at watermark to reset to (no comment of this stream was delivered yet)"
            recover = by_hand
        elif not self.rewind:
            why = "rewind_on_resume is off"
            recover = (
                f"turn rewind_on_resume on (a reset needs the same 'Consume streams' and 'View labels' permissions on "
                f"project '{cm.project}' as reading the stream {roles.RESET}), or reset the stream in Communications Mining by hand "
                f"to {watermark}"
            )
        elif unsafe:
            why = f"it is not reset to the state's watermark because {unsafe}"
            recover = by_hand
        elif refusal:
            why = f"the API refused to reset it (403: {refusal}) to the state's watermark"
            recover = (
                f"give the token the 'Consume streams' and 'View labels' permissions on project '{cm.project}' {roles.RESET} (a reset "
                "needs what reading needs) or, if it has them, resolve what the API's refusal says; or reset the stream "
                f"in Communications Mining by hand to {watermark}"
            )
        else:
            why = f"even after a reset to the state's watermark {watermark} the API refused the continuation"
            recover = by_hand
        return AirbyteTracedException(
            message=(
                f"stream_results {cm.key}: the API refused to advance to the state's continuation ({describe(error)}): "
                "the stream is not where the destination committed (it is ahead, or the continuation is not one the API "
                f"knows), and {why}. Nothing was read from this stream and it was not moved forward, so nothing is "
                f"skipped. To deliver the comments after the committed state: {recover}, then sync again; or clear "
                "the stream_results state, so the stream is read again from start_position (stream_created: from its "
                "creation). Each configured stream must be dedicated to this connection: check that no other consumer "
                "reads it. To skip those comments instead: set skip_uncommitted_on_refused_resume to true."
            ),
            internal_message=error.internal_message or error.message,
            failure_type=FailureType.config_error,
        )
