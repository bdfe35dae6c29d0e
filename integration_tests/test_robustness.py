"""The connector against a misbehaving API: every case ends with a clear TRACE or a
success, never a bare traceback or a hang; nothing is advanced past a batch that was not printed
with its STATE; the token, in any form, appears nowhere in stdout or stderr.

Each case runs the console script against misbehaving_server.py on loopback, with a timeout,
small retry budgets and a lowered response deadline: in-process, except the token cases, which run
the installed script as a subprocess so that nothing the process prints (the interpreter's own
messages included) can hold the token.
"""

import gzip
import json
import os
import subprocess
import time
from typing import Any, Dict, List, Optional

import pytest

from integration_tests.conftest import Run, TimedOut, configured_catalog, run_connector
from integration_tests.misbehaving_server import Answer, MisbehavingServer
from source_commsmining.errors import secret_forms

TOKEN = "tok-ROBUST-5e4d3c"
TRIAGE = {"project": "acme", "dataset": "collections", "stream": "triage"}
TRIAGE_KEY = "acme/collections/triage"
TIMEOUT = 120  # seconds for one connector run: a hang fails the test instead of blocking CI


def config(server: MisbehavingServer, token: str = TOKEN, **extra: Any) -> Dict[str, Any]:
    # The misbehaving server serves no dataset export, so whether a stream was read cannot be told: take it over by name.
    cfg = {"api_endpoint": server.url, "api_token": token, "streams": [TRIAGE], "max_retries": 1, "retry_backoff_seconds": 0.05,
           "start_position": "take_over_from_creation"}
    cfg.update(extra)
    return cfg


def run(
    command: str, cfg: Dict[str, Any], catalog=None, debug: bool = False, env: Optional[Dict[str, str]] = None, timeout: float = TIMEOUT,
    state: Any = None, process: bool = False,
) -> Run:
    """In-process (conftest.run_connector); `process=True` where the token must be absent from all a process prints."""
    try:
        return run_connector(
            command, cfg, catalog, state, timeout=timeout, process=process, env=env, extra_args=["--debug"] if debug else []
        )
    except (subprocess.TimeoutExpired, TimedOut):
        _table_row({"outcome": "hung", "failure_type": None, "message": f"still running after {timeout:g} s", "hung": 1})
        raise


def _table_row(row: Dict[str, Any]) -> None:
    if os.environ.get("ROBUSTNESS_TABLE"):  # one line per case, for a summary table
        with open(os.environ["ROBUSTNESS_TABLE"], "a") as table:
            case = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            table.write(json.dumps({"case": case, "advanced_without_state": 0, "token_printed": 0, "hung": 0, **row}) + "\n")


def error_of(result: Run) -> Optional[Dict[str, Any]]:
    traces = [m["trace"]["error"] for m in result.of_type("TRACE") if m["trace"].get("type") == "ERROR"]
    return traces[-1] if traces else None


def stream_error_of(result: Run, stream: str) -> Optional[Dict[str, Any]]:
    """The TRACE error the CDK emitted for one declarative stream (it names the stream in stream_descriptor)."""
    traces = [m["trace"]["error"] for m in result.of_type("TRACE") if m["trace"].get("type") == "ERROR"
              and (m["trace"]["error"].get("stream_descriptor") or {}).get("name") == stream]
    return traces[-1] if traces else None


def advanced_without_state(server: MisbehavingServer, result: Run) -> List[Any]:
    """Advances the server accepted whose continuation no printed STATE carries for that stream."""
    printed = set()
    for state in result.states:
        blob = ((state.get("stream") or {}).get("stream_state")) or {}
        for entry in blob.get("states", []) if isinstance(blob, dict) else []:
            partition, cursor = entry.get("partition") or {}, entry.get("cursor") or {}
            key = "/".join(str(partition.get(k)) for k in ("project", "dataset", "stream"))
            printed.add((key, cursor.get("continuation")))
    return [advance for advance in server.advances if advance not in printed]


