"""A deliberately misbehaving Communications Mining API on loopback, scripted per request by a test.

By default it answers like a small, well-behaved tenant: one project `acme`, a source, and CM
streams whose `/results` serve a fixed list of comments in batches, `/advance` moving the
position. A test scripts any route with a list of `Answer`s, used one per request (the last one
repeats): any status, headers and body bytes, a body that trickles a byte at a time, or one that
echoes the request's Authorization header, or headers that trickle a byte every half second.

Everything is bounded: it listens on 127.0.0.1 only, a trickle stops after `max_seconds`, and past
`max_requests` every request gets a 503 (and `overflowed` says so), so a retry loop in the
connector cannot run forever. It records every request and every advance it accepted, which is
what the tests check the connector's STATE messages against.
"""

import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

STREAM_PATH = re.compile(r"^/api/v1/datasets/([^/]+)/([^/]+)/streams/([^/]+)(?:/(results|advance|reset))?$")


def comment(index: int, stream: str = "triage") -> Dict[str, Any]:
    """A valid StreamResult for comment `index` (the schema's required fields, realistic values)."""
    uid = f"0123456789abcdef.{stream[:4]}{index:012d}"
    stamp = f"2024-01-01T00:{index // 60 % 60:02d}:{index % 60:02d}.000000Z"
    return {
        "comment": {
            "uid": uid,
            "id": f"{stream[:4]}{index:012d}",
            "source_id": "0123456789abcdef",
            "thread_id": None,
            "timestamp": stamp,
            "created_at": stamp,
            "last_modified": stamp,
            "user_properties": {"string:Channel": "email"},
            "messages": [{"body": {"text": f"message {index}"}, "from": "a@example.com", "to": ["b@example.com"]}],
            "text_format": "plain",
            "attachments": [],
            "context": None,
            "has_annotations": False,
        },
        "prediction": {
            "taxonomies": [
                {
                    "name": "default",
                    "labels": [
                        {
                            "name": "Billing > Refund",
                            "occurrence_confidence": {"value": 0.9, "thresholds": ["high_recall"]},
                            "extraction_confidence": {"value": 0.8, "thresholds": []},
                            "fields": [],
                        }
                    ],
                    "general_fields": [],
                }
            ],
            "scores": [{"name": "Quality of service", "value": 0.5}],
        },
        "continuation": f"r{index}",
    }


@dataclass
class Answer:
    """One scripted response. `body` is bytes, or any JSON value (serialized as UTF-8)."""

    status: int = 200
    body: Any = None
    headers: Dict[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # > 0: send the headers, then one byte every 0.1 s for this long, never finishing
    echo_token: bool = False  # the body is {"status": "error", "message": "bad token: <Authorization>"}
    retry_after_date_in: float = 0.0  # > 0: a Retry-After header, as an HTTP date this many seconds after sending
    header_trickle_seconds: float = 0.0  # > 0: send the status line, then one header byte every 0.5 s for this long

    def payload(self, authorization: str) -> bytes:
        if self.echo_token:
            return json.dumps({"status": "error", "message": f"bad token: {authorization}"}, ensure_ascii=False).encode()
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False).encode() if self.body is not None else b""


@dataclass
class Request:
    method: str
    path: str
    query: Dict[str, List[str]]
    authorization: str
    body: Any
    at: float


class _Stream:
    def __init__(self, comments: int, key: str):
        self.results = [comment(i, key.rsplit("/", 1)[-1]) for i in range(comments)]
        self.position = 0  # index of the next result

    def batch(self, max_results: int) -> Dict[str, Any]:
        batch = self.results[self.position : self.position + max_results]
        end = self.position + len(batch)
        return {
            "status": "ok",
            "results": batch,
            "num_filtered": 0,
            "more_results": end < len(self.results),
            "continuation": f"c{end}",
        }


