"""HTTP layer: routes, auth, permissions, envelopes, faults, latency, Server-Timing.

Why this module exists: it translates HTTP/1.1 keep-alive requests (stdlib ThreadingHTTPServer,
no framework) into World operations and applies what sits between a client and the real API:
injected faults, added latency, request accounting. Paths accept `project/name` both as two
segments and as one `%2F`-encoded segment (each raw segment is percent-decoded, then split on '/').

Permissions per route (403 names the first missing one):
  GET  /api/v1/sources[/<project>[/<name>]], /api/v1/sources/id:<id>      View sources
  GET  /api/_private/sources/<project>/<source>/comments                   View sources
  GET  /api/v1/datasets[/<project>[/<dataset>]]                            View labels
  GET  /api/v1/datasets/<p>/<d>/streams[/<name>]                           View labels, View streams
  GET  .../streams/<name>/results                                          Consume streams, View labels, View sources
  POST .../streams/<name>/advance                                          Consume streams, View labels
  POST .../streams/<name>/fetch                                            Consume streams, View labels
  POST .../streams/<name>/reset                                            Consume streams, View labels
  GET  /api/v1/datasets/<p>/<d>/model-tags                                 View labels
  GET  /api/v1/datasets/<p>/<d>/labellers/<version>/validation             View labels
  POST /api/v1/sources/<p>/<s>/statistics                                  View sources
  POST /api/v1/audit_events/query                                          Read audit logs (IXP Audit Log Viewer)
  POST /identity_/connect/token (UiPath Identity, identity.py)             client id, secret and granted scopes
  POST /api/v1/datasets/<p>/<d>/export                                     Export datasets, View labels, View sources
  /_emulator/...                                                           none (test controls)
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

import orjson

from . import dataset_export
from .faults import RESULTS_KINDS, Fault
from .insights import AUDIT_PERMISSION, count_comments, thread_properties
from .identity import TOKEN_PATH
from .world import ApiError, _parse_time_ms

HTML_TEMPLATE = "<html><body><h1>%d %s</h1></body></html>"
REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class _Drop(Exception):
    """Close the connection without answering (with RST when reset=True)."""

    def __init__(self, reset=True):
        self.reset = reset


def _segments(raw_path: str):
    out = []
    for seg in raw_path.split("/"):
        if not seg:
            continue
        dec = unquote(seg)
        for part in dec.split("/"):
            if part:
                out.append(part)
    return out


def _int_param(q, name, default, lo, hi):
    vals = q.get(name)
    if not vals or vals[0] == "":
        return default
    try:
        v = int(vals[0])
    except ValueError:
        raise ApiError(400, "Invalid %s: expected an integer" % name) from None
    if v < lo or v > hi:
        raise ApiError(400, "Invalid %s: must be between %d and %d" % (name, lo, hi))
    return v


def _body_int(body, name, default, lo, hi):
    v = body.get(name, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise ApiError(400, "Invalid %s: must be an integer between %d and %d" % (name, lo, hi))
    return v


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, emu):
        self.emu = emu
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, Handler)

    def handle_error(self, request, client_address):
        # clients that time out or disconnect mid-answer are normal in chaos runs: stay quiet
        if self.emu.verbose:
            super().handle_error(request, client_address)

    def close_all_connections(self):
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "commsmining-emulator/0.1"
    sys_version = ""
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.conns_lock:
                self.server.conns.discard(self.connection)

    def log_message(self, fmt, *args):
        if self.server.emu.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body: bytes, ctype="application/json", headers=None, t0=None):
        reason = REASONS.get(status, "OK" if status < 400 else "Error")
        dur = (time.perf_counter() - t0) * 1000 if t0 is not None else 0.0
        lines = ["HTTP/1.1 %d %s" % (status, reason), "Server: commsmining-emulator/0.1",
                 "Content-Type: %s" % ctype, "Content-Length: %d" % len(body),
                 "Server-Timing: total;dur=%.1f" % dur]
        if self.close_connection:
            lines.append("Connection: close")
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            self.wfile.flush()
        except Exception:
            pass

    def _drop(self, reset=True):
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    def _handle(self, method):
        t0 = time.perf_counter()
        emu = self.server.emu
        try:
            raw = self._read_body()
        except Exception:
            self.close_connection = True
            return
        raw_path, _, query = self.path.partition("?")
        if raw_path == TOKEN_PATH:
            self._token(method, raw, t0)
            return
        if raw_path.startswith("/_emulator"):
            try:
                status, obj = emu._admin(method, _segments(raw_path)[1:], raw, query)
            except ApiError as e:
                status, obj = e.status, {"status": "error", "message": e.message}
            except Exception as e:  # noqa: BLE001
                status, obj = 400, {"status": "error", "message": "%s: %s" % (type(e).__name__, e)}
            self._send(status, orjson.dumps(obj), t0=t0)
            return
        self._api(method, raw_path, query, raw, t0)

    def _token(self, method, raw, t0):
        """UiPath Identity's token endpoint (identity.py); faults on route `token` apply to it."""
        emu = self.server.emu
        fault = emu.faults.pick("token") if emu._has_faults() else None
        if fault is not None and fault.kind in ("delay", "hang", "drop", "status"):
            emu._record(method, TOKEN_PATH, 0 if fault.kind in ("hang", "drop") else fault.status, "token")
            if fault.kind == "delay":
                emu._sleep(fault.seconds)
            elif fault.kind in ("hang", "drop"):
                if fault.kind == "hang":
                    emu._sleep(fault.seconds)
                self._drop(reset=fault.kind == "drop")
                return
            else:
                self._send(fault.status, orjson.dumps({"error": "temporarily_unavailable"}), t0=t0)
                return
        if method != "POST":
            status, obj = 405, {"error": "invalid_request"}
        else:
            status, obj = emu.identity.token(raw)
        emu._record(method, TOKEN_PATH, status, "token")
        self._send(status, orjson.dumps(obj), headers={"Cache-Control": "no-store"}, t0=t0)

    def _api(self, method, raw_path, query, raw, t0):
        emu = self.server.emu
        segs = _segments(raw_path)
        route, fn, args = match(method, segs)
        fault = emu.faults.pick(route or "unknown") if emu._has_faults() else None
        drop_after = False
        if fault is not None:
            k = fault.kind
            if k == "delay":
                emu._sleep(fault.seconds)
            elif k == "hang":
                emu._record(method, self.path, 0, route)
                emu._sleep(fault.seconds)
                self._drop(reset=False)
                return
            elif k == "drop":
                emu._record(method, self.path, 0, route)
                self._drop(reset=True)
                return
            elif k == "drop_after":
                drop_after = True
            elif k in RESULTS_KINDS:
                pass  # shapes the answer below, after the usual checks
            elif k == "html":
                emu._record(method, self.path, fault.status, route)
                body = fault.body or HTML_TEMPLATE % (fault.status, REASONS.get(fault.status, "Error"))
                self._send(fault.status, body.encode("utf-8"), ctype="text/html; charset=utf-8", t0=t0)
                return
            else:  # status
                emu._record(method, self.path, fault.status, route)
                headers = {}
                if fault.retry_after is not None:
                    ra = fault.retry_after
                    headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
                msg = fault.body or "Injected fault: %d %s" % (fault.status, REASONS.get(fault.status, "Error"))
                self._send(fault.status, orjson.dumps({"status": "error", "message": msg}), headers=headers, t0=t0)
                return
        # Latency is a call's round trip, at least: half before the call is handled (the request on its way), the
        # rest once it is (the answer on its way), less what handling took. Handling is this process's CPU, which
        # a busy emulator shares among its threads and a tenant's servers do not: counted inside the latency, it
        # does not make a call slower because other clients call at the same time.
        due = time.perf_counter() + emu.latency_ms / 1000.0 if emu.latency_ms else None
        if due is not None:
            emu._sleep(emu.latency_ms / 2000.0)
        headers = None
        try:
            auth = self.headers.get("Authorization") or ""
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
            if token is None or token not in emu.world.tokens:
                raise ApiError(401, "Unauthorized")
            if emu.identity.expired(token):
                raise ApiError(401, "Unauthorized: the access token has expired")
            if fn is None:
                if route == "method":
                    raise ApiError(405, "405 Method Not Allowed")
                raise ApiError(404, "404 Not Found")
            q = parse_qs(query, keep_blank_values=True) if query else {}
            body = None
            if method == "POST":
                try:
                    body = orjson.loads(raw) if raw.strip() else {}
                except orjson.JSONDecodeError:
                    raise ApiError(400, "Invalid JSON body") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "Invalid JSON body: expected an object")
            if fault is not None and fault.kind == "stall":
                status, obj = h_results_stalled(emu.world, token, q, body, *args)
            else:
                status, obj = fn(emu.world, token, q, body, *args)
            if fault is not None and fault.kind == "omit_more_results" and status == 200:
                obj.pop("more_results", None)
        except ApiError as e:
            status, obj = e.status, {"status": "error", "message": e.message}
        except Exception as e:  # noqa: BLE001
            status, obj = 500, {"status": "error", "message": "Internal error: %s" % e}
        emu._record(method, self.path, 0 if drop_after else status, route)
        if due is not None:
            emu._sleep(due - time.perf_counter())
        if drop_after:
            self._drop(reset=True)
            return
        self._send(status, orjson.dumps(obj), headers=headers, t0=t0)


