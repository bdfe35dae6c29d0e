"""Exactly-once into a warehouse, end to end: PyAirbyte killed, the connector killed, no comment lost.

The destination is PyAirbyte in processes of its own (`exactly_once_driver.py`, a fork server: one
process per sync, `source.read(cache=...)` into DuckDB or into the suite's real PostgreSQL), the
connector its subprocess, two CM streams (`triage`, `urgent-only`) in one config, the emulator over
real HTTP. Over many rounds, with new uploads before each, a seeded RNG picks what goes wrong:

- `driver_read`: the PyAirbyte process is SIGKILLed while the connector reads (after a random
  number of advances); the connector under it is orphaned and left to die on its own (waited for,
  so that the random rounds do not race each other; the race is a path of its own below).
- `driver_commit`: the PyAirbyte process is SIGKILLed after the connector ended, while it writes
  the rows and the state (a random instant of the commit, or after it).
- `source`: the connector alone is SIGKILLed while it reads; PyAirbyte raises and commits nothing.
- `clean`: nothing goes wrong.

and three paths that would lose comments every time run deterministically:

- `first_sync_killed`: the very first sync of the cache dies while it reads; the next one re-runs.
- `lost_state_row`: PyAirbyte writes a stream's state in two commits (delete the row, commit,
  insert, commit); a process dying between them keeps the rows and loses the state. Emulated by
  deleting the cache's `_airbyte_state` row of `stream_results` after a clean sync; the next sync
  (which has no state) then dies while it reads, and the one after re-runs.
- `orphan_race`: the PyAirbyte process is SIGKILLed while an advance hangs in the emulator; the
  next sync starts at once, its reads slowed down; once it has put the stream back where the
  committed state says, the hang ends with a dropped connection (unapplied, as a timed-out call),
  so an advance the orphan sends after its reader died (a retry) lands while the next sync reads. An advance already applied by the server cannot
  be undone by any connector; one sent after the reader is gone can be avoided, and that is what
  this path checks.

At the end, a clean sync drains both streams; each warehouse table, deduplicated on the primary
key [project, dataset, stream, uid], must hold exactly the comments the emulator says each stream
consumed (advanced past): 0 missing, 0 extra. PyAirbyte does not deduplicate within one sync, so
duplicate rows are counted, not failed. A missing comment is charged to the round that first
advanced past it. Figures go to the JSON file named by EXACTLY_ONCE_TABLE (one line per run).

Size: CI runs each kill kind once per warehouse (no `clean` round: the deterministic paths and
the final sync are clean syncs), between the three deterministic paths; `make chaos-large`
(CHAOS_SCALE=large) runs hundreds of random rounds, with the deterministic paths repeated.
"""

import bisect
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from commsmining_emulator import Emulator, Fault
from integration_tests.conftest import TRIAGE, URGENT, connector_config
from integration_tests.postgres_server import PostgresServer
from source_commsmining.config import as_migrated

sqlalchemy = pytest.importorskip("sqlalchemy", reason="PyAirbyte (the [demo] extra) brings SQLAlchemy")
if importlib.util.find_spec("airbyte") is None:  # the driver imports it, in its own process: not imported here
    pytest.skip("PyAirbyte is in the [demo] extra", allow_module_level=True)

LARGE = os.environ.get("CHAOS_SCALE") == "large"
RANDOM_ROUNDS = 300  # CHAOS_SCALE=large only (see _plan)
# Large runs repeat the three deterministic paths every this many random rounds.
PATHS_EVERY = 50
STREAMS = [TRIAGE, URGENT]
BATCH = 10
GATED_SECONDS = 91.0  # a hang fault this long lasts until the test opens the gate (GatedEmulator)
SLOW_RESULTS_SECONDS = 1.5  # each /results of the sync racing the orphan, while the orphan's hang ends
SYNC_TIMEOUT = 120.0
ORPHAN_GRACE = 10.0  # an orphan still alive after this is killed by the test (and counted)
KINDS = ("driver_read", "driver_commit", "source", "clean")
WEIGHTS = (4, 2, 3, 1)
ONE_OF_EACH_TRIES = 4  # CI size: rounds of one kill kind until its kill came (see _plan)