def check_invariants(server: MisbehavingServer, result: Run, token: str = TOKEN, stream: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The three invariants of every case; returns the TRACE error (None on success): the last one, or with
    `stream` (a declarative stream, which the CDK follows with a summary config_error) that stream's."""
    output = result.raw + result.stderr
    leaked = [form for form in secret_forms(token) if form in output]
    assert not leaked, f"the token leaked as {leaked}"
    assert "Traceback (most recent call last)" not in result.stderr, result.stderr[-3000:]
    error = error_of(result)
    if stream is not None and error is not None:
        error = stream_error_of(result, stream) or error
    assert result.returncode == 0 or error is not None, f"exit {result.returncode} without a TRACE: {result.stderr[-2000:]}"
    assert advanced_without_state(server, result) == [], "advanced past a batch that was not printed with its STATE"
    assert not server.overflowed, "the connector kept retrying past the test server's request budget"
    _table_row({"outcome": "TRACE" if error else "success", "failure_type": error and error.get("failure_type"),
                "message": (error or {}).get("message", "")[:300]})
    return error


# ------------------------------------------------------------------ the token, echoed by the server
# discover sends no request (so no echo, whatever the status): once is all it proves, not per status.
@pytest.mark.parametrize("command, status", [("check", 401), ("check", 403), ("discover", 401), ("read", 401), ("read", 403)],
                         ids=["check-401", "check-403", "discover", "read-401", "read-403"])
def test_a_token_echoed_in_an_error_body_is_printed_nowhere(command, status):
    with MisbehavingServer() as server:
        server.script("GET /v1/sources", Answer(status, echo_token=True))
        server.script("GET results", Answer(status, echo_token=True))
        server.script("GET stream", Answer(status, echo_token=True))
        catalog = configured_catalog("sources", "stream_results") if command == "read" else None
        result = run(command, config(server), catalog, process=True)
        error = check_invariants(server, result)
        assert server.requests or command == "discover", "the connector never called the server"
    if command == "check":
        status_message = result.of_type("CONNECTION_STATUS")
        assert error is not None or (status_message and status_message[0]["connectionStatus"]["status"] == "FAILED")
    elif command == "read":
        assert error is not None and error["failure_type"] == "config_error"
        assert ("401" in error["message"] or "403" in error["message"]), error["message"]


def _case_variants(token: str) -> List[str]:
    """The token upper-cased, lower-cased, title-cased and with its case swapped, as a server may echo it."""
    return [token.upper(), token.lower(), token.title(), token.swapcase()]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_token_echoed_in_another_case_by_a_refused_advance_is_printed_nowhere(debug):
    """A 400 on advance quoting the Authorization header upper-cased (and in other cases): LOG, TRACE and DEBUG lines."""
    echoes = " ".join(f"Bearer {variant}" for variant in _case_variants(TOKEN))
    body = {"status": "error", "message": f"bad sequence for BEARER {TOKEN.upper()} ({echoes})"}
    with MisbehavingServer() as server:
        server.script("POST advance", Answer(400, body=body))
        result = run("read", config(server, max_retries=0), configured_catalog("stream_results"), debug=debug, process=True)
        error = check_invariants(server, result)
    output = result.raw + result.stderr
    assert error is not None and "****" in error["message"], result.raw[-2000:]
    assert TOKEN.casefold() not in output.casefold(), "a case variant of the token was printed"


def test_a_latin1_token_is_masked_in_the_debug_log_in_every_form():
    token = "tökén-secret-77"
    with MisbehavingServer() as server:
        result = run("read", config(server, token=token), configured_catalog("sources", "stream_results"), debug=True, process=True)
        error = check_invariants(server, result, token)
        assert error is None, error
        assert any(r.authorization.endswith("-secret-77") for r in server.requests)
        assert [r for r in result.records if r["stream"] == "stream_results"], "the read must deliver records"


@pytest.mark.parametrize("command", ["check", "discover", "read"])
def test_a_token_outside_latin1_is_refused_naming_api_token(command):
    token = "tok€n-secret-77"
    with MisbehavingServer() as server:
        catalog = configured_catalog("stream_results") if command == "read" else None
        result = run(command, config(server, token=token), catalog, process=True)
        error = check_invariants(server, result, token)
        assert not server.requests, "nothing may be sent with a token that cannot be sent"
    assert error is not None and error["failure_type"] == "config_error", result.raw[-2000:]
    assert "api_token`" in error["message"] and "not a valid API token" in error["message"]  # `credentials.api_token` once migrated


# ------------------------------------------------------------------ transport
def test_a_body_that_never_ends_fails_as_a_timeout_after_the_deadline_and_retries():
    with MisbehavingServer() as server:
        server.script("GET results", Answer(200, headers={"Content-Type": "application/json"}, trickle_seconds=20))
        result = run(
            "read", config(server), configured_catalog("stream_results"),
            env={"SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS": "1.5"},
        )
        error = check_invariants(server, result)
        results_calls = [r for r in server.requests if r.path.endswith("/results")]
        assert server.advances == []
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    assert "no complete response within 1.5 s" in error["message"] + (error.get("internal_message") or "")
    assert len(results_calls) == 2  # the first try and max_retries: 1


def test_a_retry_after_http_date_is_honoured():
    with MisbehavingServer() as server:
        # 4 s ahead when sent; the header has whole seconds, so 3 to 4 s (a numbers-only reader would wait ~1 s).
        server.script("GET results", Answer(429, {"status": "error", "message": "slow down"}, retry_after_date_in=4), repeat_last=False)
        result = run("read", config(server, max_retries=2), configured_catalog("stream_results"))
        check_invariants(server, result)
        calls = [r.at for r in server.requests if r.path.endswith("/results")]
    assert result.returncode == 0, result.raw[-2000:]
    assert calls[1] - calls[0] >= 2.5, f"retried after {calls[1] - calls[0]:.2f} s, not at the Retry-After date"


# ------------------------------------------------------------------ config
def test_whole_number_floats_are_sent_as_integers():
    with MisbehavingServer() as server:
        result = run("read", config(server, max_results=16.0, max_filtered=5.0, parallel_streams=2.0), configured_catalog("stream_results"))
        error = check_invariants(server, result)
        queries = [r.query for r in server.requests if r.path.endswith("/results")]
    assert error is None, error
    # Every batch asks for 16 (the start's peek for 1), never "16.0".
    assert queries and all(q["max_results"] in (["16"], ["1"]) and q["max_filtered"] == ["5"] for q in queries), queries
    assert [q["max_results"] for q in queries].count(["16"]) >= 1
    assert len(result.uids()) == 5


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"streams": [{"project": ".", "dataset": "collections", "stream": "triage"}]}, "streams[0].project"),
        ({"streams": [{"project": "..", "dataset": "collections", "stream": "triage"}]}, "streams[0].project"),
        ({"project": ".."}, "project"),
    ],
)
def test_dot_names_are_refused_naming_the_field(extra, field):
    with MisbehavingServer() as server:
        result = run("check", config(server, **extra))
        error = check_invariants(server, result)
        assert not [r for r in server.requests if "/." in r.path]
    message = error["message"] if error else result.of_type("CONNECTION_STATUS")[0]["connectionStatus"]["message"]
    assert f"`{field}`" in message and "not a name" in message, message


