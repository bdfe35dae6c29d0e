"""Property-based fuzzing of /results bodies: valid bodies generated from the API's own
JSON Schema, then mutated (a field dropped, retyped or nested; the bytes truncated or garbage
inserted), served over loopback HTTP by the misbehaving server and read by the real CmApi and
ResultsReader. On every example:

- the read completes, or fails with an AirbyteTracedException (a TRACE), never another exception;
- the server was advanced only to continuations of STATEs already flushed;
- the token, in any form, is in no message the reader produced.

Bounded sizes keep an example fast; FUZZ_EXAMPLES sets how many: 30 in `make test` (about 0.3 s of CPU each,
most of it drawing the body), 200 in `make properties-large`.
"""

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from airbyte_cdk.models import Type
from airbyte_cdk.utils.traced_exception import AirbyteTracedException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration_tests.misbehaving_server import MisbehavingServer
from source_commsmining import SourceCommsmining
from source_commsmining.api import CmStream
from source_commsmining.errors import register_secret, secret_forms
from source_commsmining.results_reader import ResultsReader
from source_commsmining.state import ResultsState

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "api-shapes" / "commsmining-api.schema.json"
TOKEN = "tök-FUZZ-4d3c2b"
TRIAGE = CmStream("acme", "collections", "triage")
KEEP_OPTIONAL = {"thread_id", "subject", "from", "text_format", "prediction"}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))


def _bounded(node: Any) -> Any:
    """The schema with small arrays and strings, optional fields mostly left out (the mutations add variety)."""
    if isinstance(node, list):
        return [_bounded(item) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"$comment"}:  # "any value" where the markup recurses: keep generation finite
        return {"type": "null"}
    node = dict(node)
    if node.get("type") == "object" and "properties" in node:
        required = set(node.get("required", []))
        node["properties"] = {k: v for k, v in node["properties"].items() if k in required or k in KEEP_OPTIONAL}
    if node.get("type") == "array":
        node["maxItems"] = min(node.get("maxItems", 2), 2)
    if node.get("type") == "string":
        node.setdefault("maxLength", 8)
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        node["maxProperties"] = 2
    return {key: _bounded(value) for key, value in node.items()}


@functools.lru_cache(maxsize=None)
def _valid_bodies():
    if not SCHEMA_PATH.is_file():
        pytest.fail(f"the API's JSON Schema is missing: expected {SCHEMA_PATH.resolve()} (api-shapes/ in the repository)")
    from hypothesis_jsonschema import from_schema

    defs = _bounded(json.loads(SCHEMA_PATH.read_text())["$defs"])
    defs["GetStreamResultsResponse"]["properties"]["results"]["maxItems"] = 3
    return from_schema({"$defs": defs, "$ref": "#/$defs/GetStreamResultsResponse"})


def _no_surrogates(value: Any) -> Any:
    """The API sends UTF-8: lone surrogates come only from the byte-level mutations."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_no_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_no_surrogates(key): _no_surrogates(item) for key, item in value.items()}
    return value


def _paths(value: Any, prefix: Tuple = ()) -> List[Tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, prefix + (index,))
    return found


OTHER_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.just([]), st.just({}), st.lists(st.integers(), max_size=2),
)


@st.composite
def mutated_bodies(draw) -> bytes:
    body = _no_surrogates(draw(_valid_bodies()))
    body["continuation"] = "c1"  # the misbehaving server accepts an advance to it
    operation = draw(st.sampled_from(["none", "drop", "retype", "nest", "truncate", "insert"]))
    paths = _paths(body)
    if operation in ("drop", "retype", "nest") and paths:
        path = draw(st.sampled_from(paths))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if operation == "drop":
            del parent[path[-1]]
        elif operation == "retype":
            parent[path[-1]] = draw(OTHER_VALUES)
        else:
            parent[path[-1]] = draw(st.sampled_from([[parent[path[-1]]], {"value": parent[path[-1]]}]))
    data = json.dumps(body, ensure_ascii=draw(st.booleans())).encode()
    if operation == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif operation == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


@pytest.fixture(scope="module")
def server():
    with MisbehavingServer(max_requests=100_000) as test_server:
        yield test_server


@pytest.fixture(scope="module")
def api_factory(server):
    register_secret(TOKEN)
    config = {"api_endpoint": server.url, "api_token": TOKEN, "streams": [TRIAGE.as_partition()], "max_retries": 0}
    source = SourceCommsmining(config=config)
    return lambda: source._api(source._config)


def _serve_once(data: bytes):
    served = {"first": True}

    def mutate(default_body: Dict[str, Any]) -> Any:
        if served["first"]:
            served["first"] = False
            return data
        return {"status": "ok", "results": [], "num_filtered": 0, "more_results": False, "continuation": "c1"}

    return mutate


@pytest.mark.runs_long(15)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=mutated_bodies())
def test_a_mutated_results_body_never_loses_hangs_or_leaks(server, api_factory, data):
    server.reset()
    server.mutate_results(TRIAGE.key, _serve_once(data))
    printed: List[Any] = []
    flushed: List[str] = []

    def flush() -> None:
        states = [m for m in printed if m.type == Type.STATE]
        if states:
            flushed.append(json.dumps(states[-1].state.stream.stream_state.__dict__, default=str))

    # `current`: no start reset, so the mutated body is the first batch the read gets, and what is fuzzed is the read,
    # its STATEs and its advances. (A start reset's peek reads /results through the same CmApi.results and decode.)
    reader = ResultsReader(api_factory, [TRIAGE], ResultsState(), parallel_streams=1, start_position="current", flush=flush,
                           logger=logging.getLogger("fuzz"))
    error = None
    try:
        for message in reader.read():
            printed.append(message)
    except AirbyteTracedException as traced:
        error = traced
    # (any other exception fails the example by propagating)

    for key, continuation in server.advances:
        assert any(f'"{continuation}"' in state and TRIAGE.stream in state for state in flushed), (
            f"advanced {key} to {continuation} before a STATE carrying it was flushed"
        )
    texts = [m.log.message for m in printed if m.type == Type.LOG]
    if error is not None:
        texts += [error.message or "", error.internal_message or ""]
        assert TRIAGE.key in error.message or "stream_results" in error.message, error.message
    leaked = [form for form in secret_forms(TOKEN) for text in texts if form in text]
    assert not leaked, leaked
    assert not server.overflowed
    if os.environ.get("FUZZ_STATS"):  # one line per example, for a summary table
        with open(os.environ["FUZZ_STATS"], "a") as stats:
            stats.write(json.dumps({"outcome": "TRACE" if error else "success", "message": error.message[:200] if error else "",
                                    "records": sum(1 for m in printed if m.type == Type.RECORD), "advances": len(server.advances)}) + "\n")
