"""The Source contract as the CDK's standard tests and PyAirbyte use it: a source built with no arguments checks, discovers and reads with what each call is given; configure writes no file with the token."""

import logging

import pytest
import requests_mock
from airbyte_cdk.models import FailureType, Status, SyncMode
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
    """The state given to `read` is the one resumed from, not the constructor's (here none)."""
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
    assert "`credentials`" in raised.value.message and "`api_endpoint`" not in raised.value.message


def test_check_through_the_console_script_names_the_missing_field(capsys):
    cfg = config()
    del cfg["api_token"]
    status = next(m["connectionStatus"] for m in run_cli(["check"], {"config": cfg}, capsys) if m["type"] == "CONNECTION_STATUS")
    assert status["status"] == "FAILED" and "`credentials`" in status["message"] and "`api_endpoint`" not in status["message"]


def test_configure_writes_no_config_file_with_the_token(tmp_path):
    """The CDK's configure() writes config.json (token in clear) to its temporary directory: ours does not."""
    source = SourceCommsmining()
    assert source.configure(config(), str(tmp_path))["credentials"]["api_token"] == config()["api_token"]  # as migrated
    assert list(tmp_path.iterdir()) == []