# ------------------------------------------------------------------ bodies the connector cannot use
def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"x": value}
    return value


def _too_deep_record(body: Dict[str, Any]) -> Dict[str, Any]:
    body["results"][2]["comment"]["user_properties"] = {"string:x": "y", "nested": _nested(600)}
    return body


UNDECODABLE = {
    "invalid UTF-8": (lambda body: json.dumps(body).encode().replace(b"message 0", b"message \xff\xfe"), "not valid UTF-8"),
    "latin-1 charset": (
        lambda body: json.dumps(body, ensure_ascii=False).replace("message 0", "méssage 0").encode("latin-1"),
        "charset",
    ),
    "lone surrogate": (lambda body: json.dumps(body).replace("message 0", "message \\ud800").encode(), "half of a UTF-16 pair"),
    "nested past the parser": (
        lambda body: json.dumps(body)[:-1].encode() + b', "model": ' + b'{"x": ' * 1100 + b"1" + b"}" * 1100 + b"}",
        "deeper than the 1024 levels",
    ),
    "record too deep to write": (_too_deep_record, "nested more than 500 levels"),
}


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_an_undecodable_results_body_fails_saying_what_and_where(case):
    mutate, reason = UNDECODABLE[case]
    with MisbehavingServer() as server:
        if case == "latin-1 charset":
            server.script("GET results", Answer(200, mutate(server.stream(TRIAGE_KEY).batch(32)), {"Content-Type": "application/json; charset=latin-1"}))
        else:
            server.mutate_results(TRIAGE_KEY, mutate)
        # `current`: no peek (a GET for one comment) before the batch these bodies are made from.
        result = run("read", config(server, start_position="current"), configured_catalog("stream_results"))
        error = check_invariants(server, result)
        assert server.advances == []
    assert error is not None, result.raw[-2000:]
    assert reason in error["message"] and TRIAGE_KEY in error["message"], error["message"]
    if case == "record too deep to write":
        assert "0123456789abcdef.tria000000000002" in error["message"]
    assert result.uids() == []


