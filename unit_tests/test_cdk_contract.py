"""The CDK behaviours the delivery guarantee stands on. An airbyte-cdk upgrade that breaks one fails here.

ResultsReader advances a stream only after (1) the generator was resumed past the STATE's
yield, which must mean the entrypoint already printed it, and (2) flush_stdout() pushed the
PrintBuffer through to the file descriptor.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import airbyte_cdk

PROBE = textwrap.dedent(
    """
    import os, sys
    from airbyte_cdk.models import AirbyteMessage, AirbyteStateMessage, AirbyteStateType, AirbyteStreamState, StreamDescriptor, AirbyteStateBlob, Type
    from source_commsmining import messages
    from source_commsmining.run import CommsminingEntrypoint
    from airbyte_cdk.logger import PRINT_BUFFER

    out_path = sys.argv[1]

    def on_disk():
        with open(out_path) as f:
            return f.read()

    def generator():
        yield messages.state({"states": [{"partition": {"project": "p", "dataset": "d", "stream": "s"}, "cursor": {"continuation": "MARKER-1"}}]})
        before_flush = "MARKER-1" in on_disk()
        messages.flush_stdout()
        after_flush = "MARKER-1" in on_disk()
        os.write(2, f"before={before_flush} after={after_flush}\\n".encode())

    class FakeEntrypoint:
        def run(self, parsed):
            from airbyte_cdk.entrypoint import AirbyteEntrypoint
            yield from map(AirbyteEntrypoint.airbyte_message_to_string, generator())

    # The same loop as source_commsmining.run.run and airbyte_cdk.entrypoint.launch.
    with PRINT_BUFFER:
        for message in FakeEntrypoint().run(None):
            print(f"{message}\\n", end="")
    """
)


def test_cdk_version_is_the_pinned_one():
    assert airbyte_cdk.__version__.startswith("7.39.") if hasattr(airbyte_cdk, "__version__") else True
    from importlib.metadata import version

    assert version("airbyte-cdk").startswith("7.39.")


def test_a_yielded_state_is_on_the_fd_after_flush_even_when_stdout_is_a_pipe_or_file(tmp_path: Path):
    out = tmp_path / "stdout.txt"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    with out.open("w") as stdout:
        result = subprocess.run(
            [sys.executable, str(probe), str(out)], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin"},  # no PYTHONUNBUFFERED: the flush alone must do it
        )
    assert result.returncode == 0, result.stderr
    # Before the flush the state sits in the PrintBuffer (this is why the reader flushes at all)...
    assert "after=True" in result.stderr, result.stderr
    assert "MARKER-1" in out.read_text()


def test_launch_loop_is_what_run_reimplements():
    """run.run mirrors launch(): if launch changes shape, re-read it and update run.run."""
    import inspect

    from airbyte_cdk.entrypoint import launch

    source = inspect.getsource(launch)
    assert "with PRINT_BUFFER:" in source and "source_entrypoint.run(parsed_args)" in source
    assert 'print(f"{message}\\n", end="")' in source


def test_print_buffer_flush_writes_to_the_real_stdout():
    import inspect

    from airbyte_cdk.utils.print_buffer import PrintBuffer

    flush = inspect.getsource(PrintBuffer.flush)
    assert "sys.__stdout__.write" in flush and "sys.__stdout__.flush()" in flush


def test_http_requester_still_renders_and_sends_the_way_api_call_mirrors():
    """api._Call renders a requester once per CM stream and then calls its HttpClient directly."""
    import inspect

    from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester
    from airbyte_cdk.sources.streams.http.http_client import HttpClient

    source = inspect.getsource(HttpRequester.send_request)
    for piece in ("self._http_client.send_request(", "url=self._get_url(", "headers=self._request_headers(",
                  "params=self._request_params(", "dedupe_query_params=True", 'request_kwargs={"stream": self.stream_response}'):
        assert piece in source, piece
    parameters = inspect.signature(HttpClient.send_request).parameters
    assert {"http_method", "url", "request_kwargs", "headers", "params", "json", "dedupe_query_params"} <= set(parameters)


def test_entrypoint_run_read_branch_is_what_commsmining_entrypoint_mirrors():
    """CommsminingEntrypoint.run copies AirbyteEntrypoint.run's `read` steps; a CDK that changes them fails here."""
    import inspect

    from airbyte_cdk.entrypoint import AirbyteEntrypoint

    source = inspect.getsource(AirbyteEntrypoint.run)
    steps = (
        "source_spec: ConnectorSpecification = self.source.spec(self.logger)",
        "tempfile.TemporaryDirectory(",
        "os.environ[ENV_REQUEST_CACHE_PATH] = (",
        "raw_config = self.source.read_config(parsed_args.config)",
        "config = self.source.configure(raw_config, temp_dir)",
        "self._emit_queued_messages(self.source)",
        "config_catalog = self.source.read_catalog(parsed_args.catalog)",
        "state = self.source.read_state(parsed_args.state)",
        "self.read(source_spec, config, config_catalog, state)",
    )
    for step in steps:
        assert step in source, step
    assert source.index("config_catalog = ") < source.index("self.read(source_spec")


def test_entrypoint_run_is_the_version_commsmining_entrypoint_was_checked_against():
    """Any change to AirbyteEntrypoint.run (even a step added where the test above does not look) fails here.

    When it does: compare the CDK's new `run` with CommsminingEntrypoint.run's read branch, bring
    ours in line, then put the new hash here.
    """
    import hashlib
    import inspect

    from airbyte_cdk.entrypoint import AirbyteEntrypoint

    digest = hashlib.sha256(inspect.getsource(AirbyteEntrypoint.run).encode()).hexdigest()
    assert digest == "b5d0edc048e7e051eabdfcfa865ab41c5c1bc3b8fc02d2f71c411530e5d9d018", digest