# ---------------------------------------------------------------------------------------------
# Route handlers: fn(world, token, query, body, *path_args) -> (status, obj)
# ---------------------------------------------------------------------------------------------

def h_sources_all(w, tok, q, b):
    w.check(tok, None, ["View sources"])
    perms, projects = w.tokens[tok]
    srcs = [s.to_json() for s in w.sources.values() if projects is None or s.project in projects]
    return 200, {"status": "ok", "sources": srcs}


def h_sources_project(w, tok, q, b, project):
    if project.startswith("id:"):
        s = w.source_by_id(project[3:])
        w.check(tok, s.project, ["View sources"])
        return 200, {"status": "ok", "source": s.to_json()}
    w.check(tok, project, ["View sources"])
    w.require_project(project)
    return 200, {"status": "ok", "sources": [s.to_json() for s in w.sources.values() if s.project == project]}


def h_source(w, tok, q, b, project, name):
    w.check(tok, project, ["View sources"])
    w.require_project(project)
    return 200, {"status": "ok", "source": w.source(project, name).to_json()}


def h_datasets_all(w, tok, q, b):
    w.check(tok, None, ["View labels"])
    perms, projects = w.tokens[tok]
    return 200, {"status": "ok", "datasets": [d.to_json() for d in w.datasets.values() if projects is None or d.project in projects]}


