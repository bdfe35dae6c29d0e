"""PyAirbyte: the connector as a local executable, synced into a DuckDB cache, twice."""

import os

import pytest

from integration_tests.conftest import TRIAGE, LazyModule, connector_config

# PyAirbyte reads these once, at import: no registry or telemetry calls from a machine without internet.
os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
ab = LazyModule("airbyte", reason="PyAirbyte is in the [demo] extra")
# On the worker of the other PyAirbyte tests: PyAirbyte is imported there only (see LazyModule), and one Source (conftest.pyairbyte_source) serves them all.
pytestmark = pytest.mark.xdist_group("pyairbyte")


@pytest.mark.runs_long(15)
def test_sync_into_duckdb_twice_delivers_new_comments_only(emulator, tmp_path, pyairbyte_source):
    source = pyairbyte_source(connector_config(emulator, streams=[TRIAGE]), ["sources", "stream_results"])
    cache = ab.DuckDBCache(db_path=str(tmp_path / "sync.duckdb"), schema_name="commsmining")
    first = source.read(cache=cache)
    assert len(first["sources"]) >= 2
    before = [row["uid"] for row in cache["stream_results"]]
    # The stream's queue holds a few comments twice (re-uploads); PyAirbyte keeps both versions of
    # one sync, so the table is compared with what the stream served by uid.
    assert set(before) == set(emulator.served_uids(**TRIAGE)) and len(before) >= 300
    uploaded = emulator.upload("acme", "inbox", 7)
    source.read(cache=cache)  # incremental: PyAirbyte hands back the state it stored
    after = [row["uid"] for row in cache["stream_results"]]
    assert sorted(after) == sorted(before + uploaded), "the second sync must deliver the new comments only"
