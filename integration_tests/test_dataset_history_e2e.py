"""dataset_comments and dataset_comment_labels end to end: the console script against the emulator's dataset export over HTTP.

Truth comes from the emulator's world (commsmining_emulator.dataset_export: each dataset's comments in
their latest version, the labels a person reviewed, the model's predicted labels), not from the connector.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import jsonschema
import pytest

from commsmining_emulator import Emulator, dataset_export
from commsmining_emulator.generator import fmt_ms
from commsmining_emulator.world import ApiError
from integration_tests.conftest import connector_config, run_connector

COMMENTS, LABELS = "dataset_comments", "dataset_comment_labels"
DAY = 86_400_000
SCHEMAS = Path(__file__).resolve().parent.parent / "source_commsmining" / "schemas"


def catalog(*names: str, mode: str = "incremental") -> Dict[str, Any]:
    return {"streams": [{"stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                                    "source_defined_cursor": True, "default_cursor_field": ["created_at"]},
                         "sync_mode": mode, "destination_sync_mode": "append_dedup", "cursor_field": ["created_at"]}
                        for name in names]}


def config(emu: Emulator, **extra: Any) -> Dict[str, Any]:
    # From December 2023 (the emulator's uploads start on 2024-01-01): small windows from 2015 would be thousands of calls.
    extra = {"start_date": "2023-12-01T00:00:00Z", "dataset_comments_lookback_days": 0, **extra}
    return connector_config(emu, streams=[], **extra)


def rows(run, stream: str) -> List[Dict[str, Any]]:
    return [r["data"] for r in run.records if r["stream"] == stream]


def truth(emu: Emulator) -> Dict[Tuple[str, str, str], Dict[str, Any]]:
    """(project, dataset, uid) -> the comment as the export serves it, for every dataset of the world."""
    out = {}
    for (project, name), ds in emu.world.datasets.items():
        for i in range(ds.total()):
            comment = dataset_export.export_comment(ds, i)
            if comment is not None:
                out[(project, name, comment["uid"])] = comment
    return out


def truth_labels(emu: Emulator) -> Set[Tuple[str, str, str, str, str]]:
    out = set()
    for (project, name, uid), comment in truth(emu).items():
        ds = emu.world.datasets[(project, name)]
        version = dataset_export.model_version(ds)
        out |= {(project, name, uid, "reviewed", label) for label in dataset_export.reviewed_labels(emu.world.seed, comment, version)}
        out |= {(project, name, uid, "predicted", label) for label, _ in dataset_export.predicted_labels(comment["id"], version)}
    return out


def cursors(state: List[Dict[str, Any]], emu: Emulator) -> Dict[str, str]:
    """dataset name -> its cursor in a `dataset_comments` state message."""
    names = {ds.id: name for (_, name), ds in emu.world.datasets.items()}
    blob = state[-1]["stream"]["stream_state"]
    return {names[entry["partition"]["dataset_id"]]: entry["cursor"]["created_at"] for entry in blob["states"]}


def last_state(run, stream: str) -> List[Dict[str, Any]]:
    return [[s for s in run.states if s["stream"]["stream_descriptor"]["name"] == stream][-1]]


@pytest.fixture
def emu():
    with Emulator(seed=7, comments=1000) as emu:
        yield emu


def test_first_sync_reads_every_comment_of_every_dataset_once_with_its_reviewed_and_predicted_labels(emu):
    before = {(p, d, s): emu.stream_state(p, d, s)["position"] for (p, d), ds in emu.world.datasets.items() for s in ds.streams}
    run = run_connector("read", config(emu), catalog(COMMENTS, LABELS))
    assert run.returncode == 0, run.stderr
    expected = truth(emu)
    comments = rows(run, COMMENTS)
    keys = [(r["project"], r["dataset"], r["uid"]) for r in comments]
    assert len(keys) == len(set(keys)) == len(expected)
    assert set(keys) == set(expected)
    for record in comments:
        comment = expected[(record["project"], record["dataset"], record["uid"])]
        assert record["comment"] == comment  # the latest version, whole
        assert (record["created_at"], record["timestamp"], record["source_id"]) == (comment["created_at"], comment["timestamp"], comment["source_id"])
        assert record["has_reviewed_labels"] == bool(record["annotations"]["labels"]["assigned"])
    assert 0.15 < sum(r["has_reviewed_labels"] for r in comments) / len(comments) < 0.35
    labels = rows(run, LABELS)
    label_keys = [(r["project"], r["dataset"], r["uid"], r["kind"], r["label"], r["occurrence"]) for r in labels]
    assert len(label_keys) == len(set(label_keys))
    assert {key[:5] for key in label_keys} == truth_labels(emu)
    assert all(r["probability"] is not None for r in labels if r["kind"] == "predicted")
    for stream, records in ((COMMENTS, comments), (LABELS, labels)):  # the declared schemas are true to what is sent
        validator = jsonschema.Draft7Validator(json.loads((SCHEMAS / f"{stream}.json").read_text()))
        assert not [error.message for record in records for error in validator.iter_errors(record)][:3], stream
    # Both streams end with the same state, and nothing moved a Communications Mining stream.
    assert last_state(run, COMMENTS)[0]["stream"]["stream_state"] == last_state(run, LABELS)[0]["stream"]["stream_state"]
    after = {(p, d, s): emu.stream_state(p, d, s) for (p, d, s) in before}
    assert all(after[key]["position"] == before[key] and after[key]["advances"] == 0 for key in before)


def test_a_comment_uploaded_exactly_on_a_window_edge_is_read_once(emu):
    # A dataset whose first comment was uploaded exactly on a whole second, read in one-day windows from a
    # day before it: that upload is exactly on the first window edge.
    ds = dataset_export.add_dataset(emu.world, "acme", "edge", 100, step_ms=60_000)
    edge = fmt_ms(ds.base_ms)
    # The emulator's `to` is inclusive: the window ending on the edge serves the edge comment as well.
    served = dataset_export.export(emu.world, ds, {"order_by": "created_at", "from": fmt_ms(ds.base_ms - DAY), "to": edge})
    assert [c["comment"]["created_at"] for c in served["comments"]] == [edge]
    run = run_connector("read", config(emu, start_date=fmt_ms(ds.base_ms - DAY), dataset_comments_window_days=1), catalog(COMMENTS))
    assert run.returncode == 0, run.stderr
    read = [r for r in rows(run, COMMENTS) if r["dataset"] == "edge"]
    assert [r["created_at"] for r in read].count(edge) == 1
    assert len(read) == len({r["uid"] for r in read}) == 100


def test_second_sync_reads_only_new_uploads_and_the_lookback(emu):
    first = run_connector("read", config(emu), catalog(COMMENTS, LABELS))
    assert first.returncode == 0, first.stderr
    state = last_state(first, COMMENTS) + last_state(first, LABELS)
    cursor = cursors(state[:1], emu)
    new = set(emu.upload("globex", "claims", 3))
    old = max((r for r in rows(first, COMMENTS) if r["dataset"] == "claims-ds" and r["created_at"] < cursor["claims-ds"]),
              key=lambda r: r["created_at"])  # uploaded an hour before the cursor
    emu.reupload("globex", "claims", old["uid"], text="corrected")

    second = run_connector("read", config(emu), catalog(COMMENTS, LABELS), state)
    assert second.returncode == 0, second.stderr
    read = rows(second, COMMENTS)
    # Only what was uploaded at or after each dataset's cursor (the comment on the cursor itself again).
    assert all(r["created_at"] >= cursor[r["dataset"]] for r in read)
    assert new <= {r["uid"] for r in read if r["dataset"] == "claims-ds"}
    assert len(read) <= len(new) + len(cursor)
    assert {r["uid"] for r in rows(second, LABELS)} <= {r["uid"] for r in read}
    assert old["uid"] not in {r["uid"] for r in read}  # a re-upload keeps its created_at: outside a lookback of 0

    # With a lookback of a day, the re-upload (first uploaded within a day of the cursor) is read, in its new version.
    third = run_connector("read", config(emu, dataset_comments_lookback_days=1), catalog(COMMENTS, LABELS),
                          last_state(second, COMMENTS) + last_state(second, LABELS))
    assert third.returncode == 0, third.stderr
    again = {r["uid"]: r for r in rows(third, COMMENTS)}
    assert again[old["uid"]]["comment"]["messages"][0]["body"]["text"] == "corrected"


def test_an_interrupted_sync_resumes_each_dataset_where_it_stopped(emu, monkeypatch):
    # 1,000 comments a minute apart read in three-hour windows: six windows, read in parallel.
    ds = dataset_export.add_dataset(emu.world, "acme", "recent", 1000, step_ms=60_000)
    cfg = config(emu, start_date=fmt_ms(ds.base_ms), dataset_comments_window_days=0.125)
    original = dataset_export.export
    failing_from = fmt_ms(ds.base_ms + 9 * 3_600_000)  # the fourth window's start: three are read, then it fails

    def failing(world, dataset, body):
        if dataset is ds and (body.get("from") or "") >= failing_from:
            raise ApiError(400, "refused by the test")
        return original(world, dataset, body)

    monkeypatch.setattr(dataset_export, "export", failing)
    first = run_connector("read", cfg, catalog(COMMENTS))
    assert first.returncode != 0
    state = last_state(first, COMMENTS)
    stopped = cursors(state, emu)["recent"]
    assert fmt_ms(ds.base_ms) < stopped < failing_from  # windows read to the end moved the cursor; the failed one did not

    monkeypatch.setattr(dataset_export, "export", original)
    second = run_connector("read", cfg, catalog(COMMENTS), state)
    assert second.returncode == 0, second.stderr
    resumed = [r for r in rows(second, COMMENTS) if r["dataset"] == "recent"]
    assert all(r["created_at"] >= stopped for r in resumed)
    assert len(resumed) < 1000 * 0.75
    read = {r["uid"] for r in rows(first, COMMENTS) + resumed if r["dataset"] == "recent"}
    assert read == {uid for (_, name, uid) in truth(emu) if name == "recent"}


def test_a_token_without_the_export_permission_fails_with_a_config_error_naming_it(emu):
    token = emu.add_token("tok-sources-only-1234", permissions=["View sources"])
    run = run_connector("read", config(emu, api_token=token), catalog(COMMENTS, LABELS))
    assert run.returncode != 0
    errors = [m["trace"]["error"] for m in run.of_type("TRACE") if m["trace"]["type"] == "ERROR"]
    assert any(e["failure_type"] == "config_error" and "Dataset - Export" in e["message"] for e in errors), errors
    assert token not in run.raw + run.stderr


@pytest.mark.parametrize("names", [(COMMENTS,), (COMMENTS, LABELS)], ids=["comments alone", "with their labels"])
def test_a_read_holds_at_most_the_backlog_of_records_unwritten_and_delivers_every_comment(emu, monkeypatch, names):
    """Partition threads wait for the output (backlog.py) rather than fill the CDK's queue; nothing is lost for it."""
    from source_commsmining import backlog

    started = []
    start = backlog.start

    def start_and_keep(waiting):
        started.append(waiting)
        return start(waiting)

    monkeypatch.setattr(backlog, "LIMIT", 6)
    monkeypatch.setattr(backlog, "start", start_and_keep)
    run = run_connector("read", config(emu, dataset_export_page_size=4), catalog(*names))
    assert run.returncode == 0, run.stderr
    keys = [(r["project"], r["dataset"], r["uid"]) for r in rows(run, COMMENTS)]
    assert len(keys) == len(set(keys)) == len(truth(emu))
    [waiting] = started
    assert 4 <= waiting.most <= 6  # a page's places (4) taken, and never more than the limit (6) at once
    assert backlog.current() is None  # the read's backlog ends with it