def h_datasets_project(w, tok, q, b, project):
    w.check(tok, project, ["View labels"])
    w.require_project(project)
    return 200, {"status": "ok", "datasets": [d.to_json() for d in w.datasets.values() if d.project == project]}


def h_dataset(w, tok, q, b, project, ds):
    w.check(tok, project, ["View labels"])
    w.require_project(project)
    return 200, {"status": "ok", "dataset": w.dataset(project, ds).to_json()}


# UiPath's "Get a stream by name" (and the list of streams): View labels and View streams.
STREAM_DEFINITION = ["View labels", "View streams"]


def h_streams(w, tok, q, b, project, ds):
    w.check(tok, project, STREAM_DEFINITION)
    w.require_project(project)
    d = w.dataset(project, ds)
    return 200, {"status": "ok", "streams": [s.to_json() for s in d.streams.values()]}


def h_stream(w, tok, q, b, project, ds, name):
    w.check(tok, project, STREAM_DEFINITION)
    w.require_project(project)
    return 200, {"status": "ok", "stream": w.stream(project, ds, name).to_json()}


def h_results(w, tok, q, b, project, ds, name):
    w.check(tok, project, ["Consume streams", "View labels", "View sources"])
    w.require_project(project)
    st = w.stream(project, ds, name)
    mr = _int_param(q, "max_results", 16, 1, 32)
    mf = _int_param(q, "max_filtered", None, 1, 1024)
    return 200, w.results(st, mr, mf)