SHAPES = {
    "taxonomies a string": lambda body: _set(body, ["prediction", "taxonomies"], "default"),
    "labels of strings": lambda body: _set(body, ["prediction", "taxonomies", 0, "labels"], ["x"]),
    "messages a number": lambda body: _set(body, ["comment", "messages"], 5),
    "created_at an integer": lambda body: _set(body, ["comment", "created_at"], 1700000000),
    "comment a list": lambda body: _set(body, ["comment"], []),
    "results an object": lambda body: {**body, "results": {"0": body["results"][0]}},
    "continuation missing": lambda body: {k: v for k, v in body.items() if k != "continuation"},
}


def _set(body: Dict[str, Any], path: List[Any], value: Any) -> Dict[str, Any]:
    for result in body["results"][1:2]:
        target = result
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return body


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_a_result_of_an_unexpected_shape_never_loses_or_hangs(case):
    with MisbehavingServer() as server:
        server.mutate_results(TRIAGE_KEY, SHAPES[case])
        result = run("read", config(server), configured_catalog("stream_results"))
        error = check_invariants(server, result)
    if error is not None:
        # Whatever the reader decides about the shape, the message says which stream.
        assert TRIAGE_KEY in error["message"] or "stream_results" in error["message"], error["message"]


# ------------------------------------------------------------------ hangs, bombs, redirects, exhausted retries
DEADLINE = {"SOURCE_COMMSMINING_RESPONSE_DEADLINE_SECONDS": "2"}


def test_headers_that_trickle_a_byte_every_half_second_end_at_the_deadline():
    with MisbehavingServer() as server:
        server.script("GET results", Answer(200, header_trickle_seconds=60))
        started = time.monotonic()
        result = run("read", config(server), configured_catalog("stream_results"), env=DEADLINE, timeout=40)
        took = time.monotonic() - started
        error = check_invariants(server, result)
        calls = [r for r in server.requests if r.path.endswith("/results")]
        assert server.advances == []
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    assert "within 2 s" in error["message"] + (error.get("internal_message") or ""), error
    assert len(calls) == 2  # the first try and max_retries: 1
    assert took < 2 * 2 + 15, f"took {took:.1f} s"  # deadline x tries, plus start-up and backoff


# The declarative streams (manifest.yaml's requesters, not api.CmApi's): each route, and the stream reading it.
DECLARATIVE_SLOW_HEADERS = {
    "sources": ("GET /v1/sources", "/v1/sources"),
    "comments": ("GET /_private/sources/acme/mail/comments", "/comments"),
    "datasets": ("GET /v1/datasets", "/v1/datasets"),
}


@pytest.mark.parametrize("stream", sorted(DECLARATIVE_SLOW_HEADERS))
def test_trickling_headers_on_a_declarative_stream_end_at_the_deadline(stream):
    route, path_end = DECLARATIVE_SLOW_HEADERS[stream]
    catalog = comments_catalog() if stream == "comments" else configured_catalog(stream)
    with MisbehavingServer() as server:
        server.script(route, Answer(200, header_trickle_seconds=60))
        started = time.monotonic()
        # One window per source: read in windows, `concurrency_level` windows would wait on the deadline at once.
        one_window = {"comments_window_days": 36500} if stream == "comments" else {}
        result = run("read", config(server, **one_window), catalog, env=DEADLINE, timeout=40)
        took = time.monotonic() - started
        error = check_invariants(server, result, stream=stream)
        calls = [r for r in server.requests if r.path.endswith(path_end)]
    # The CDK ends a failed declarative stream with its own TRACE, then a summary config_error naming it.
    assert error == stream_error_of(result, stream)
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    assert "within 2 s" in error["message"] + (error.get("internal_message") or ""), error
    assert len(calls) == 2  # the first try and max_retries: 1
    assert took < 2 * 2 + 15, f"took {took:.1f} s"  # deadline x tries, plus start-up and backoff