class GatedEmulator(Emulator):
    """The emulator, with `hang` faults of GATED_SECONDS that end when the test opens `gate`:
    the orphan race needs the orphan's advance to fail at the moment the next sync has reset,
    whatever the load of the machine makes that moment."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def _sleep(self, seconds: float) -> None:
        if seconds != GATED_SECONDS:
            return super()._sleep(seconds)
        deadline = time.time() + seconds
        while not self.gate.is_set() and not self._stopping.is_set() and time.time() < deadline:
            self.gate.wait(0.05)


# ------------------------------------------------------------------ processes
def _stat(pid: int) -> Optional[Tuple[str, int]]:
    """(state letter, parent pid) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _connector_under(parent: int) -> Optional[int]:
    """The connector process PyAirbyte started (a child of the sync process)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == parent:
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"source-commsmining" in cmdline:
                    return int(entry)
    return None


def _kill(pid: Optional[int]) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


class ForkServer:
    """`exactly_once_driver.py` running: forks one PyAirbyte process per sync (see its docstring).

    One per module (both warehouses): PyAirbyte's import, `spec` and `discover` are paid once.
    `use(config, cache_spec)` says what the next syncs read from and write to."""

    def __init__(self, config: dict, tmp: Path) -> None:
        config_path = tmp / "config.json"
        config_path.write_text(json.dumps(config))
        self._tmp = tmp
        self._job: Optional[Path] = None
        self.log_path = tmp / "driver.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "integration_tests.exactly_once_driver", str(config_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        self._cond = threading.Condition()
        self._exits: Dict[int, int] = {}
        self._started: List[int] = []
        self._ready = False
        threading.Thread(target=self._read, daemon=True).start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self.proc.poll() is not None, timeout=300):
                raise RuntimeError("the PyAirbyte fork server did not start in 300 s")
        if not self._ready:
            raise RuntimeError(f"the PyAirbyte fork server died: {self.log_path.read_text()[-3000:]}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            words = line.split()
            with self._cond:
                if words == ["ready"]:
                    self._ready = True
                elif words[:1] == ["started"]:
                    self._started.append(int(words[1]))
                elif words[:1] == ["exit"]:
                    self._exits[int(words[1])] = int(words[2])
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def use(self, config: dict, cache_spec: dict) -> None:
        self._job = self._tmp / f"job-{cache_spec['kind']}.json"
        self._job.write_text(json.dumps({"config": config, "cache": cache_spec}))

    def sync(self) -> int:
        """Starts one sync in a new process; returns its pid."""
        with self._cond:
            count = len(self._started)
            self.proc.stdin.write(f"sync {self._job}\n")
            self.proc.stdin.flush()
            self._cond.wait_for(lambda: len(self._started) > count, timeout=30)
            return self._started[count]

    def exit_code(self, pid: int, timeout: float = 0.0) -> Optional[int]:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits, timeout=timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


# ------------------------------------------------------------------ warehouses
class Warehouse:
    def __init__(self, kind: str, tmp: Path, server: Optional[PostgresServer]) -> None:
        self.kind = kind
        self.schema = "exactly_once_" + os.urandom(4).hex()
        if kind == "duckdb":
            path = str(tmp / "warehouse.duckdb")
            self.spec = {"kind": "duckdb", "path": path, "schema": self.schema}
            self.url = f"duckdb:///{path}"
        else:
            self.spec = {"kind": "postgres", "host": server.host, "port": server.port, "user": server.user,
                         "database": server.database, "schema": self.schema}
            self.url = f"postgresql+psycopg2://{server.user}:unused@{server.host}:{server.port}/{server.database}"

    def _engine(self):
        return sqlalchemy.create_engine(self.url)

    def rows(self) -> List[Tuple[str, str, str, str]]:
        """Every row of stream_results (no sync may be running: DuckDB has one writer)."""
        engine = self._engine()
        try:
            with engine.connect() as conn:
                exists = conn.execute(sqlalchemy.text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND table_name = 'stream_results'"
                ), {"s": self.schema}).scalar_one()
                if not exists:
                    return []
                return [tuple(r) for r in conn.execute(sqlalchemy.text(
                    f"SELECT project, dataset, stream, uid FROM {self.schema}.stream_results"))]
        finally:
            engine.dispose()

    def _state_rows(self, conn) -> int:
        exists = conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = :s AND table_name = '_airbyte_state'"
        ), {"s": self.schema}).scalar_one()
        if not exists:
            return 0
        return conn.execute(sqlalchemy.text(
            f"SELECT count(*) FROM {self.schema}._airbyte_state WHERE stream_name = 'stream_results'")).scalar_one()

    def has_state(self) -> bool:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                return self._state_rows(conn) > 0
        finally:
            engine.dispose()

    def lose_state_row(self) -> int:
        """What a process dying between PyAirbyte's two state commits leaves: the rows, no state."""
        engine = self._engine()
        try:
            with engine.begin() as conn:
                lost = self._state_rows(conn)
                conn.execute(sqlalchemy.text(
                    f"DELETE FROM {self.schema}._airbyte_state WHERE stream_name = 'stream_results'"))
                return lost
        finally:
            engine.dispose()