def h_results_stalled(w, tok, q, b, project, ds, name):
    """A stuck queue: nothing served, `more_results` true, and the continuation of the current position."""
    w.check(tok, project, ["Consume streams", "View labels", "View sources"])
    w.require_project(project)
    st = w.stream(project, ds, name)
    with w.lock:
        position = st.position
    return 200, {"status": "ok", "results": [], "num_filtered": 0, "more_results": True,
                 "continuation": w.encode_seq(st, position)}


def h_fetch(w, tok, q, b, project, ds, name):
    w.check(tok, project, ["Consume streams", "View labels"])
    w.require_project(project)
    st = w.stream(project, ds, name)
    size = _body_int(b, "size", 16, 1, 1024)
    mf = _body_int(b, "max_filtered", None, 1, 1024)
    return 200, w.fetch(st, size, mf)


def h_advance(w, tok, q, b, project, ds, name):
    w.check(tok, project, ["Consume streams", "View labels"])
    w.require_project(project)
    st = w.stream(project, ds, name)
    # AdvanceStreamRequest is {sequence_id} only: the API's validation refuses any other key.
    unknown = sorted(set(b) - {"sequence_id"})
    if unknown:
        raise ApiError(400, "Invalid JSON body: unknown field `%s`, expected `sequence_id`" % unknown[0])
    token = b.get("sequence_id")
    if not isinstance(token, str) or not token:
        raise ApiError(400, "Missing sequence_id")
    idx = w.decode_seq(st, token)
    w.advance(st, idx)
    return 200, {"status": "ok", "sequence_id": token}


def h_reset(w, tok, q, b, project, ds, name):
    # UiPath's reset page: a reset needs what consuming needs ("Modify streams" only changes a definition).
    w.check(tok, project, ["Consume streams", "View labels"])
    w.require_project(project)
    st = w.stream(project, ds, name)
    value = b.get("to_comment_created_at")
    try:
        t_ms = _parse_time_ms(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "Invalid to_comment_created_at: %r is not an RFC 3339 datetime" % (value,)) from None
    idx = w.reset(st, t_ms)
    return 200, {"status": "ok", "sequence_id": w.encode_seq(st, idx), "stream": st.to_json()}


def h_export(w, tok, q, b, project, source):
    w.check(tok, project, ["View sources"])
    w.require_project(project)
    src = w.source(project, source)
    limit = _int_param(q, "limit", 64, 1, 256)

    def ts(name):
        v = q.get(name)
        if not v or not v[0]:
            return None
        try:
            return _parse_time_ms(v[0])
        except (ValueError, TypeError, OverflowError):
            raise ApiError(400, "Invalid %s" % name) from None

    after = (q.get("after") or [None])[0] or None
    body = w.export(src, ts("from_timestamp"), ts("to_timestamp"), after, limit)
    if (q.get("include_thread_properties") or [""])[0].lower() == "true":
        body["thread_properties"] = [thread_properties(c) for c in body["comments"]]
    return 200, body


def h_model_tags(w, tok, q, b, project, ds):
    w.check(tok, project, ["View labels"])
    w.require_project(project)
    return 200, {"status": "ok", "model_tags": w.models.model_tags(w.dataset(project, ds))}


