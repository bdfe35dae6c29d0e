"""The Emulator object: start/stop a server in a background thread and drive it from tests.

Why this module exists: it is the stable Python contract used by the connector's end-to-end
tests, the demo, chaos tests and benchmarks (and mirrored over HTTP under /_emulator/ so a
subprocess emulator can be driven from another process).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from urllib.parse import parse_qs

import orjson

from .dataset_export import exported_count
from .faults import Fault, FaultSet
from .identity import DEFAULT_LIFETIME, DEFAULT_SCOPES, TOKEN_PATH, Identity
from .insights import AuditLog, Models
from .server import EmulatorHTTPServer, fault_from_json
from .world import DEFAULT_TOKEN, ApiError, World, _parse_time_ms


class Emulator:
    def __init__(self, seed=7, comments=None, scenario="default", backward_advance="accept",
                 host="127.0.0.1", port=0, latency_ms=0, verbose=False, faults=(), token_lifetime=DEFAULT_LIFETIME):
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the emulator binds 127.0.0.1 only")
        self.world = World(seed=seed, comments=comments, scenario=scenario, backward_advance=backward_advance)
        # The model history and the audit log read the world; the world does not import them.
        self.world.models = Models(self.world)
        self.world.models.build()
        self.world.audit = AuditLog(self.world)
        self.world.audit.build()
        self.identity = Identity(self.world, token_lifetime)  # POST /identity_/connect/token
        self.seed = seed
        self.host = "127.0.0.1"
        self.port = port
        self.latency_ms = float(latency_ms or 0)
        self.verbose = verbose
        self.faults = FaultSet(seed)
        for f in faults:
            self.inject(f)
        self._log = deque(maxlen=100_000)
        self._stats_lock = threading.Lock()
        self._count = 0
        self._by_route = Counter()
        self._by_status = Counter()
        self._server = None
        self._thread = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    @property
    def token(self) -> str:
        return DEFAULT_TOKEN

    @property
    def token_url(self) -> str:
        """The token endpoint External Applications sign in at (identity.py)."""
        return self.url + TOKEN_PATH

    def add_client(self, client_id, client_secret, scopes=DEFAULT_SCOPES, permissions=None, projects=None) -> str:
        """Registers an External Application: its secret, the scopes it was granted and the permissions its tokens carry."""
        return self.identity.add_client(client_id, client_secret, scopes, permissions, projects)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return "http://127.0.0.1:%d" % self._server.server_address[1]  # ignore-https-check

    def start(self) -> "Emulator":
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = EmulatorHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="commsmining-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        srv, self._server = self._server, None
        if srv is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay/hang faults or latency
        srv.shutdown()
        srv.close_all_connections()
        srv.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------------ controls
    def add_token(self, token=None, permissions=None, projects=None) -> str:
        return self.world.add_token(token, permissions, projects)

    def upload(self, project, source_name, n=1, timestamp=None, days_back=None) -> list:
        """Upload n new comments (after every comment so far); returns their uids.

        `timestamp` (RFC 3339 string, aware datetime or epoch ms) sets when they were sent;
        `days_back` sends them that many days before their upload (a late upload). Default: 30 min before.
        """
        if timestamp is not None and not isinstance(timestamp, int):
            timestamp = _parse_time_ms(timestamp if isinstance(timestamp, str) else timestamp.isoformat())
        return self.world.upload(project, source_name, n, timestamp_ms=timestamp, days_back=days_back)

    def reupload(self, project, source_name, uid, text=None) -> dict:
        """Upload an existing comment again with new text (default: an edit note appended to its body).

        Same uid, id, timestamp and created_at; `last_modified` is the re-upload time. Every stream
        over a dataset holding the source serves it again; the export serves it in the old one's place.
        Returns the new version.
        """
        return self.world.reupload(project, source_name, uid, text)

    def reset(self, project, dataset, stream, to_comment_created_at) -> int:
        """What `POST .../reset` does: move the stream back (or on) to the first comment created at or
        after the time; returns the new queue position. A forced re-delivery for tests."""
        st = self._stream(project, dataset, stream)
        return self.world.reset(st, _parse_time_ms(to_comment_created_at))

    def consume(self, project, dataset, stream, n) -> list:
        """Another consumer of the stream (a robot, another integration) reads and advances past up to `n`
        comments; returns their uids. A stream has one position: every reader's next comment moves with it."""
        return self.world.consume(self._stream(project, dataset, stream), int(n))

    def next_uid(self, project, dataset, stream):
        """The uid of the comment the stream serves next to any reader (None: nothing pending); consumes nothing."""
        st = self._stream(project, dataset, stream)
        _, idxs, _, _, _ = self.world._scan(st, 1, 1024)
        return self.world.uid_of(st.dataset, idxs[0]) if idxs else None

    def comments_in_several_streams(self) -> int:
        """How many distinct uids are in the queues of more than one stream (all datasets)."""
        seen = Counter()
        for ds in self.world.datasets.values():
            for st in ds.streams.values():
                seen.update({ds.uid_at(i) for i in range(ds.total()) if st.matches(i)})
        return sum(1 for n in seen.values() if n > 1)

    def create_stream(self, project, dataset, name, model=True, comment_filter=None, at="end"):
        return self.world.create_stream(project, dataset, name, model, comment_filter, at).to_json()

    def set_model_tag(self, project, dataset, tag, version):
        """Point a model tag (`live` or `staging`) of a dataset at a version."""
        self.world.models.set_tag(self.world.dataset(project, dataset), tag, version)

    def delete_model_version(self, project, dataset, version):
        """Remove a model version: its validation answers 404 from now on (tags and streams may still name it)."""
        self.world.models.delete_version(self.world.dataset(project, dataset), version)

    def add_audit_events(self, n=1, at=None) -> list:
        """Append n audit events, 1 s apart, from `at` (epoch ms; default: the last n seconds before now); returns them."""
        return self.world.audit.add(n, at)

    def _stream(self, project, dataset, stream):
        return self.world.stream(project, dataset, stream)

    def stream_state(self, project, dataset, stream) -> dict:
        return self.world.stream_state(self._stream(project, dataset, stream))

    def consumed_uids(self, project, dataset, stream) -> list:
        st = self._stream(project, dataset, stream)
        return [self.world.uid_of(st.dataset, i) for i in self.world.consumed_indexes(st)]

    def served_uids(self, project, dataset, stream) -> list:
        st = self._stream(project, dataset, stream)
        return [self.world.uid_of(st.dataset, i) for i in self.world.served_indexes(st)]

    def served_results(self, project, dataset, stream) -> list:
        """Every /results entry the stream has served ({comment, prediction, continuation}), in queue order.

        A comment served again after a re-upload is there once per version (the later one last).
        """
        st = self._stream(project, dataset, stream)
        return [self.world.result_at(st, i) for i in self.world.served_indexes(st)]

    def inject(self, fault: Fault) -> Fault:
        if isinstance(fault, dict):
            fault = fault_from_json(fault)
        return self.faults.add(fault)

    def clear_faults(self):
        self.faults.clear()

    def _sleep(self, seconds: float):
        if seconds > 0:
            self._stopping.wait(seconds)

    def _has_faults(self) -> bool:
        return bool(self.faults._faults)

    def set_latency(self, ms):
        self.latency_ms = float(ms or 0)

    @property
    def backward_advance(self) -> str:
        return self.world.backward_advance

    @backward_advance.setter
    def backward_advance(self, mode):
        if mode not in World.BACKWARD_MODES:
            raise ValueError("backward_advance must be one of %s" % (World.BACKWARD_MODES,))
        self.world.backward_advance = mode

    @property
    def request_log(self) -> list:
        """(method, raw path with query, status) of the last 100k API calls; status 0 = dropped/hung."""
        with self._stats_lock:
            return list(self._log)

    def stats(self) -> dict:
        with self._stats_lock:
            return {"requests": self._count, "by_route": dict(self._by_route), "by_status": dict(self._by_status),
                    "faults_fired": self.faults.fired}

    def _record(self, method, path, status, route):
        with self._stats_lock:
            self._count += 1
            self._by_route[route or "unknown"] += 1
            self._by_status[status] += 1
            self._log.append((method, path, status))

    # ------------------------------------------------------------------ HTTP admin (/_emulator/...)
    def _admin(self, method, segs, raw, query):
        body = orjson.loads(raw) if raw.strip() else {}
        w = self.world
        if segs == ["health"] and method == "GET":
            return 200, {"status": "ok", "url": self.url, "token": self.token, "scenario": w.scenario,
                         "comments": w.n_comments, "seed": w.seed, "backward_advance": w.backward_advance,
                         "time": time.time()}
        if segs == ["stats"] and method == "GET":
            stats = self.stats()  # JSON keys are strings (orjson refuses the integer status codes)
            stats["by_status"] = {str(status): n for status, n in stats["by_status"].items()}
            return 200, {"status": "ok", **stats}
        if segs == ["requests"] and method == "GET":
            q = parse_qs(query)
            last = int((q.get("last") or ["1000"])[0])
            log = self.request_log[-last:] if last > 0 else []
            return 200, {"status": "ok", "requests": [list(r) for r in log]}
        if segs and segs[0] == "streams":
            if len(segs) == 1 and method == "POST":
                st = self.create_stream(body["project"], body["dataset"], body["name"], body.get("model", True),
                                        body.get("comment_filter"), body.get("at", "end"))
                return 200, {"status": "ok", "stream": st}
            if len(segs) in (4, 5) and method == "GET":
                p, d, s = segs[1:4]
                if len(segs) == 4:
                    return 200, {"status": "ok", **self.stream_state(p, d, s)}
                if segs[4] == "consumed_uids":
                    return 200, {"status": "ok", "uids": self.consumed_uids(p, d, s)}
                if segs[4] == "served_uids":
                    return 200, {"status": "ok", "uids": self.served_uids(p, d, s)}
            if len(segs) == 5 and segs[4] == "consume" and method == "POST":
                p, d, s = segs[1:4]
                return 200, {"status": "ok", "uids": self.consume(p, d, s, int(body.get("n", 1)))}
        if len(segs) == 3 and segs[0] == "datasets" and method == "GET":
            ds = w.dataset(segs[1], segs[2])
            return 200, {"status": "ok", "exported_comments": exported_count(ds)}
        if segs == ["upload"] and method == "POST":
            uids = self.upload(body["project"], body["source"], int(body.get("n", 1)), body.get("timestamp"),
                               body.get("days_back"))
            return 200, {"status": "ok", "uids": uids}
        if segs == ["reupload"] and method == "POST":
            return 200, {"status": "ok", "comment": self.reupload(body["project"], body["source"], body["uid"], body.get("text"))}
        if segs == ["reset"] and method == "POST":
            pos = self.reset(body["project"], body["dataset"], body["stream"], body["to_comment_created_at"])
            return 200, {"status": "ok", "position": pos}
        if segs == ["faults"]:
            if method == "POST":
                items = body if isinstance(body, list) else [body]
                added = [self.inject(fault_from_json(f)).to_json() for f in items]
                return 200, {"status": "ok", "faults": added}
            if method == "DELETE":
                self.clear_faults()
                return 200, {"status": "ok"}
            if method == "GET":
                return 200, {"status": "ok", "faults": self.faults.list()}
        if segs == ["latency"] and method == "POST":
            self.set_latency(body.get("ms", 0))
            return 200, {"status": "ok", "ms": self.latency_ms}
        if segs == ["tokens"] and method == "POST":
            tok = self.add_token(body.get("token"), body.get("permissions"), body.get("projects"))
            return 200, {"status": "ok", "token": tok}
        if segs == ["clients"] and method == "POST":
            self.add_client(body["client_id"], body["client_secret"], body.get("scopes", DEFAULT_SCOPES),
                            body.get("permissions"), body.get("projects"))
            return 200, {"status": "ok", "client_id": body["client_id"]}
        if segs == ["token_lifetime"] and method == "POST":
            self.identity.lifetime = float(body["seconds"])
            return 200, {"status": "ok", "seconds": self.identity.lifetime}
        if segs == ["backward_advance"] and method == "POST":
            self.backward_advance = body.get("mode")
            return 200, {"status": "ok", "mode": self.backward_advance}
        raise ApiError(404, "404 Not Found")
