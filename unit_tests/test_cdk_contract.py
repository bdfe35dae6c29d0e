"""The CDK behaviours the connector stands on. An airbyte-cdk release that breaks one fails here.

`make test-cdk-latest` runs this file (with the other unit tests) against the newest airbyte-cdk
7.x as well. What the connector relies on beyond the CDK's documented surface, and why:

1. Delivery guarantee: ResultsReader advances a stream only after (a) the generator was resumed
   past the STATE's yield, which must mean the entrypoint already printed it, and (b)
   messages.flush_stdout() pushed the CDK's PrintBuffer through to the file descriptor.
2. The declarative source builds streams, requesters and its state manager from its
   constructor's arguments and keeps the transformed config as `_config`: SourceCommsmining
   builds a source for the arguments a call is given (`_for`) and reads `_config`.
   `stream_results`' requesters are built from the manifest's definitions with the source's own
   component factory (`_constructor`), so they share its message repository.
3. AirbyteEntrypoint.check validates the config through `validate_connection` (a public static
   method CommsminingEntrypoint overrides to name the field), and replaces the secret filter's
   list at every verb (`set_up_secret_filter`), so the token's other forms are registered after it.
4. The response deadline (transport.py) rides on requests' response hook and on the CDK's
   HttpClient applying the session's auth to every attempt.
5. Signing in as an External Application (auth.py): the declarative OAuth authenticator builds its
   token request body from grant_type, client_id, client_secret and `refresh_request_body` (so
   `scope`); get_access_token renews through refresh_and_set_access_token -> refresh_access_token
   when token_has_expired (which reads get_token_expiry_date), under the class-wide lock;
   refresh_and_set_access_token skips the renewal when `access_token` changed while it waited; the
   HttpClient calls the session auth's refresh_and_set_access_token on REFRESH_TOKEN_THEN_RETRY; the
   factory builds an authenticator per requester (so the token is shared outside the instances);
   a SelectiveAuthenticator returns the chosen authenticator itself; the spec's config_migrations
   run when the source is built and print the migrated config as a CONTROL message.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.models import Status, Type
from airbyte_cdk.utils.airbyte_secrets_utils import filter_secrets

from source_commsmining import SourceCommsmining
from source_commsmining.api import REQUESTERS
from source_commsmining.errors import register_secret
from source_commsmining.entrypoint import CommsminingEntrypoint
from unit_tests.conftest import config

PROBE = textwrap.dedent(
    """
    import os, sys
    from airbyte_cdk.entrypoint import AirbyteEntrypoint
    from source_commsmining import messages
    from source_commsmining.masking import masked_output

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

    # The console script's loop (launch.launch): each line written through masked_output, as launch() prints.
    with masked_output() as write:
        for message in generator():
            write(AirbyteEntrypoint.airbyte_message_to_string(message))
    """
)


def test_the_supported_cdk_is_7x_from_7_39_1():
    from importlib.metadata import version

    major, minor, patch = (int(part) for part in version("airbyte-cdk").split(".")[:3])
    assert major == 7 and (minor, patch) >= (39, 1)


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
    assert "after=True" in result.stderr, result.stderr
    assert "MARKER-1" in out.read_text()


def test_launch_prints_each_message_through_the_print_buffer_as_run_does():
    """launch.launch mirrors the CDK's launch(): if launch changes shape, re-read it and update masking.masked_output."""
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


def test_the_declarative_source_keeps_the_transformed_config_of_its_constructor():
    """Why `_for` exists and what it reads: the constructor's config, transformed by the manifest."""
    built = SourceCommsmining(config=config())
    assert built._config["api_base_url"] == "https://acme.reinfer.io/api"
    assert SourceCommsmining()._config == {}
    assert built._for(built._config) is built and SourceCommsmining()._for(config())._config == built._config


def test_the_source_builds_requesters_from_the_manifest_definitions_with_its_component_factory():
    from airbyte_cdk.sources.declarative.parsers.model_to_component_factory import ModelToComponentFactory
    from airbyte_cdk.sources.declarative.requesters.http_requester import HttpRequester

    source = SourceCommsmining(config=config())
    assert isinstance(source._constructor, ModelToComponentFactory)
    api = source._api(source._config)
    assert all(isinstance(api.requester(name), HttpRequester) for name in REQUESTERS)