def h_validation(w, tok, q, b, project, ds, version):
    w.check(tok, project, ["View labels"])
    w.require_project(project)
    d = w.dataset(project, ds)
    if not version.isdigit():
        raise ApiError(400, "Invalid model version %r: expected an integer" % version)
    return 200, {"status": "ok", "validation": w.models.validation(d, int(version))}


def h_source_statistics(w, tok, q, b, project, source):
    w.check(tok, project, ["View sources"])
    w.require_project(project)
    src = w.source(project, source)
    return 200, {"status": "ok", "statistics": {"num_comments": count_comments(w, src, b.get("comment_filter"))}}


def h_audit_events(w, tok, q, b):
    # Tenant-wide: "Read audit logs" (the IXP Audit Log Viewer role), on no particular project.
    w.check(tok, None, [AUDIT_PERMISSION])
    return 200, w.audit.query(b)


def h_dataset_export(w, tok, q, b, project, ds):
    # The export holds comments and their labels ("Dataset - Export" in IXP's role tables).
    w.check(tok, project, ["Export datasets", "View labels", "View sources"])
    w.require_project(project)
    return 200, dataset_export.export(w, w.dataset(project, ds), b)


STREAM_OPS = {"results": ("GET", h_results), "advance": ("POST", h_advance), "reset": ("POST", h_reset),
              "fetch": ("POST", h_fetch)}


def match(method, s):
    """-> (route_name, handler or None, args). route_name 'method' means wrong method."""
    n = len(s)

    def want(m, route, fn, args=()):
        if method != m:
            return "method", None, ()
        return route, fn, args

    if n >= 2 and s[0] == "api" and s[1] == "v1":
        if n >= 3 and s[2] == "sources":
            if n == 3:
                return want("GET", "sources", h_sources_all)
            if n == 4:
                return want("GET", "sources", h_sources_project, (s[3],))
            if n == 5:
                return want("GET", "sources", h_source, (s[3], s[4]))
            if n == 6 and s[5] == "statistics":
                return want("POST", "statistics", h_source_statistics, (s[3], s[4]))
        elif n >= 3 and s[2] == "datasets":
            if n == 3:
                return want("GET", "datasets", h_datasets_all)
            if n == 4:
                return want("GET", "datasets", h_datasets_project, (s[3],))
            if n == 5:
                return want("GET", "datasets", h_dataset, (s[3], s[4]))
            if n == 6 and s[5] == "export":
                return want("POST", "export_dataset", h_dataset_export, (s[3], s[4]))
            if s[5] == "streams":
                if n == 6:
                    return want("GET", "streams", h_streams, (s[3], s[4]))
                if n == 7:
                    return want("GET", "streams", h_stream, (s[3], s[4], s[6]))
                if n == 8 and s[7] in STREAM_OPS:
                    m, fn = STREAM_OPS[s[7]]
                    return want(m, s[7], fn, (s[3], s[4], s[6]))
            elif n == 6 and s[5] == "model-tags":
                return want("GET", "model-tags", h_model_tags, (s[3], s[4]))
            elif n == 8 and s[5] == "labellers" and s[7] == "validation":
                return want("GET", "validation", h_validation, (s[3], s[4], s[6]))
        elif n == 4 and s[2] == "audit_events" and s[3] == "query":
            return want("POST", "audit_events", h_audit_events)
    elif n == 6 and s[0] == "api" and s[1] == "_private" and s[2] == "sources" and s[5] == "comments":
        return want("GET", "comments", h_export, (s[3], s[4]))
    return None, None, ()


def fault_from_json(d: dict) -> Fault:
    allowed = {"route", "kind", "status", "retry_after", "seconds", "rate", "times", "body"}
    unknown = set(d) - allowed
    if unknown:
        raise ApiError(400, "Unknown fault keys: %s" % ", ".join(sorted(unknown)))
    try:
        return Fault(**d)
    except (TypeError, ValueError) as e:
        raise ApiError(400, str(e)) from None
