"""The start and resume decision (position_plan.decide) against a model of one stream, for every combination.

The model: a queue of comments in upload order (`created_at` never decreasing), the stream's one position
(the index of its next comment), its creation time, and a server that moves back on an older advance,
refuses it (400) or ignores it, and may refuse resets (403, 400) or the export. The selected tables'
committed cursors are drawn as real syncs leave them: a position, the watermark of the comment before it,
`batches` that grow with the position along one epoch, a legacy cursor only for stream_results, confirmed
or not. Checked on every run:

- the stream is never read from a position past the oldest committed cursor of any selected table;
- a reset never moves the stream forward past comments it holds;
- with no cursor, a stream read since its creation is moved only when start_position names a take-over.

Outside what is checked, as README "Delivery guarantees" says: `skip_uncommitted_on_refused_resume` (a
choice to skip), and a server that ignores an older advance (contrary to the API's advance page) where no
reset can back it up (rewind off, a refused reset, no watermark, or a confirmed state whose stream another
reader moved).
"""

from datetime import datetime, timedelta, timezone

import pytest
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from source_commsmining.api import Refusal, Uploaded
from source_commsmining.flat_tables import FIELDS, LABELS, RESULTS
from source_commsmining.position_plan import (
    CURRENT,
    IF_UNREAD,
    START_POSITIONS,
    TAKE_OVER_FROM_CREATION,
    TAKE_OVER_FROM_DATE,
    Advance,
    GetDefinition,
    Head,
    Peek,
    Reset,
    Settings,
    StreamInUse,
    Uploads,
    decide,
)
from source_commsmining.reading_events import Log

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)
BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _time(seconds: int) -> str:
    return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Server:
    """One stream: `times[i]` is comment i's created_at (seconds after BASE), `position` its next comment; comments
    of `sources[i]` "s1" are hidden by the stream's filter when it has one."""

    def __init__(self, times, position, created, backward, reset_refusal, export_unavailable, sources=None, filtered=False):
        self.times, self.position, self.created = times, position, created
        self.backward, self.reset_refusal, self.export_unavailable = backward, reset_refusal, export_unavailable
        self.sources = sources or ["s0"] * len(times)
        self.filter = {"sources": ["s0"]} if filtered else None
        self.resets = []  # (from, to) of each reset made

    def __repr__(self):
        return f"Server({self.__dict__})"

    def visible(self, i: int) -> bool:
        return self.filter is None or self.sources[i] == "s0"

    def served_between(self, start: int, end: int) -> bool:
        """Whether a comment the stream serves lies in [start, end)."""
        return any(self.visible(i) for i in range(start, end))

    def first_at_or_after(self, seconds: float) -> int:
        return next((i for i, t in enumerate(self.times) if t >= seconds), len(self.times))

    def comment(self, i):
        return {"uid": f"u{i}", "created_at": _time(self.times[i]), "source_id": self.sources[i]}

    def head(self) -> Head:
        i = next((i for i in range(self.position, len(self.times)) if self.visible(i)), None)
        return Head() if i is None else Head(uid=f"u{i}", created_at=_time(self.times[i]))

    def answer(self, step):
        if isinstance(step, GetDefinition):
            return {"created_at": _time(self.created), "comment_filter": self.filter}
        if isinstance(step, Peek):
            return self.head()
        if isinstance(step, Uploads):
            if self.export_unavailable:
                return Uploaded(unavailable="403: Forbidden")
            since = (datetime.fromisoformat(step.since.replace("Z", "+00:00")) - BASE).total_seconds()
            until = None if step.until is None else (datetime.fromisoformat(step.until.replace("Z", "+00:00")) - BASE).total_seconds()
            listed = [self.comment(i) for i, t in enumerate(self.times) if t >= since and (until is None or t <= until)]
            return Uploaded(tuple(listed[:3]), complete=len(listed) <= 3)  # a cap, as the export's pages have
        if isinstance(step, Advance):
            index = int(step.continuation[1:])
            if index < self.position and self.backward == "refuse":
                return "400: cannot advance backwards"
            if index >= self.position or self.backward == "accept":
                self.position = index
            return None
        if isinstance(step, Reset):
            if self.reset_refusal:
                return Refusal(self.reset_refusal, "refused")
            seconds = (datetime.fromisoformat(step.to.replace("Z", "+00:00")) - BASE).total_seconds()
            to = self.first_at_or_after(seconds)
            self.resets.append((self.position, to))
            self.position = to
            return None
        raise AssertionError(step)


def _run(server, cursors, settings_):
    plan = decide("acme/collections/triage", cursors, settings_, NOW)
    answer = None
    while True:
        try:
            step = plan.send(answer)
        except StopIteration as done:
            return done.value
        answer = None if isinstance(step, Log) else server.answer(step)