def test_check_validates_through_the_overridable_validate_connection(tmp_path):
    cfg = config(max_results=33)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    entrypoint = CommsminingEntrypoint(SourceCommsmining(config=cfg))
    lines = [json.loads(line) for line in entrypoint.run(entrypoint.parse_args(["check", "--config", str(path)]))]
    status = next(m["connectionStatus"] for m in lines if m["type"] == Type.CONNECTION_STATUS.value)
    assert status["status"] == Status.FAILED.value and "`max_results`" in status["message"]


def test_the_entrypoint_replaces_the_secret_list_and_register_secret_adds_the_forms_back():
    token = "tökén-secret-77"
    escaped = json.dumps(token)[1:-1]
    credentials = {"auth_type": "api_token", "api_token": token}  # a secret inside the spec's oneOf
    AirbyteEntrypoint.set_up_secret_filter({"credentials": credentials}, SourceCommsmining().spec(None).connectionSpecification)
    assert filter_secrets(token) == "****"
    register_secret(token)
    assert filter_secrets(escaped) == "****"


def test_the_response_hook_runs_before_requests_reads_the_body_and_can_fill_the_content():
    """transport.read_within_deadline (the response deadline) stands on requests, not on CDK internals:
    a response hook runs inside Session.send before the body is read, receives the send kwargs
    (stream, timeout), and the content it stores is what Response.content returns."""
    import inspect

    import requests

    send = inspect.getsource(requests.Session.send)
    assert send.index('r = dispatch_hook("response", hooks, r, **kwargs)') < send.index("r.content")
    assert "if self._content is False:" in inspect.getsource(requests.Response.content.fget)


def test_the_http_client_applies_the_session_auth_to_every_attempt():
    """The deadline hook is registered, and the liveness check (no advance or reset, nor a retry of one,
    once the sync is gone) made, by the manifest's authenticator, so the CDK's HttpClient must
    apply session.auth on the first attempt (prepare_request) and again on every retry."""
    import inspect

    from airbyte_cdk.sources.streams.http.http_client import HttpClient

    assert "self._session.auth = authenticator" in inspect.getsource(HttpClient.__init__)
    assert "self._session.prepare_request(" in inspect.getsource(HttpClient._create_prepared_request)
    assert "self._session.auth(request)" in inspect.getsource(HttpClient._send)


def test_the_stream_results_requesters_send_through_the_deadline_adapter():
    """api.CmApi.from_manifest builds the manifest's requester class (deadline_requester.DeadlineHttpRequester),
    which mounts transport.DeadlineAdapter on `HttpRequester._http_client._session` (no public way to a
    requester's session): the deadline on the status line and headers depends on it."""
    import requests

    from source_commsmining.transport import DeadlineAdapter

    source = SourceCommsmining(config=config())
    api = source._api(source._config)
    for name in REQUESTERS:
        session = api.requester(name)._http_client._session
        assert isinstance(session, requests.Session)
        for prefix in ("https://", "http://"):
            assert isinstance(session.get_adapter(prefix + "acme.reinfer.io/api"), DeadlineAdapter), (name, prefix)


def _requester_of(stream):
    """The requester of a built declarative stream (test-only walk through the CDK's private attributes)."""
    return stream._stream_partition_generator._partition_factory._retriever.requester


def test_every_declarative_stream_sends_through_the_deadline_adapter():
    """deadline_requester.DeadlineHttpRequester (the manifest's `CustomRequester`) mounts DeadlineAdapter on
    `HttpRequester._http_client._session` after the CDK built it: the declarative streams' requests (sources,
    comments, datasets, streams, label_defs, and the parents their partition routers read) are bounded whole."""
    import requests

    from source_commsmining.deadline_requester import DeadlineHttpRequester
    from source_commsmining.transport import DeadlineAdapter

    source = SourceCommsmining(config=config())
    streams = source.streams(source._config)
    assert {s.name for s in streams} >= {"sources", "comments", "datasets", "streams", "label_defs"}
    for stream in streams:
        requester = _requester_of(stream)
        assert isinstance(requester, DeadlineHttpRequester), stream.name
        session = requester._http_client._session
        assert isinstance(session, requests.Session)
        for prefix in ("https://", "http://"):
            assert isinstance(session.get_adapter(prefix + "acme.reinfer.io/api"), DeadlineAdapter), (stream.name, prefix)


