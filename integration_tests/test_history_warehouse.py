"""Predictions against reviewed labels in real warehouses (DuckDB and PostgreSQL, through PyAirbyte).

`dataset_comments`, `dataset_comment_labels` and `stream_label_thresholds` are synced from the
emulator; the rows of each table and the docs' precision/recall SQL (docs/sql/predictions_vs_reviewed.sql,
included verbatim in docs/commsmining.md) are checked against the truth computed here from the
emulator's world (the labels it has people review, the probabilities it predicts, each stream's
thresholds), not from the connector's code.
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from commsmining_emulator import Emulator, dataset_export
from integration_tests.conftest import connector_config
from integration_tests.test_warehouses import _duckdb_cache, _postgres_cache, postgres  # noqa: F401 (fixture)

os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
pytestmark = pytest.mark.xdist_group("pyairbyte")
from sqlalchemy import text  # noqa: E402  (PyAirbyte's dependency)

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "docs" / "sql" / "predictions_vs_reviewed.sql"
DOCS = ROOT / "docs" / "commsmining.md"
TABLES = ["dataset_comments", "dataset_comment_labels", "stream_label_thresholds"]
CUTOFF = 0.5  # the SQL's `cutoff`


def predictions_vs_reviewed_sql() -> str:
    return SQL.read_text()


def test_the_docs_show_the_tested_sql_verbatim():
    assert predictions_vs_reviewed_sql().strip() in DOCS.read_text()


class Truth:
    """Rows per table and, per (project, dataset, stream, label), the precision/recall the SQL must give."""

    def __init__(self, emu: Emulator):
        world = emu.world
        self.rows = {table: 0 for table in TABLES}
        self.metrics: Dict[Tuple[str, str, str, str], Tuple[Any, ...]] = {}
        for (project, name), ds in world.datasets.items():
            version = dataset_export.model_version(ds)
            reviewed_comments = []
            for i in range(ds.total()):
                comment = dataset_export.export_comment(ds, i)
                if comment is None:
                    continue
                assigned = set(dataset_export.reviewed_labels(world.seed, comment, version))
                predicted = dict(dataset_export.predicted_labels(comment["id"], version))
                self.rows["dataset_comments"] += 1
                self.rows["dataset_comment_labels"] += len(assigned) + len(predicted)
                if assigned:
                    reviewed_comments.append((assigned, predicted))
            for stream in ds.streams.values():
                self.rows["stream_label_thresholds"] += len(stream.thresholds)
                for label, threshold in stream.thresholds.items():
                    pairs = [(label in a, p.get(label, 0.0)) for a, p in reviewed_comments if label in a or label in p]
                    if pairs:
                        self.metrics[(project, name, stream.name, label)] = (threshold, *_metrics(pairs, threshold), *_metrics(pairs, CUTOFF))


def _metrics(pairs, threshold):
    reviewed = sum(1 for assigned, _ in pairs if assigned)
    predicted = sum(1 for _, probability in pairs if probability >= threshold)
    tp = sum(1 for assigned, probability in pairs if assigned and probability >= threshold)
    return (tp / predicted if predicted else None), (tp / reviewed if reviewed else None)


def _query(cache, sql: str, warehouse: str):
    with cache.get_sql_engine().connect() as conn:
        conn.execute(text("SET search_path TO commsmining" if warehouse == "postgres" else "SET search_path = 'commsmining'"))
        return [tuple(row) for row in conn.execute(text(sql))]


def _close(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(float(a) - b) <= 0.0011)


@pytest.mark.runs_long(40)
@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_precision_and_recall_in_plain_sql_match_the_emulators_truth(warehouse, tmp_path, request, pyairbyte_source):
    with Emulator(seed=7, comments=150) as emu:
        if warehouse == "postgres":
            cache = _postgres_cache(tmp_path, request.getfixturevalue("postgres"))
            with cache.get_sql_engine().begin() as conn:
                conn.execute(text("DROP SCHEMA IF EXISTS commsmining CASCADE"))
                conn.execute(text("CREATE SCHEMA commsmining"))
        else:
            cache = _duckdb_cache(tmp_path)
        config = connector_config(emu, streams=[], start_date="2023-12-01T00:00:00Z")
        source = pyairbyte_source(config, TABLES)
        source.read(cache=cache)
        truth = Truth(emu)

    rows = {t: _query(cache, f"SELECT count(*) FROM {t}", warehouse)[0][0] for t in TABLES}
    assert rows == truth.rows
    for configured in source.configured_catalog.streams:
        columns = ", ".join(path[0] for path in configured.primary_key)
        distinct = _query(cache, f"SELECT count(*) FROM (SELECT DISTINCT {columns} FROM {configured.stream.name}) AS k", warehouse)
        assert distinct[0][0] == rows[configured.stream.name], f"the key of {configured.stream.name} merges two rows"

    answer = {tuple(row[:4]): row[4:] for row in _query(cache, predictions_vs_reviewed_sql(), warehouse)}
    assert set(answer) == set(truth.metrics)
    for key, (threshold, p_t, r_t, p_c, r_c) in truth.metrics.items():
        got = answer[key]
        assert _close(got[0], threshold), (key, got)
        assert all(_close(g, t) for g, t in zip((got[3], got[4], got[5], got[6]), (p_t, r_t, p_c, r_c))), (key, got, truth.metrics[key])
    assert any(value[1] is not None for value in truth.metrics.values()), "the emulator's data must give the question an answer"
    print(f"\n{warehouse}: rows {json.dumps(rows)} (truth {json.dumps(truth.rows)}); {len(answer)} (stream, label) rows of precision/recall")