def test_one_stream_with_trickling_headers_does_not_keep_parallel_streams_from_ending():
    streams = [TRIAGE, {"project": "acme", "dataset": "collections", "stream": "other"}]
    with MisbehavingServer() as server:
        server.script("GET /v1/datasets/acme/collections/streams/triage/results", Answer(200, header_trickle_seconds=60))
        result = run("read", config(server, streams=streams, max_retries=0, parallel_streams=2), configured_catalog("stream_results"),
                     env=DEADLINE, timeout=40)
        error = check_invariants(server, result)
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    assert {uid.split(".")[1][:4] for uid in result.uids()} == {"othe"}  # the healthy stream was read whole


def test_a_gzip_bomb_is_capped_with_a_message_naming_the_endpoint():
    bomb = gzip.compress(b"{" + b" " * (40 << 20) + b"}", compresslevel=9)
    with MisbehavingServer() as server:
        server.script("GET results", Answer(200, bomb, {"Content-Encoding": "gzip"}))
        result = run("read", config(server), configured_catalog("stream_results"),
                     env={"SOURCE_COMMSMINING_MAX_BODY_BYTES": str(4 << 20)})
        error = check_invariants(server, result)
        assert server.advances == []
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    text = error["message"] + (error.get("internal_message") or "")
    assert "larger than 4 MiB once decompressed" in text and "/results" in text, text


@pytest.mark.parametrize("status, reason", [(409, "Conflict"), (503, "Service Unavailable")])
def test_retries_spent_name_the_status_the_stream_the_endpoint_and_the_api_message(status, reason):
    with MisbehavingServer() as server:
        server.script("GET results", Answer(status, {"status": "error", "message": "stream is being advanced elsewhere"}))
        result = run("read", config(server), configured_catalog("stream_results"))
        error = check_invariants(server, result)
    assert error is not None and error["failure_type"] == "transient_error", result.raw[-3000:]
    message = error["message"]
    assert f"HTTP {status} {reason}" in message and "stream is being advanced elsewhere" in message, message
    assert TRIAGE_KEY in message and "/results" in message, message


def test_a_redirect_to_another_host_says_where_and_not_that_the_token_was_rejected():
    with MisbehavingServer() as elsewhere, MisbehavingServer() as server:
        elsewhere.script("GET /v1/sources", Answer(401, {"status": "error", "message": "no token"}))
        server.script("GET /v1/sources", Answer(301, b"", {"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/api/v1/sources"}))
        result = run("read", config(server), configured_catalog("sources"))
        error = check_invariants(server, result)
        assert all(not r.authorization for r in elsewhere.requests), "the token went to the other host"
    assert error is not None and error["failure_type"] == "config_error", result.raw[-3000:]
    message = error["message"]
    assert "redirected" in message and "localhost:" in message and "`api_endpoint`" in message, message
    assert "rejected the API token" not in message


def test_a_redirect_loop_gets_the_same_hint():
    with MisbehavingServer() as server:
        server.script("GET /v1/sources", Answer(302, b"", {"Location": "/api/v1/sources"}))
        result = run("check", config(server))
        check_invariants(server, result)
    status = result.of_type("CONNECTION_STATUS")
    message = status[0]["connectionStatus"]["message"] if status else error_of(result)["message"]
    assert "redirects in a loop" in message and "`api_endpoint`" in message, message


@pytest.mark.parametrize("value", ["1_000", "\u0663", "1e3"])
def test_a_retry_after_that_is_not_ascii_digits_is_not_a_wait(value):
    with MisbehavingServer() as server:
        server.script("GET results", Answer(429, {"status": "error", "message": "slow down"}, {"Retry-After": value}), repeat_last=False)
        result = run("read", config(server, max_retries=2), configured_catalog("stream_results"))
        error = check_invariants(server, result)
        calls = [r.at for r in server.requests if r.path.endswith("/results")]
    assert error is None and len(result.uids()) == 5, result.raw[-2000:]
    # Without a usable Retry-After the CDK's rate-limit backoff waits about 1 s; "\u0663" read as 3 would wait 3 s.
    assert calls[1] - calls[0] < 2.5, f"waited {calls[1] - calls[0]:.1f} s after Retry-After {value!r}"


@pytest.mark.parametrize("definition, expected", [("triage", "not an object"), ({"created_at": "2020-01-01T00:00:00Z", "model": {"version": 3.0, "label_thresholds": []}}, None)])
def test_odd_stream_definitions(definition, expected):
    with MisbehavingServer() as server:
        server.script("GET stream", Answer(200, {"status": "ok", "stream": definition}))
        result = run("read", config(server), configured_catalog("stream_results"))
        error = check_invariants(server, result)
        assert server.advances == [] if expected else server.advances
    if expected:
        assert error is not None and expected in error["message"] and TRIAGE_KEY in error["message"], error
        assert "AttributeError" not in result.raw
    else:
        assert error is None, error
        assert {r["data"]["model_version"] for r in result.records} == {3}, "3.0 is version 3"
        assert "not a number" not in result.raw