def test_the_custom_requester_renders_what_the_cdks_http_requester_renders():
    """A CustomRequester is given only the fields its class annotates, and HttpRequester takes headers, query and
    bodies only as a built `request_options_provider`: DeadlineHttpRequester builds it as the CDK's factory does.
    Same definition, built both ways: same URL, query, headers, method, timeouts, authenticator and error handler."""
    from airbyte_cdk.sources.declarative.models.declarative_component_schema import CustomRequester as CustomRequesterModel
    from airbyte_cdk.sources.declarative.models.declarative_component_schema import HttpRequester as HttpRequesterModel
    from airbyte_cdk.sources.types import StreamSlice

    source = SourceCommsmining(config=config(start_date="2024-01-01T00:00:00Z"))
    definitions = source.resolved_manifest["definitions"]
    cases = {
        "sources_requester": StreamSlice(partition={}, cursor_slice={}),
        "comments_requester": StreamSlice(
            partition={"source_id": "s1"}, cursor_slice={"start_time": "2024-01-01T00:00:00.000000Z", "end_time": "2024-02-01T00:00:00.000000Z"},
            extra_fields={"owner": "acme", "name": "mail"},
        ),
        "dataset_streams_requester": StreamSlice(partition={"dataset_id": "d1"}, cursor_slice={}, extra_fields={"owner": "acme", "name": "ds"}),
    }
    for name, stream_slice in cases.items():
        custom = source._constructor.create_component(CustomRequesterModel, definitions[name], source._config, name=name)
        plain_definition = {k: v for k, v in definitions[name].items() if k != "class_name"}
        plain = source._constructor.create_component(HttpRequesterModel, {**plain_definition, "type": "HttpRequester"}, source._config, name=name)
        for page_token in (None, {"next_page_token": "abc"}):
            kwargs = dict(stream_state={}, stream_slice=stream_slice, next_page_token=page_token)
            assert custom.get_url(**kwargs) == plain.get_url(**kwargs), name
            assert custom.get_request_params(**kwargs) == plain.get_request_params(**kwargs), name
            assert custom.get_request_headers(**kwargs) == plain.get_request_headers(**kwargs), name
        assert custom.get_method() == plain.get_method()
        assert (custom.connect_timeout_in_seconds, custom.read_timeout_in_seconds) == (15, 240)
        assert (plain.connect_timeout_in_seconds, plain.read_timeout_in_seconds) == (15, 240)
        assert type(custom.get_authenticator()) is type(plain.get_authenticator())
        assert type(custom.error_handler) is type(plain.error_handler)
        assert custom.error_handler.max_retries == plain.error_handler.max_retries


def test_the_comments_cursor_is_bounded_where_the_cdk_observes_each_record():
    """comments_state.bound_cursor replaces `observe` on the built `comments` stream's cursor (an instance
    attribute): the CDK must hand each record, already queued for output, to `stream.cursor.observe`, and the
    per-partition cursor must take the value from the record it is given (so a bounded copy bounds the state)
    and find the export's end in the record's slice as `end_time`."""
    import inspect

    from airbyte_cdk.sources.concurrent_source.concurrent_read_processor import ConcurrentReadProcessor
    from airbyte_cdk.sources.declarative.incremental.concurrent_partition_cursor import ConcurrentPerPartitionCursor
    from airbyte_cdk.sources.streams.concurrent.partition_reader import PartitionReader

    from source_commsmining.comments_state import SLICE_END, CursorBound

    reader = inspect.getsource(PartitionReader.process_partition)
    assert reader.index("self._queue.put(record)") < reader.index("cursor.observe(record)")
    on_partition = inspect.getsource(ConcurrentReadProcessor.on_partition)
    assert "cursor = self._stream_name_to_instance[stream_name].cursor" in on_partition
    observe = inspect.getsource(ConcurrentPerPartitionCursor.observe)
    assert "self._cursor_field.extract_value(record)" in observe and ".observe(record)" in observe
    source = SourceCommsmining(config=config())
    comments = next(s for s in source.streams(source._config) if s.name == "comments")
    assert isinstance(comments.cursor, ConcurrentPerPartitionCursor)
    assert isinstance(comments.cursor.observe, CursorBound)
    assert SLICE_END == "end_time" and source.resolved_manifest["definitions"]["comments_stream"]["incremental_sync"].get(
        "partition_field_end", SLICE_END) == SLICE_END


