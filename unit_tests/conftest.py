"""Shared helpers for unit tests: configs, catalogs, `/results` bodies and a read runner."""

from typing import Any, Dict, List, Optional

import pytest
from airbyte_cdk.models import SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput, read
from airbyte_cdk.test.state_builder import StateBuilder

from source_commsmining import SourceCommsmining

BASE = "https://acme.reinfer.io/api"
TOKEN = "tok-SECRET-9f8e7d"
# What a message asking for a stream reset's permissions says (project acme), as a user reads it.
RESET_NEEDS = """"Consume streams" (IXP: "Stream - Consume") and "View labels" on project 'acme' (granted by the IXP Developer"""


def config(**overrides: Any) -> Dict[str, Any]:
    base = {
        "api_endpoint": "https://acme.reinfer.io",
        "api_token": TOKEN,
        "streams": [{"project": "acme", "dataset": "collections", "stream": "triage"}],
        "max_retries": 2,
        # Tests of reading start where the mocked stream is; the start reset is tested on its own (test_resume_protocol.py).
        "start_position": "current",
    }
    base.update(overrides)
    return base


def catalog(*names: str, sync_mode: Optional[SyncMode] = None):
    builder = CatalogBuilder()
    for name in names:
        builder = builder.with_stream(name, sync_mode or (SyncMode.full_refresh if name == "sources" else SyncMode.incremental))
    return builder.build()


def results_state(entries: List[Dict[str, Any]]):
    return StateBuilder().with_stream_state("stream_results", {"states": entries}).build()


def stream_url(project="acme", dataset="collections", stream="triage", action="results") -> str:
    return f"{BASE}/v1/datasets/{project}/{dataset}/streams/{stream}/{action}"


MODEL_VERSION = 7


def definition(m, project="acme", dataset="collections", stream="triage", model: Any = None):
    """Mocks `GET .../streams/<stream>`: the reader reads it for `model_version` at a stream's first prediction.

    `model` None gives the default `{"version": MODEL_VERSION}`; pass False for a stream without a model.
    """
    model = {"version": MODEL_VERSION, "label_thresholds": []} if model is None else (model or None)
    body = {"id": f"id-{stream}", "dataset_id": "ds", "name": stream, "title": "", "description": "",
            "created_at": "2024-01-01T00:00:00Z", "updated_at": None, "comment_filter": None, "model": model}
    return m.get(f"{BASE}/v1/datasets/{project}/{dataset}/streams/{stream}", json={"status": "ok", "stream": body})


def comment(i: int, **extra: Any) -> Dict[str, Any]:
    c = {
        "uid": f"18ba5ce699f8da1f.{i:016x}",
        "id": f"{i:016x}",
        "source_id": "18ba5ce699f8da1f",
        "thread_id": f"thread-{i // 2}",
        "timestamp": f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
        "created_at": f"2024-02-01T00:{i // 60:02d}:{i % 60:02d}.000000Z",
        "last_modified": "2024-02-02T00:00:00Z",
        "user_properties": {"string:Sender": "alice@acme.com"},
        "messages": [{"from": "alice@acme.com", "to": ["bob@acme.com"], "subject": {"text": f"Invoice {i}"}, "body": {"text": "Hi"}}],
        "attachments": [],
    }
    c.update(extra)
    return c


PREDICTION = {
    "taxonomies": [
        {
            "name": "default",
            "labels": [
                {"name": "Billing > Refund", "occurrence_confidence": {"value": 0.93, "thresholds": ["stream", "balanced"]},
                 "extraction_confidence": {"value": 0.5, "thresholds": []}, "fields": []},
                {"name": "Urgent", "occurrence_confidence": {"value": 0.2, "thresholds": []}},
            ],
            "general_fields": [{"name": "monetary-quantity", "value": {"formatted": "636.00 GBP"}}],
        }
    ]
}


def batch(indices, continuation: str, more: bool, num_filtered: int = 0, prediction=PREDICTION) -> Dict[str, Any]:
    return {
        "status": "ok",
        "results": [{"comment": comment(i), "prediction": prediction, "continuation": f"c-{i}"} for i in indices],
        "num_filtered": num_filtered,
        "more_results": more,
        "continuation": continuation,
    }


def run_read(cfg, cat, state=None, expecting_exception: bool = False) -> EntrypointOutput:
    return read(SourceCommsmining(catalog=cat, config=cfg, state=state), cfg, cat, state, expecting_exception=expecting_exception)


def run_cli(args: List[str], files: Dict[str, Any], capsys) -> List[Dict[str, Any]]:
    """Runs `source-commsmining` in-process (run.run, as the console script) and returns its messages."""
    import json
    import tempfile
    from pathlib import Path

    from source_commsmining.run import run

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for flag, content in files.items():
            paths[flag] = str(Path(tmp) / f"{flag}.json")
            Path(paths[flag]).write_text(json.dumps(content))
        argv = list(args) + [item for flag, path in paths.items() for item in (f"--{flag}", path)]
        capsys.readouterr()
        try:
            run(argv)
        except SystemExit:
            pass
        out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def run_check(cfg, capsys) -> Dict[str, Any]:
    """`check` through the console script's entrypoint; returns the CONNECTION_STATUS."""
    messages = run_cli(["check"], {"config": cfg}, capsys)
    return next(m["connectionStatus"] for m in messages if m["type"] == "CONNECTION_STATUS")


def all_output(output: EntrypointOutput) -> str:
    """Every message the run printed, as text, to search for things that must never appear."""
    import orjson
    from airbyte_cdk.models import AirbyteMessageSerializer

    messages = (
        output.records + output.state_messages + output.logs + output.trace_messages + output.connection_status_messages
    )
    return "\n".join(orjson.dumps(AirbyteMessageSerializer.dump(m)).decode() for m in messages)


@pytest.fixture
def no_sleep(monkeypatch):
    """Backoff waits are real time.sleep calls in the CDK; tests do not need to wait them out."""
    import time as _time

    monkeypatch.setattr(_time, "sleep", lambda seconds: None)


@pytest.fixture(autouse=True)
def live_sync():
    """The "sync is live" flag is process-wide (liveness.py): a test that ends it (a signal, a closed stdout)
    must not stop the advances of the tests after it."""
    from source_commsmining import liveness

    liveness.start()
    yield
    liveness.start()


def connection_spec():
    """The connector's connection specification, as `spec` prints it."""
    import logging

    from source_commsmining import SourceCommsmining

    return SourceCommsmining().spec(logging.getLogger("test")).connectionSpecification


def refused_config(**overrides):
    """The config_error that validating `config(**overrides)` against the spec raises."""
    from airbyte_cdk.utils.traced_exception import AirbyteTracedException

    from source_commsmining.config import validate_config

    with pytest.raises(AirbyteTracedException) as raised:
        validate_config(config(**overrides), connection_spec())
    assert raised.value.failure_type.value == "config_error"
    return raised.value
