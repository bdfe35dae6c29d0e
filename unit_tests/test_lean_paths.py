"""The connector on the CDK's public paths (issue #14): the Source contract as the CDK's standard
tests and PyAirbyte use it, an open spec, and no patches of the CDK or its dependencies."""

import json
import logging
import os
import subprocess
import sys

import pytest
import requests_mock
from airbyte_cdk.models import AirbyteStateMessageSerializer, FailureType, Status, SyncMode
from airbyte_cdk.test.entrypoint_wrapper import discover, read
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_commsmining import SourceCommsmining
from unit_tests.conftest import BASE, batch, catalog, config, results_state, run_cli, stream_url

LOGGER = logging.getLogger("airbyte")
STREAM = {"status": "ok", "stream": {"name": "triage", "model": {"version": 1}}}


def _mock_results(mock, *bodies):
    mock.get(stream_url(action="")[:-1], json=STREAM)
    mock.get(stream_url(), [{"json": body} for body in bodies])
    mock.post(stream_url(action="advance"), json={"status": "ok"})
    mock.post(stream_url(action="reset"), json={"status": "ok"})


# ------------------------------------------------------------------ the Source contract, no constructor arguments
def test_a_source_built_with_no_arguments_checks_the_config_it_is_given():
    with requests_mock.Mocker() as mock:
        mock.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        mock.get(stream_url(action="")[:-1], json=STREAM)
        status = SourceCommsmining().check(LOGGER, config())
        assert mock.call_count == 2
    assert status.status == Status.SUCCEEDED, status.message


def test_a_source_built_with_no_arguments_discovers_with_the_config_it_is_given():
    streams = {s.name: s for s in discover(SourceCommsmining(), config()).catalog.catalog.streams}
    assert streams["stream_results"].supported_sync_modes == [SyncMode.incremental]
    assert {"sources", "stream_results", "comments"} <= set(streams)


def test_a_source_built_with_no_arguments_reads_with_the_config_and_state_it_is_given():
    """The state given to `read` is the one resumed from (the old code read the constructor's, here none)."""
    state = results_state([{"partition": {"project": "acme", "dataset": "collections", "stream": "triage"},
                            "cursor": {"continuation": "c-state", "created_at": None}}])
    cfg = config(rewind_on_resume=False)
    with requests_mock.Mocker() as mock:
        _mock_results(mock, batch(range(3), "c1", False))
        output = read(SourceCommsmining(), cfg, catalog("stream_results"), state)
        advances = [r.json() for r in mock.request_history if r.path.endswith("/advance")]
    assert not output.errors, output.errors
    assert len(output.records) == 3
    assert advances[0] == {"sequence_id": "c-state"} and advances[-1] == {"sequence_id": "c1"}


def test_a_missing_token_is_named_as_the_missing_field():
    cfg = config()
    del cfg["api_token"]
    with pytest.raises(AirbyteTracedException) as raised:
        SourceCommsmining().check(LOGGER, cfg)
    assert raised.value.failure_type == FailureType.config_error
    assert "`api_token`" in raised.value.message and "`api_endpoint`" not in raised.value.message


def test_check_through_the_console_script_names_the_missing_field(capsys):
    cfg = config()
    del cfg["api_token"]
    status = next(m["connectionStatus"] for m in run_cli(["check"], {"config": cfg}, capsys) if m["type"] == "CONNECTION_STATUS")
    assert status["status"] == "FAILED" and "`api_token`" in status["message"] and "`api_endpoint`" not in status["message"]


def test_configure_writes_no_config_file_with_the_token(tmp_path):
    """The CDK's configure() writes config.json (token in clear) to its temporary directory: ours does not."""
    source = SourceCommsmining()
    assert source.configure(config(), str(tmp_path)) == config()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the spec (CAT's spec checks)
def _objects(schema, path="spec"):
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield path, schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{path}[{index}]")


def test_every_object_in_the_spec_allows_additional_properties():
    """CAT's test_additional_properties_is_true."""
    spec = SourceCommsmining().spec(LOGGER).connectionSpecification
    objects = dict(_objects(spec))
    assert "spec.properties.streams.items" in objects
    assert {path: o.get("additionalProperties") for path, o in objects.items() if o.get("additionalProperties") is not True} == {}


def test_an_unknown_key_in_a_streams_entry_is_ignored_with_a_warning_naming_it(caplog):
    entry = {"project": "acme", "dataset": "collections", "stream": "triage", "strem_filter": "x"}
    with requests_mock.Mocker() as mock:
        mock.get(f"{BASE}/v1/sources", json={"status": "ok", "sources": []})
        mock.get(stream_url(action="")[:-1], json=STREAM)
        with caplog.at_level(logging.WARNING, logger="airbyte"):
            status = SourceCommsmining().check(LOGGER, config(streams=[entry]))
    assert status.status == Status.SUCCEEDED
    assert any("streams[0]" in r.getMessage() and "'strem_filter'" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ states the CDK would silently ignore
@pytest.mark.parametrize(
    "state, words",
    [
        ({"stream_results": {"states": []}}, "legacy state shape"),
        ([{"type": "LEGACY", "data": {"stream_results": {}}}], "type LEGACY"),
        ([{"stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": []}}}], "no `type`"),
    ],
)
def test_read_state_refuses_what_the_cdk_would_ignore(tmp_path, state, words):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(AirbyteTracedException) as raised:
        SourceCommsmining.read_state(str(path))
    assert raised.value.failure_type == FailureType.config_error
    assert words in raised.value.message and "stream_results" in raised.value.message


def test_read_state_still_reads_stream_and_global_states(tmp_path):
    stream = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_results"}, "stream_state": {"states": []}}}
    path = tmp_path / "state.json"
    path.write_text(json.dumps([stream]))
    assert [AirbyteStateMessageSerializer.dump(m) for m in SourceCommsmining.read_state(str(path))] == [stream]


# ------------------------------------------------------------------ no patches
def test_importing_the_connector_patches_nothing():
    """quick_start.py (a monkeypatch of attributes_doc, for start-up time) is gone."""
    probe = (
        "import gc; threshold = gc.get_threshold();"
        "import attributes_doc, attributes_doc._base as base; original = attributes_doc.get_attributes_doc;"
        "import source_commsmining.run;"
        "assert attributes_doc.get_attributes_doc is original is base.get_attributes_doc;"
        "assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold, gc.get_threshold()"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)


@pytest.mark.parametrize("setting, tuned", [(None, True), ("0", False)])
def test_the_console_script_tunes_its_collector_unless_told_not_to(setting, tuned):
    """run._tune_gc, a speed measure kept (`make bench`'s CPU guard counts it taken out); in-process callers keep theirs."""
    probe = (
        "import gc, sys; threshold = gc.get_threshold(); sys.argv = ['source-commsmining', 'spec'];"
        "from source_commsmining.run import run; run();"
        "tuned = gc.get_freeze_count() > 0 and gc.get_threshold()[0] == 10_000;"
        "assert tuned or gc.get_threshold() == threshold; sys.stderr.write(f'tuned={tuned}')"
    )
    env = {key: value for key, value in os.environ.items() if key != "SOURCE_COMMSMINING_GC_TUNING"}
    if setting is not None:
        env["SOURCE_COMMSMINING_GC_TUNING"] = setting
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert f"tuned={tuned}" in result.stderr


def test_an_in_process_run_leaves_the_collector_alone(capsys):
    import gc

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    run_cli(["spec"], {}, capsys)
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