# ------------------------------------------------------------------ the comments cursor
COMMENTS_ROUTE = "GET /_private/sources/acme/mail/comments"
SOURCE_ID = "0123456789abcdef"
# This server answers every export alike, whatever its from_timestamp/to_timestamp: read in windows, each window
# would bring the same comments again, so these tests read each source in one window (the windows: below).
ONE_WINDOW = {"start_date": "2024-01-01T00:00:00Z", "comments_window_days": 36500}


def comments_catalog() -> Dict[str, Any]:
    return {"streams": [{"stream": {"name": "comments", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
                                    "source_defined_cursor": True, "default_cursor_field": ["timestamp"]},
                         "sync_mode": "incremental", "destination_sync_mode": "append", "cursor_field": ["timestamp"]}]}


def comments_state(cursor: Any = None, states: Any = None) -> List[Dict[str, Any]]:
    if states is None:
        states = [{"partition": {"source_id": SOURCE_ID, "parent_slice": {}}, "cursor": {"timestamp": cursor}}]
    return [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "comments"}, "stream_state": {"states": states}}}]


def export(*stamps: str) -> Answer:
    comments = [{"id": f"c{i}", "uid": f"{SOURCE_ID}.c{i}", "timestamp": stamp, "messages": [], "user_properties": {}}
                for i, stamp in enumerate(stamps)]
    return Answer(200, {"comments": comments, "continuation": None})


@pytest.mark.parametrize("state", [comments_state("garbage"), comments_state(states="x"), comments_state(12),
                                   comments_state(states=[{"partition": [SOURCE_ID], "cursor": {"timestamp": "2024-01-01T00:00:00Z"}}])],
                         ids=["garbage cursor", "states a string", "cursor a number", "partition a list"])
def test_a_comments_state_that_is_not_a_time_is_a_config_error_saying_how_to_clear_it(state):
    with MisbehavingServer() as server:
        server.script(COMMENTS_ROUTE, export("2024-01-01T00:00:00.000000Z"))
        result = run("read", config(server), comments_catalog(), state=state)
        error = check_invariants(server, result)
    assert error is not None and error["failure_type"] == "config_error", result.raw[-3000:]
    assert "`comments`" in error["message"] and "Clear" in error["message"], error["message"]
    assert "Something went wrong" not in error["message"]


def test_a_comments_state_whose_partition_is_a_list_says_where_and_how_to_clear_it():
    # The CDK would key that entry as it is, match no source, and read the source as if it had no state.
    state = comments_state(states=[{"partition": {"source_id": SOURCE_ID, "parent_slice": {}}, "cursor": {"timestamp": "2024-01-01T00:00:00Z"}},
                                   {"partition": [SOURCE_ID, {}], "cursor": {"timestamp": "2024-01-01T00:00:00Z"}}])
    with MisbehavingServer() as server:
        server.script(COMMENTS_ROUTE, export("2024-01-01T00:00:00.000000Z"))
        result = run("read", config(server), comments_catalog(), state=state)
        error = check_invariants(server, result)
        exported = [r for r in server.requests if r.path.endswith("/comments")]
    assert error is not None and error["failure_type"] == "config_error", result.raw[-3000:]
    assert "stream_state.states[1].partition" in error["message"] and "a list" in error["message"], error["message"]
    assert "Clear data for `comments`" in error["message"], error["message"]
    assert not exported  # refused before any comment is read


def test_a_comment_dated_2099_never_becomes_a_cursor_that_skips_later_comments():
    with MisbehavingServer() as server:
        server.script(COMMENTS_ROUTE, export("2024-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z"))
        first = run("read", config(server, **ONE_WINDOW), comments_catalog())
        assert check_invariants(server, first) is None, first.raw[-3000:]
        assert len(first.uids("comments")) == 2  # the records are delivered
        state = [{"type": "STREAM", "stream": first.states[-1]["stream"]}]
        server.reset()
        server.script(COMMENTS_ROUTE, export("2024-06-01T00:00:00.000000Z"))
        second = run("read", config(server, **ONE_WINDOW), comments_catalog(), state=state)
        error = check_invariants(server, second)
        exported_from = [r.query.get("from_timestamp", [""])[0] for r in server.requests if r.path.endswith("/comments")]
    assert error is None, second.raw[-3000:]
    assert exported_from and all(stamp < "2030" for stamp in exported_from), exported_from
    assert len(second.uids("comments")) == 1, "the comment after the 2099 one was skipped"