def test_the_entrypoint_sets_up_its_secret_filter_through_the_overridable_static_method():
    """entrypoint.CommsminingEntrypoint.set_up_secret_filter leaves out tokens too short to mask; the CDK must call it."""
    import inspect

    assert inspect.getsource(AirbyteEntrypoint.check).count("self.set_up_secret_filter(") == 1
    assert inspect.getsource(AirbyteEntrypoint.read).count("self.set_up_secret_filter(") == 1


# ------------------------------------------------------------------ 5. External Application sign-in (auth.py)
def _oauth_config(**credentials):
    base = {"auth_type": "oauth2_client_credentials", "client_id": "app-id", "client_secret": "app-secret-0123456789",
            "scopes": "Ixp.One  Ixp.Two", "token_url": "https://cloud.uipath.com/identity_/connect/token"}
    base.update(credentials)
    cfg = config(credentials=base)
    del cfg["api_token"]
    return cfg


def test_the_declarative_oauth_body_carries_grant_type_client_credentials_and_scope():
    source = SourceCommsmining(config=_oauth_config())
    auth = source._api(source._config).requester("results_requester").authenticator
    assert type(auth).__name__ == "SharedTokenOAuthAuthenticator"  # the SelectiveAuthenticator returned the chosen one
    body = auth.build_refresh_request_body()
    assert body["grant_type"] == "client_credentials" and body["client_id"] == "app-id"
    assert body["client_secret"] == "app-secret-0123456789" and body["scope"] == "Ixp.One Ixp.Two"
    assert body.get("refresh_token") is None and "scopes" not in body  # None values are dropped from a form


def test_get_access_token_renews_through_refresh_access_token_only_when_expired_and_under_the_shared_lock():
    from airbyte_cdk.sources.streams.http.requests_native_auth.abstract_oauth import AbstractOauth2Authenticator
    from airbyte_cdk.utils.datetime_helpers import ab_datetime_now
    from datetime import timedelta

    source = SourceCommsmining(config=_oauth_config(client_id="contract-app"))
    auth = source._api(source._config).requester("results_requester").authenticator
    calls = []
    auth.refresh_access_token = lambda: calls.append(1) or (f"access-token-{len(calls):04d}", ab_datetime_now() + timedelta(seconds=600))
    assert auth.get_access_token() == "access-token-0001"
    assert auth.get_access_token() == "access-token-0001" and len(calls) == 1
    assert isinstance(AbstractOauth2Authenticator._token_refresh_lock, type(__import__("threading").RLock()))
    auth.refresh_and_set_access_token()  # the forced renewal (after a 401)
    assert auth.get_access_token() == "access-token-0002"


def test_the_factory_builds_an_authenticator_per_requester():
    source = SourceCommsmining(config=_oauth_config())
    api = source._api(source._config)
    assert api.requester("results_requester").authenticator is not api.requester("advance_requester").authenticator


def test_the_http_client_refreshes_the_session_auth_on_refresh_token_then_retry():
    import inspect

    from airbyte_cdk.sources.streams.http.error_handlers.response_models import ResponseAction
    from airbyte_cdk.sources.streams.http.http_client import HttpClient

    handle = inspect.getsource(HttpClient._handle_error_resolution)
    assert ResponseAction.REFRESH_TOKEN_THEN_RETRY.name in handle and "refresh_and_set_access_token()" in handle
    assert "self._session.auth(request)" in inspect.getsource(HttpClient._send)  # each retry asks the auth again


def test_config_migrations_run_when_the_source_is_built_and_print_the_config_as_a_control_message(tmp_path, capsys):
    path = tmp_path / "config.json"
    cfg = config()
    path.write_text(json.dumps(cfg))
    source = SourceCommsmining(config=cfg, config_path=str(path))
    assert source._config["credentials"] == {"auth_type": "api_token", "api_token": cfg["api_token"]}
    assert "api_token" not in source._config
    assert '"type":"CONTROL"' in capsys.readouterr().out  # run._MaskedStream keeps it off stdout