# ------------------------------------------------------------------ the scenario
class Scenario:
    def __init__(self, emu: Emulator, driver: ForkServer, warehouse: Warehouse, rng: random.Random) -> None:
        self.emu = emu
        self.driver = driver
        self.warehouse = warehouse
        self.rng = rng
        self.rounds: List[str] = []  # the kind of each round ("... without state" if the cache had none)
        self.timeline: List[Tuple[str, float]] = []
        self._round_began = time.time()
        self._had_state = False
        self.max_positions: Dict[str, List[int]] = {s["stream"]: [] for s in STREAMS}  # after each round
        self.kills: Dict[str, int] = {}
        self.missed_kills: Dict[str, int] = {}  # the sync ended before the kill instant came
        self.failed_syncs: List[str] = []  # a sync that should have succeeded did not
        self.orphan_lifetimes: List[float] = []
        self.orphans_killed_by_test = 0
        self.lost_state_rows = 0
        self.commit_window = 0.4  # driver_commit kills at a random instant this long after the connector ended
        self.race_log: List[dict] = []  # triage's resets and advances around the last orphan race

    # -- helpers
    def _advances(self) -> int:
        return self.emu.stats()["by_route"].get("advance", 0)

    def _upload(self, low: int = 30, high: int = 80) -> None:
        self.emu.upload("acme", self.rng.choice(["inbox", "support-mailbox"]), self.rng.randint(low, high))

    def _count(self, what: Dict[str, int], kind: str) -> None:
        what[kind] = what.get(kind, 0) + 1

    def _wait_connector(self, pid: int) -> Optional[int]:
        deadline = time.time() + 30
        while time.time() < deadline and self.driver.exit_code(pid) is None:
            found = _connector_under(pid)
            if found:
                return found
            time.sleep(0.005)
        return None

    def _wait_advances(self, pid: int, target: int) -> bool:
        """True once the emulator counted `target` advances; False if the sync ended first."""
        deadline = time.time() + SYNC_TIMEOUT
        while self._advances() < target:
            if self.driver.exit_code(pid) is not None or time.time() > deadline:
                return False
            time.sleep(0.002)
        return True

    def _finish(self, pid: int, label: str, must_succeed: bool) -> Optional[int]:
        code = self.driver.exit_code(pid, timeout=SYNC_TIMEOUT)
        if code is None:
            _kill(pid)
            code = self.driver.exit_code(pid, timeout=10)
            self.failed_syncs.append(f"{label}: hung, killed")
        elif code != 0 and must_succeed:
            self.failed_syncs.append(f"{label}: exit code {code}")
        return code

    def _watch(self, orphan: Optional[int], since: float, grace: float = ORPHAN_GRACE) -> Optional[threading.Thread]:
        """Notes how long an orphaned connector lives on after its reader died (kills it past `grace`)."""
        if orphan is None:
            return None

        def watch() -> None:
            while _alive(orphan) and time.time() - since < grace:
                time.sleep(0.005)
            if _alive(orphan):
                self.orphans_killed_by_test += 1
                _kill(orphan)
            self.orphan_lifetimes.append(round(time.time() - since, 2))

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread

    def _bury(self, orphan: Optional[int], since: float) -> None:
        """Waits for an orphaned connector to be gone before the next round."""
        thread = self._watch(orphan, since)
        if thread is not None:
            thread.join()

    def _batches_ahead(self) -> int:
        """A lower bound of the advances a sync will make: triage's full batches still unread."""
        state = self.emu.stream_state(**TRIAGE)
        return max(1, (state["total"] - state["position"]) // BATCH)

    # -- one sync, and how it ends
    def clean_sync(self, label: str) -> None:
        pid = self.driver.sync()
        self._finish(pid, label, must_succeed=True)

    def killed_sync(self, kind: str, min_advances: int = 1) -> None:
        """One sync killed as `kind` says; its consequences (an orphan) dealt with before returning."""
        start = self._advances()
        pid = self.driver.sync()
        connector = self._wait_connector(pid)
        if kind == "driver_commit":
            # after the connector ended: PyAirbyte is writing the rows and the state, or has
            while connector and _alive(connector) and self.driver.exit_code(pid) is None:
                time.sleep(0.002)
            time.sleep(self.rng.uniform(0, self.commit_window))
            hit = self.driver.exit_code(pid) is None and _kill(pid)
        else:
            target = start + self.rng.randint(min(min_advances, self._batches_ahead()), self._batches_ahead())
            hit = self._wait_advances(pid, target)
            if hit:
                time.sleep(self.rng.uniform(0, 0.02))
                hit = _kill(connector if kind == "source" else pid)
        killed_at = time.time()
        code = self._finish(pid, kind, must_succeed=False)
        if hit and code != 0:
            self._count(self.kills, kind)
        else:
            self._count(self.missed_kills, kind)
        if kind in ("driver_read", "first_sync_killed", "lost_state_row"):
            self._bury(connector if hit else None, killed_at)

    # -- rounds
    def _begin_round(self) -> None:
        self._round_began = time.time()
        self._had_state = self.warehouse.has_state()

    def _end_round(self, kind: str) -> None:
        if not self._had_state and kind in KINDS:
            kind += " without state"  # an earlier round left the cache without a committed state
        self.rounds.append(kind)
        self.timeline.append((kind, round(time.time() - self._round_began, 1)))
        for s in STREAMS:
            self.max_positions[s["stream"]].append(self.emu.stream_state(**s)["max_position"])

    def first_sync_killed(self) -> None:
        self._begin_round()
        self.killed_sync("first_sync_killed", min_advances=2)
        self._end_round("first_sync_killed")

    def random_round(self, kind: Optional[str] = None) -> None:
        """One round of `kind`, or of a kind the RNG picks."""
        self._begin_round()
        kind = kind or self.rng.choices(KINDS, WEIGHTS)[0]
        self._upload()
        if kind == "clean":
            self.clean_sync("clean round")
        else:
            self.killed_sync(kind)
        self._end_round(kind)

    def lost_state_row(self) -> None:
        self._begin_round()
        self._upload()
        self.clean_sync("lost_state_row: the sync whose state row is lost")
        self.lost_state_rows += self.warehouse.lose_state_row()
        self._upload()
        self.killed_sync("lost_state_row", min_advances=2)
        self._end_round("lost_state_row")

    def orphan_race(self) -> None:
        self._begin_round()
        self._upload()
        self.clean_sync("orphan_race: the committed sync before it")
        self._upload(150, 150)
        start = self._advances()
        pid = self.driver.sync()
        connector = self._wait_connector(pid)
        if not self._wait_advances(pid, start + 8):
            self._count(self.missed_kills, "orphan_race")
            self._finish(pid, "orphan_race", must_succeed=False)
            self._end_round("orphan_race")
            return
        fired = self.emu.faults.fired
        self.emu.gate.clear()
        self.emu.inject(Fault(route="advance", kind="hang", seconds=GATED_SECONDS, times=1))
        while self.emu.faults.fired == fired and self.driver.exit_code(pid) is None:
            time.sleep(0.002)
        # An advance hangs (unapplied): the reader dies now and the next sync starts at once, its
        # reads slowed down. Once it has put triage back where the committed state says, the hang
        # ends with a dropped connection; an orphan that retries the advance then moves triage on
        # while the next sync reads it.
        self.emu.inject(Fault(route="results", kind="delay", seconds=SLOW_RESULTS_SECONDS))
        hit = _kill(pid)
        killed_at = time.time()
        watcher = self._watch(connector, killed_at, grace=SYNC_TIMEOUT)  # it must see the gate open
        racer = self.driver.sync()
        self._count(self.kills if hit else self.missed_kills, "orphan_race")
        deadline = time.time() + SYNC_TIMEOUT
        while not [e for e in self.emu.stream_state(**TRIAGE)["log"] if e["at"] > killed_at]:
            if self.driver.exit_code(racer) is not None or time.time() > deadline:
                break
            time.sleep(0.005)
        time.sleep(0.3)  # the next sync's reset and advance to the committed continuation
        self.emu.gate.set()
        time.sleep(SLOW_RESULTS_SECONDS)
        self.emu.clear_faults()
        self._finish(racer, "orphan_race: the sync racing the orphan", must_succeed=True)
        self._finish(pid, "orphan_race: the killed sync", must_succeed=False)
        if watcher is not None:
            watcher.join(ORPHAN_GRACE)
            if watcher.is_alive():
                self.orphans_killed_by_test += 1
                _kill(connector)
                watcher.join()
        self.race_log = [
            {k: e[k] for k in ("op", "from", "to", "outcome") if k in e} | {"t": round(e["at"] - killed_at, 2)}
            for e in self.emu.stream_state(**TRIAGE)["log"] if e["at"] >= killed_at - 1
        ]
        self._end_round("orphan_race")

    # -- the verdict
    def compare(self) -> dict:
        rows = self.warehouse.rows()
        keys = set(rows)
        figures = {"missing": {}, "extra": {}, "consumed": {}, "missing_by_path": {}, "missing_examples": []}
        for s in STREAMS:
            st = self.emu.world.stream(s["project"], s["dataset"], s["stream"])
            first_index: Dict[str, int] = {}
            for i in self.emu.world.consumed_indexes(st):
                first_index.setdefault(self.emu.world.uid_of(st.dataset, i), i)
            in_table = {uid for p, d, stream, uid in keys if (p, d, stream) == (s["project"], s["dataset"], s["stream"])}
            missing = sorted(set(first_index) - in_table, key=first_index.get)
            extra = in_table - set(first_index)
            figures["consumed"][s["stream"]] = len(first_index)
            figures["missing"][s["stream"]] = len(missing)
            figures["extra"][s["stream"]] = len(extra)
            figures["missing_examples"] += [f"{s['stream']}/{uid}" for uid in missing[:3]]
            for uid in missing:
                # the round that first advanced past it (max_position is after each round)
                r = bisect.bisect_right(self.max_positions[s["stream"]], first_index[uid])
                kind = self.rounds[r] if r < len(self.rounds) else "final clean sync"
                figures["missing_by_path"][kind] = figures["missing_by_path"].get(kind, 0) + 1
        stray = {k for k in keys if (k[0], k[1], k[2]) not in {(s["project"], s["dataset"], s["stream"]) for s in STREAMS}}
        figures["extra"]["other streams"] = len(stray)
        figures["rows"] = len(rows)
        figures["distinct_keys"] = len(keys)
        figures["duplicate_rows_before_dedup"] = len(rows) - len(keys)
        figures["duplicate_rows_after_dedup"] = 0  # by construction: one row per distinct key
        for s in STREAMS:
            state = self.emu.stream_state(**s)
            figures.setdefault("drained", {})[s["stream"]] = state["position"] == state["total"]
        return figures


def _plan(rng: random.Random) -> List[str]:
    """First sync killed; then random rounds, with the two other deterministic paths among them.

    At CI size, no random kinds: each kill kind once, between the deterministic paths (random
    rounds left a kind out of a warehouse's run: the PostgreSQL run had no `source` kill). Each is
    tried again (ONE_OF_EACH_TRIES) if its kill instant did not come; the instants stay random.
    `driver_read` and `source` come after the orphan race, whose last sync committed a state: so
    each kill has a committed state to go back to (first_sync_killed and lost_state_row kill
    PyAirbyte mid-read without one); `driver_commit` kills the commit of a sync without state."""
    if not LARGE:
        return ["first_sync_killed", "driver_commit", "orphan_race", "driver_read", "source", "lost_state_row"]
    plan = ["first_sync_killed"]
    for n in range(RANDOM_ROUNDS):
        plan.append("random")
        if n % PATHS_EVERY == PATHS_EVERY // 2:
            plan += ["lost_state_row", "random", "orphan_race"]
    if "lost_state_row" not in plan:
        plan += ["lost_state_row", "random", "orphan_race"]
    return plan


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory):
    """The PyAirbyte fork server of both warehouses' runs (they share the "exactly-once" xdist_group).

    Its config serves `spec` and `discover` only (no request is sent): each run gives its own."""
    tmp = tmp_path_factory.mktemp("exactly-once-driver")
    # PyAirbyte validates a config against the spec before the connector sees it: the `credentials` shape.
    driver = ForkServer(as_migrated({"api_endpoint": "http://127.0.0.1:9", "api_token": "spec-and-discover-only-" + "0" * 32, "streams": STREAMS}), tmp)
    yield driver
    driver.close()