class MisbehavingServer:
    def __init__(self, comments: int = 5, max_requests: int = 400):
        self.comments = comments
        self.max_requests = max_requests
        self.requests: List[Request] = []
        self.advances: List[Tuple[str, str]] = []  # (stream key, continuation) the server accepted
        self.overflowed = False
        self._scripts: Dict[str, List[Answer]] = {}
        self._repeat: Dict[str, bool] = {}
        self._results_bodies: Dict[str, Callable[[Dict[str, Any]], Any]] = {}
        self._streams: Dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ---------------------------------------------------------------- scripting
    def script(self, route: str, *answers: Answer, repeat_last: bool = True) -> "MisbehavingServer":
        """`route` is "METHOD /path" with the path after /api (e.g. "GET /v1/sources"), or
        "GET results" / "POST advance" / "POST reset" / "GET stream" for every CM stream. The answers
        are used in order; then the last one repeats, or (repeat_last=False) the default answer returns."""
        self._scripts[route] = list(answers)
        self._repeat[route] = repeat_last
        return self

    def mutate_results(self, key: str, mutate: Callable[[Dict[str, Any]], Any]) -> None:
        """Every /results body of stream `key` ("acme/collections/triage") goes through `mutate`
        (a dict in, bytes or a JSON value out) before it is sent."""
        self._results_bodies[key] = mutate

    def reset(self) -> None:
        """Forget every script, request, advance and stream position (one server, many examples)."""
        with self._lock:
            self.requests.clear()
            self.advances.clear()
            self.overflowed = False
            self._scripts.clear()
            self._repeat.clear()
            self._results_bodies.clear()
            self._streams.clear()

    def stream(self, key: str) -> _Stream:
        with self._lock:
            if key not in self._streams:
                self._streams[key] = _Stream(self.comments, key)
            return self._streams[key]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "MisbehavingServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ---------------------------------------------------------------- answering
    def _next(self, *routes: str) -> Optional[Answer]:
        with self._lock:
            for route in routes:
                answers = self._scripts.get(route)
                if answers:
                    return answers[0] if len(answers) == 1 and self._repeat.get(route, True) else answers.pop(0)
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        authorization = handler.headers.get("Authorization", "")
        with self._lock:
            self.requests.append(Request(handler.command, parts.path, parse_qs(parts.query), authorization, body, time.monotonic()))
            too_many = len(self.requests) > self.max_requests
            if too_many:
                self.overflowed = True
        if too_many:
            return self._send(handler, Answer(503, {"status": "error", "message": "test server: request budget spent"}), authorization)
        path = parts.path[len("/api"):] if parts.path.startswith("/api") else parts.path
        match = STREAM_PATH.match(parts.path)
        kind = (match.group(4) or "stream") if match else None
        method_kind = f"{handler.command} {kind}" if kind else None
        answer = self._next(f"{handler.command} {path}", *(filter(None, [method_kind])))
        if answer is not None:
            return self._send(handler, answer, authorization)
        if match:
            key = "/".join(match.group(1, 2, 3))
            return self._stream_answer(handler, key, kind, parts, body, authorization)
        if path.startswith("/v1/sources"):
            source = {"id": "0123456789abcdef", "owner": "acme", "name": "mail", "title": "Mail", "description": "",
                      "language": "en", "should_translate": False, "sensitive_properties": [], "_kind": "unknown",
                      "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                      "last_modified": "2024-01-01T00:00:00Z", "bucket_id": None, "email_transform_tag": None,
                      "email_transform_version": None}
            return self._send(handler, Answer(200, {"status": "ok", "sources": [source]}), authorization)
        return self._send(handler, Answer(404, {"status": "error", "message": f"no route {path}"}), authorization)

    def _stream_answer(self, handler, key: str, kind: str, parts, body: Any, authorization: str) -> None:
        stream = self.stream(key)
        if kind == "stream":
            name = key.rsplit("/", 1)[-1]
            definition = {"id": "5f", "dataset_id": "ds1", "name": name, "title": name, "description": "",
                          "created_at": "2024-01-01T00:00:00Z", "updated_at": None, "comment_filter": None,
                          "model": {"version": 3, "label_thresholds": []}}
            return self._send(handler, Answer(200, {"status": "ok", "stream": definition}), authorization)
        if kind == "results":
            query = parse_qs(parts.query)
            try:
                max_results = int(query.get("max_results", ["32"])[0])
            except ValueError:
                return self._send(handler, Answer(400, {"status": "error", "message": "max_results must be an integer"}), authorization)
            payload: Any = stream.batch(max_results)
            mutate = self._results_bodies.get(key)
            if mutate is not None:
                payload = mutate(payload)
            return self._send(handler, Answer(200, payload), authorization)
        if kind == "advance":
            continuation = body.get("sequence_id") if isinstance(body, dict) else None
            if not isinstance(continuation, str) or not continuation.startswith("c") or not continuation[1:].isdigit():
                return self._send(handler, Answer(400, {"status": "error", "message": "bad sequence_id"}), authorization)
            with self._lock:
                stream.position = int(continuation[1:])
                self.advances.append((key, continuation))
            return self._send(handler, Answer(200, {"status": "ok", "sequence_id": continuation}), authorization)
        # reset: back to the start (these tests never depend on where exactly)
        with self._lock:
            stream.position = 0
        return self._send(handler, Answer(200, {"status": "ok", "sequence_id": "c0", "stream": {}}), authorization)

    def _send(self, handler: BaseHTTPRequestHandler, answer: Answer, authorization: str) -> None:
        payload = answer.payload(authorization)
        headers = {"Content-Type": "application/json", **answer.headers}
        if answer.retry_after_date_in > 0:
            when = datetime.now(timezone.utc) + timedelta(seconds=answer.retry_after_date_in)
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        try:
            if answer.header_trickle_seconds > 0:
                handler.wfile.write(f"HTTP/1.1 {answer.status} OK\r\nX-Slow: ".encode())
                handler.wfile.flush()
                ends = time.monotonic() + answer.header_trickle_seconds
                while time.monotonic() < ends and not self._closing.is_set():
                    self._closing.wait(0.5)
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
                handler.close_connection = True
                return
            handler.send_response(answer.status)
            for name, value in headers.items():
                handler.send_header(name, value)
            if answer.trickle_seconds > 0:
                handler.send_header("Content-Length", "1000000")
                handler.end_headers()
                ends = time.monotonic() + answer.trickle_seconds
                while time.monotonic() < ends and not self._closing.is_set():
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
                    self._closing.wait(0.1)
                handler.close_connection = True
                return
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
