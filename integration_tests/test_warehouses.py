"""Two overlapping streams synced through PyAirbyte into real warehouses: DuckDB and PostgreSQL.

`triage` and `urgent-only` read the same dataset; every urgent comment is in both. The table must
hold one row per (stream, comment) the emulator served, whatever was delivered twice: the key is
`[project, dataset, stream, uid]`, so a comment from two streams is two rows and a comment the
same stream delivers again is one. Two ways a comment comes again are covered: an updated comment
(a re-upload, served again by every stream), and the re-delivery the product exists to survive:
the destination kept a sync's rows but lost its state, so the next sync is handed the older state
and the connector rewinds the streams and delivers those comments again.

PyAirbyte's caches merge a sync's records into the table by key, but do not deduplicate within one
sync: a comment and its re-upload served in the same sync would be two rows there (Airbyte's own
destinations keep the latest). So the emulator here holds fewer comments than its first seeded
re-upload (index 110), and the re-upload comes between syncs.
"""

import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from commsmining_emulator import Emulator
from integration_tests.conftest import TRIAGE, URGENT, LazyModule, connector_config
from integration_tests.postgres_server import PostgresServer

os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
ab = LazyModule("airbyte", reason="PyAirbyte is in the [demo] extra")
airbyte_caches = LazyModule("airbyte.caches", reason="PyAirbyte is in the [demo] extra")
from sqlalchemy import text  # noqa: E402  (PyAirbyte's dependency)

STREAMS = [TRIAGE, URGENT]
KEY = ["project", "dataset", "stream", "uid"]
COMMENTS = 100  # below the first seeded re-upload (see the module docstring)
UPLOADED = 40  # comments uploaded between the first and the second sync
# The module-scoped PostgreSQL server is started once: the module runs on one pytest-xdist worker, with
# the other PyAirbyte tests (which then import PyAirbyte on that worker only: see LazyModule, and share one Source: conftest.pyairbyte_source).
pytestmark = pytest.mark.xdist_group("pyairbyte")


@pytest.fixture
def emulator():
    with Emulator(seed=7, comments=COMMENTS, scenario="default") as emu:
        yield emu


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


def _duckdb_cache(tmp_path: Path, _postgres=None):
    return ab.DuckDBCache(db_path=str(tmp_path / "warehouse.duckdb"), schema_name="commsmining")


def _postgres_cache(tmp_path: Path, server: PostgresServer):
    return airbyte_caches.PostgresCache(
        host=server.host, port=server.port, username=server.user, password="unused", database=server.database,
        schema_name="commsmining",
    )


# How each warehouse reads a key out of a JSON column, and the first element's name out of a JSON array.
JSON_SQL = {
    "duckdb": {
        "comment_uid": "json_extract_string(comment, '$.uid')",
        "comment_last_modified": "json_extract_string(comment, '$.last_modified')",
        "prediction_labels": "json_array_length(json_extract(prediction, '$.taxonomies[0].labels'))",
        "first_label": "json_extract_string(labels, '$[0].name')",
    },
    "postgres": {
        "comment_uid": "comment->>'uid'",
        "comment_last_modified": "comment->>'last_modified'",
        "prediction_labels": "json_array_length(prediction->'taxonomies'->0->'labels')",
        "first_label": "labels->0->>'name'",
    },
}


def _truth(emulator) -> Dict[str, List[str]]:
    """What each stream served, by the emulator's own record: the rows the table must hold."""
    return {s["stream"]: emulator.served_uids(s["project"], s["dataset"], s["stream"]) for s in STREAMS}


def _rows(cache) -> List[Tuple[str, str]]:
    with cache.get_sql_engine().connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT stream, uid FROM commsmining.stream_results"))]