def _comments_cursors(result: Run) -> List[str]:
    """Every `timestamp` cursor in every comments STATE printed: per source, and the global one."""
    cursors = []
    for state in result.states:
        blob = (state.get("stream") or {}).get("stream_state") or {}
        cursors += [entry["cursor"]["timestamp"] for entry in blob.get("states", []) if "timestamp" in entry.get("cursor", {})]
        if "timestamp" in (blob.get("state") or {}):
            cursors.append(blob["state"]["timestamp"])
    return cursors


def test_a_comment_dated_2099_is_delivered_but_never_written_as_the_cursor():
    from datetime import datetime, timedelta, timezone

    from source_commsmining.comments_state import MAX_SKEW

    future = "2099-01-01T00:00:00.000000Z"
    with MisbehavingServer() as server:
        server.script(COMMENTS_ROUTE, export("2024-01-01T00:00:00.000000Z", future))
        # A process of its own: the warning is logged through the "airbyte" logger, which PyAirbyte (the package
        # is named `airbyte`) reconfigures (propagate off, a file handler) in a test worker that ran PyAirbyte.
        first = run("read", config(server, **ONE_WINDOW), comments_catalog(), process=True)
        finished = datetime.now(timezone.utc)
        assert check_invariants(server, first) is None, first.raw[-3000:]
        to_timestamps = {r.query["to_timestamp"][0] for r in server.requests if r.path.endswith("/comments")}
        # The record is delivered, its date untouched.
        assert sorted(r["data"]["timestamp"] for r in first.records if r["stream"] == "comments") == ["2024-01-01T00:00:00.000000Z", future]
        cursors = _comments_cursors(first)
        assert cursors, first.raw[-3000:]
        assert all(c < "2030" and c <= max(to_timestamps) for c in cursors), (cursors, to_timestamps)
        assert all(datetime.fromisoformat(c.replace("Z", "+00:00")) <= finished + MAX_SKEW for c in cursors)
        warnings = [m["log"]["message"] for m in first.of_type("LOG") if future in m["log"]["message"]]
        assert len(warnings) == 1 and "acme/mail" in warnings[0] and SOURCE_ID in warnings[0], warnings

        # The next sync goes on from that cursor (minus the lookback), not from start_date nor from 2099.
        state = [{"type": "STREAM", "stream": first.states[-1]["stream"]}]
        server.reset()
        recent = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        server.script(COMMENTS_ROUTE, export(recent))
        second = run("read", config(server, **ONE_WINDOW), comments_catalog(), state=state)
        assert check_invariants(server, second) is None, second.raw[-3000:]
        exported_from = [r.query.get("from_timestamp", [""])[0] for r in server.requests if r.path.endswith("/comments")]
    week_ago = (finished - timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%S")
    assert exported_from and all(week_ago < stamp < "2030" for stamp in exported_from), exported_from
    assert [r["data"]["timestamp"] for r in second.records if r["stream"] == "comments"] == [recent]
    assert not [m for m in second.of_type("LOG") if "in the future" in m["log"]["message"]], "the state written was in the future"


def test_a_comment_dated_2099_in_every_window_never_becomes_a_cursor():
    # A server that ignores to_timestamp sends the 2099 comment in every window: each window's cursor stops at its end.
    with MisbehavingServer() as server:
        server.script(COMMENTS_ROUTE, export("2024-01-01T00:00:00.000000Z", "2099-01-01T00:00:00.000000Z"))
        first = run("read", config(server, start_date="2024-01-01T00:00:00Z", comments_window_days=100), comments_catalog())
        assert check_invariants(server, first) is None, first.raw[-3000:]
        to_timestamps = {r.query["to_timestamp"][0] for r in server.requests if r.path.endswith("/comments")}
    assert len(to_timestamps) > 3  # read in windows
    cursors = _comments_cursors(first)
    assert cursors and all(c < "2030" and c <= max(to_timestamps) for c in cursors), (cursors, to_timestamps)