@st.composite
def worlds(draw):
    times, t = [], 100
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.integers(0, 3))  # uploads in the same second share a created_at
        times.append(t)
    n = len(times)
    tables = draw(st.lists(st.sampled_from([RESULTS, LABELS, FIELDS]), min_size=1, max_size=3, unique=True))
    cursors, confirmed_at = {}, draw(st.integers(1, max(n, 1)))
    for table in tables:
        if not draw(st.booleans()):
            cursors[table] = None
            continue
        k = draw(st.integers(1, n)) if n else 1
        epoch = draw(st.sampled_from([None, "a", "b"] if table == RESULTS else ["a", "b"]))
        cursor = {"continuation": f"k{k}"}
        if n and draw(st.integers(0, 5)):  # mostly a watermark: the created_at of the last comment delivered
            cursor["created_at"] = _time(times[min(k, n) - 1])
        if draw(st.booleans()):  # the last STATE of a sync that ended with the stream there
            cursor["position_confirmed"] = True
            k = confirmed_at if draw(st.booleans()) else k
            cursor["continuation"] = f"k{k}"
            if n and "created_at" in cursor:
                cursor["created_at"] = _time(times[min(k, n) - 1])
        if epoch is not None:  # batches grow with the position along one epoch
            cursor.update(batches=k + (100 if epoch == "b" else 0), epoch=epoch)
        cursors[table] = cursor
    created = draw(st.one_of(st.integers(0, 130), st.just(10**9)))  # 10**9 s after 2024: in the future
    position = draw(st.integers(0, n))
    server = Server(
        times, position, created, draw(st.sampled_from(["accept", "refuse", "ignore"])),
        draw(st.sampled_from([None, None, 403, 400])), draw(st.integers(0, 4)) == 0,
        [draw(st.sampled_from(["s0", "s1"])) for _ in times], draw(st.booleans()),
    )
    mode = draw(st.sampled_from(START_POSITIONS))
    date = _time(draw(st.integers(0, 130))) if mode == TAKE_OVER_FROM_DATE else None
    choice = Settings(mode, date, rewind=draw(st.booleans()), skip_uncommitted=draw(st.integers(0, 4)) == 0)
    return server, cursors, choice


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_a_stream_is_never_read_past_the_oldest_committed_cursor_nor_reset_forward(world):
    server, cursors, choice = world
    committed = [int(c["continuation"][1:]) for c in cursors.values() if c]
    confirmed_all = committed and all(c.get("position_confirmed") for c in cursors.values() if c) and len(set(committed)) == 1
    if server.backward == "ignore" and committed:
        # Contrary to the advance page: covered where a reset can back the advance up.
        assume(choice.rewind and not server.reset_refusal and all(c.get("created_at") for c in cursors.values() if c))
        assume(not confirmed_all or server.position <= committed[0])
    before = server.position
    first_since_creation = server.first_at_or_after(server.created)
    try:
        outcome = _run(server, cursors, choice)
    except AirbyteTracedException as refused:
        assert refused.failure_type.value == "config_error"
        outcome = None
    for was, to in server.resets:
        assert not server.served_between(was, to), f"a reset moved the stream forward from {was} to {to} past comments it holds"
    if outcome is None:
        return
    if committed and not choice.skip_uncommitted:
        assert not server.served_between(min(committed), server.position), (before, server.position, cursors)
    if not committed and choice.start_position == IF_UNREAD and server.resets:
        assert not server.served_between(first_since_creation, before), "a stream read since its creation was taken over"
    if not committed and choice.start_position == CURRENT:
        assert server.position == before and not server.resets
    if outcome.confirmed and committed and not choice.skip_uncommitted:
        assert not server.served_between(min(committed), server.position)


@pytest.mark.parametrize("mode", [IF_UNREAD, TAKE_OVER_FROM_CREATION])
def test_a_stream_created_in_the_future_is_refused_rather_than_used(mode):
    server = Server([100, 101, 102], 0, 10**9, "accept", None, False)
    with pytest.raises(AirbyteTracedException, match="in the future"):
        _run(server, {RESULTS: None}, Settings(mode))
    assert server.position == 0 and not server.resets


def test_a_stream_another_reader_advanced_is_refused_by_the_default_and_taken_over_only_by_name():
    """The robot read 320 of 400: the default moves nothing; take_over_from_creation puts it back at its creation."""
    times = list(range(100, 500))
    robot = Server(times, 320, 50, "accept", None, False)
    with pytest.raises(StreamInUse) as refused:
        _run(robot, {RESULTS: None}, Settings())
    assert robot.position == 320 and not robot.resets
    for words in ("created (", "uploaded at", "`current`", "`take_over_from_creation`", "replays those comments to every reader"):
        assert words in refused.value.message
    outcome = _run(robot, {RESULTS: None}, Settings(TAKE_OVER_FROM_CREATION))
    assert robot.position == 0 and outcome.confirmed and outcome.base is None


def test_a_stream_reset_by_hand_to_before_its_creation_is_not_reset_forward():
    """A backfill prepared before the first sync: the stream stands at comment 5, before its creation (comment 20)."""
    times = list(range(100, 130))
    server = Server(times, 5, 120, "accept", None, False)
    for mode in (IF_UNREAD, TAKE_OVER_FROM_CREATION):
        with pytest.raises(AirbyteTracedException):
            _run(server, {RESULTS: None}, Settings(mode))
        assert server.position == 5 and not server.resets
    _run(server, {RESULTS: None}, Settings(CURRENT))
    assert server.position == 5  # read from where it was prepared


def test_a_newly_selected_table_never_moves_the_stream_past_the_others_committed_cursor():
    times = list(range(100, 400))
    server = Server(times, 300, 50, "accept", None, False)
    cursor = {"continuation": "k50", "created_at": _time(149), "batches": 3, "epoch": "a"}
    outcome = _run(server, {RESULTS: cursor, LABELS: None}, Settings(CURRENT))
    assert server.position == 50 and outcome.base["continuation"] == "k50"


def test_a_drained_stream_whose_first_uploads_its_filter_hides_is_not_taken_for_unread():
    """Another reader drained it; the export's first page shows only comments the filter keeps out."""
    times = list(range(100, 112))
    server = Server(times, 12, 50, "accept", None, False, ["s1"] * 3 + ["s0"] * 9, filtered=True)
    with pytest.raises(StreamInUse, match="more comments were uploaded"):
        _run(server, {RESULTS: None}, Settings())
    assert server.position == 12 and not server.resets