def _per_stream(rows: List[Tuple[str, str]]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for stream, _ in rows:
        counts[stream] = counts.get(stream, 0) + 1
    return counts


def _state_json(cache) -> str:
    with cache.get_sql_engine().connect() as conn:
        return conn.execute(
            text("SELECT state_json FROM commsmining._airbyte_state WHERE stream_name = 'stream_results'")
        ).scalar_one()


def _restore_state(cache, state_json: str) -> None:
    """The destination lost the last commit of its state (its rows had landed): it hands back the older one."""
    with cache.get_sql_engine().begin() as conn:
        conn.execute(
            text("UPDATE commsmining._airbyte_state SET state_json = :s WHERE stream_name = 'stream_results'"),
            {"s": state_json},
        )
    assert _state_json(cache) == state_json


def _assert_the_declared_key_collapses_nothing(cache, key: List[str], rows) -> None:
    """A destination deduplicating on the key discover declares would keep this many rows."""
    columns = ", ".join(key)
    with cache.get_sql_engine().connect() as conn:
        distinct = conn.execute(
            text(f"SELECT count(*) FROM (SELECT DISTINCT {columns} FROM commsmining.stream_results) AS k")
        ).scalar_one()
    assert distinct == len(rows), f"deduplicating on {key} would keep {distinct} of {len(rows)} rows"


def _assert_rows_are_the_truth(rows, truth: Dict[str, List[str]]) -> None:
    assert len(rows) == len(set(rows)), "a (stream, uid) is in the table twice: a re-delivery was not deduplicated"
    for stream, served in truth.items():
        assert sorted(uid for s, uid in rows if s == stream) == sorted(set(served)), stream


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_overlapping_streams_into_a_warehouse_twice_with_a_redelivery(warehouse, emulator, tmp_path, request, pyairbyte_source):
    server = request.getfixturevalue("postgres") if warehouse == "postgres" else None
    cache = (_postgres_cache if warehouse == "postgres" else _duckdb_cache)(tmp_path, server)
    source = pyairbyte_source(connector_config(emulator, streams=STREAMS, max_filtered=1024), ["stream_results"])
    declared = [path[0] for path in source.configured_catalog.streams[0].primary_key]

    # Sync 1: everything in both streams.
    source.read(cache=cache)
    first = _rows(cache)
    truth = _truth(emulator)
    _assert_rows_are_the_truth(first, truth)
    overlap = set(truth["triage"]) & set(truth["urgent-only"])
    assert overlap, "the scenario must have comments in both streams"
    committed_state = _state_json(cache)

    # Sync 2: new comments arrive, and a comment both streams delivered is updated (re-uploaded),
    # so both serve it again.
    inbox = emulator.world.source("acme", "inbox").id
    updated = sorted(uid for uid in overlap if uid.startswith(inbox + "."))[0]
    new_version = emulator.reupload("acme", "inbox", updated, text="edited after the first sync")
    uploaded = emulator.upload("acme", "inbox", UPLOADED)
    second_read = source.read(cache=cache)
    second = _rows(cache)
    truth = _truth(emulator)
    _assert_rows_are_the_truth(second, truth)
    assert set(uploaded) <= {uid for s, uid in second if s == "triage"}
    for stream in ("triage", "urgent-only"):
        assert truth[stream].count(updated) == 2, "the stream did not serve the updated comment again"
    with cache.get_sql_engine().connect() as conn:
        kept = conn.execute(
            text(f"SELECT {JSON_SQL[warehouse]['comment_last_modified']} FROM commsmining.stream_results WHERE uid = :u"),
            {"u": updated},
        ).scalars().all()
    assert kept == [new_version["last_modified"]] * 2, "each stream's row must hold the updated comment"

    # Forced re-delivery: the destination hands back sync 1's state, so sync 3 moves both streams back
    # and delivers sync 2's comments again. That state is sync 1's last (position_confirmed): sync 3
    # only advances to its older continuation, which the emulator honours, as the API's advance page
    # says ("next time a fetch is performed on the stream, it will start from this position"); no reset.
    _restore_state(cache, committed_state)
    resets = {s["stream"]: emulator.stream_state(s["project"], s["dataset"], s["stream"])["resets"] for s in STREAMS}
    third_read = source.read(cache=cache)
    third = _rows(cache)
    truth = _truth(emulator)
    for s in STREAMS:
        assert emulator.stream_state(s["project"], s["dataset"], s["stream"])["resets"] == resets[s["stream"]]
    redelivered = third_read.processed_records
    assert redelivered == second_read.processed_records >= UPLOADED + 2, "sync 3 must deliver sync 2's records again"
    _assert_rows_are_the_truth(third, truth)
    assert sorted(third) == sorted(second)

    # The same comment from two streams is two rows, one per stream, under the key discover declares.
    _assert_the_declared_key_collapses_nothing(cache, declared, third)
    assert declared == KEY, "discover must declare the composite key"
    per_uid: Dict[str, List[str]] = {}
    for stream, uid in third:
        per_uid.setdefault(uid, []).append(stream)
    both = {uid for uid, streams in per_uid.items() if sorted(streams) == ["triage", "urgent-only"]}
    assert both == set(truth["triage"]) & set(truth["urgent-only"])

    # The nested columns are JSON the warehouse can query.
    sql = JSON_SQL[warehouse]
    with cache.get_sql_engine().connect() as conn:
        mismatched = conn.execute(
            text(f"SELECT count(*) FROM commsmining.stream_results WHERE {sql['comment_uid']} IS DISTINCT FROM uid")
        ).scalar_one()
        with_labels = conn.execute(
            text(f"SELECT count(*) FROM commsmining.stream_results WHERE {sql['prediction_labels']} > 0")
        ).scalar_one()
        first_labels = conn.execute(
            text(f"SELECT count(*) FROM commsmining.stream_results WHERE {sql['first_label']} IS NOT NULL")
        ).scalar_one()
    assert mismatched == 0
    assert with_labels > 0 and first_labels > 0

    counts = {
        "after sync 1": _per_stream(first),
        "after sync 2": _per_stream(second),
        "after the re-delivery sync": _per_stream(third),
        "records read": {"sync 2": second_read.processed_records, "sync 3 (re-delivery)": redelivered},
    }
    print(f"\n{warehouse}: {json.dumps(counts)}")
