"""The I/O around position_plan.decide: makes the calls the decision asks for and hands it the answers.

What is decided (where a stream is read from, what is refused, the invariant) is in position_plan.py;
this layer only talks to the API: the definition, the peek (a GET: nothing consumed), the dataset
export's first comment since a time, and the advance and reset, each checked first against the
sync's liveness (liveness.py). `dry` (for `check`) stops at the first advance or reset.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generator, Mapping, Optional

from source_commsmining import liveness
from source_commsmining.api import CmApi, CmStream
from source_commsmining.envelope import BadResponse
from source_commsmining.errors import describe
from source_commsmining.position_plan import (
    IF_UNREAD,
    Advance,
    GetDefinition,
    Head,
    Outcome,
    Peek,
    Reset,
    Settings,
    Uploads,
    decide,
)
from source_commsmining.reading_events import Log


class WouldMove(Exception):
    """A dry run (check) reached an advance or a reset: the plan goes on to move the stream."""


@dataclass(frozen=True)
class Positioning:
    """The connector's settings for putting a stream in place (rewind_on_resume, skip_uncommitted_on_refused_resume,
    start_position, start_date_for_streams)."""

    rewind: bool = True
    skip_uncommitted: bool = False
    start_position: str = IF_UNREAD
    start_date: Optional[str] = None

    @property
    def settings(self) -> Settings:
        return Settings(self.start_position, self.start_date, self.rewind, self.skip_uncommitted)

    def place(
        self,
        api: CmApi,
        cm: CmStream,
        cursors: Mapping[str, Optional[Mapping[str, Any]]],
        dry: bool = False,
        definition: Optional[Mapping[str, Any]] = None,
    ) -> Generator[Log, None, Outcome]:
        """Runs the decision for `cm` against the API; yields its log lines, returns its Outcome (or raises its
        refusal). `definition`: the stream definition when the caller has it already (check)."""
        plan = decide(cm.key, cursors or {}, self.settings, datetime.now(timezone.utc))
        answer: Any = None
        while True:
            try:
                step = plan.send(answer)
            except StopIteration as done:
                return done.value
            answer = None
            if isinstance(step, Log):
                yield step
            elif isinstance(step, GetDefinition):
                answer = definition if definition is not None else api.get_stream(cm)
            elif isinstance(step, Peek):
                answer = peek(api, cm)
            elif isinstance(step, Uploads):
                answer = api.uploads(cm, step.since, step.until)
            elif dry:
                raise WouldMove(step)
            elif isinstance(step, Advance):
                liveness.require_live(f"stream_results {cm.key}: {step.why}")
                answer = _try_advance(api, cm, step.continuation)
            elif isinstance(step, Reset):
                liveness.require_live(f"stream_results {cm.key}: {step.why}")
                answer = api.reset(cm, step.to)


def peek(api: CmApi, cm: CmStream) -> Head:
    """The stream's next pending comment, from `GET /results` for one (consumes nothing)."""
    body = api.results(cm, at_most=1)
    results = body.get("results")
    if not results:
        hidden = not (body.get("more_results") is False or not body.get("num_filtered"))
        return Head(hidden=hidden)
    comment = results[0].get("comment") if isinstance(results[0], dict) else None
    comment = comment if isinstance(comment, dict) else {}
    created = comment.get("created_at")
    uid = comment.get("uid")
    return Head(uid=uid if isinstance(uid, str) else "", created_at=created if isinstance(created, str) else "")


def _try_advance(api: CmApi, cm: CmStream, continuation: str) -> Optional[str]:
    """Advance to a state's continuation: None when accepted, the 400 described when refused; anything else raises."""
    try:
        api.advance(cm, continuation)
    except BadResponse as error:
        if error.status_code != 400:
            raise
        return describe(error)
    return None