@pytest.mark.runs_long(70)
@pytest.mark.xdist_group("exactly-once")
@pytest.mark.parametrize("warehouse_kind", ["duckdb", "postgres"])
def test_every_consumed_comment_lands_once_in_the_warehouse(warehouse_kind, request, tmp_path, fork_server):
    began = time.time()
    seed = 20261203 + (1 if warehouse_kind == "postgres" else 0)
    rng = random.Random(seed)
    server = request.getfixturevalue("postgres") if warehouse_kind == "postgres" else None
    warehouse = Warehouse(warehouse_kind, tmp_path, server)
    with GatedEmulator(seed=13, comments=60, scenario="default") as emu:
        emu.set_latency(3)
        # The connection owns its streams and takes them over by name on a sync without state, so a killed first
        # sync (or a lost state row) is read again from each stream's creation. (The default refuses such a re-run,
        # moving nothing: integration_tests/test_stream_takeover_e2e.py.)
        config = connector_config(emu, streams=STREAMS, max_results=BATCH, max_filtered=1024, start_position="take_over_from_creation")
        driver = fork_server
        driver.use(as_migrated(config), warehouse.spec)
        scenario = Scenario(emu, driver, warehouse, rng)
        for step in _plan(rng):
            if step == "random":
                scenario.random_round()
            elif step in KINDS:
                for attempt in range(ONE_OF_EACH_TRIES):
                    # a commit that ended before the kill instant: a shorter window for the next try
                    scenario.commit_window = 0.4 / 2 ** attempt
                    scenario.random_round(step)
                    if scenario.kills.get(step):
                        break
            else:
                getattr(scenario, step)()
        emu.clear_faults()
        scenario.clean_sync("final clean sync")
        figures = scenario.compare()
    figures.update({
        "warehouse": warehouse_kind, "seed": seed, "scale": "large" if LARGE else "ci", "rounds": len(scenario.rounds),
        "kills": scenario.kills, "missed_kills": scenario.missed_kills, "failed_syncs": scenario.failed_syncs,
        "lost_state_rows": scenario.lost_state_rows, "orphans_killed_by_test": scenario.orphans_killed_by_test,
        "orphan_lifetime_max_s": max(scenario.orphan_lifetimes, default=0.0), "seconds": round(time.time() - began, 1),
        "timeline": scenario.timeline,
    })
    print(f"orphan race, triage's operations (t: seconds after the kill): {scenario.race_log}")
    print(f"\nexactly-once {warehouse_kind}: {json.dumps(figures)}")
    if os.environ.get("EXACTLY_ONCE_TABLE"):
        with open(os.environ["EXACTLY_ONCE_TABLE"], "a") as table:
            table.write(json.dumps(figures) + "\n")
    log = Path(driver.log_path).read_text()[-2000:]
    assert not scenario.failed_syncs, f"{scenario.failed_syncs}\n{log}"
    assert sum(figures["missing"].values()) == 0, f"consumed but not in the warehouse: {figures}"
    assert sum(figures["extra"].values()) == 0, f"in the warehouse but never consumed: {figures}"
    assert all(figures["drained"].values()), figures["drained"]
    assert scenario.kills.get("first_sync_killed") and scenario.kills.get("lost_state_row") and scenario.kills.get("orphan_race"), scenario.kills
    assert sum(scenario.kills.values()) >= (len(scenario.rounds) * 2) // 3, (scenario.kills, scenario.missed_kills)
    if not LARGE:  # every kind of kill, in each warehouse's run
        assert all(scenario.kills.get(kind) for kind in KINDS if kind != "clean"), (scenario.kills, scenario.missed_kills)
