"""The emulated tenant: projects, sources, datasets, streams, tokens and stream positions.

Why this module exists: it holds all the state and semantics (queue order, comment filters,
/results batching, advance/reset rules, continuation tokens, comment export) independent of
HTTP, so the server stays a thin translation layer and the Emulator's Python controls act on
exactly the same objects as the API.

A dataset's queue = generated comments 0..n_gen-1 (computed from the index, never stored)
followed by uploaded comments (stored). Positions are queue indexes; a stream's position is
the index of the next comment it will return.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
import time
from collections import deque
from datetime import datetime, timezone

from . import generator as g

ALL_PERMISSIONS = ["View sources", "View labels", "Consume streams", "Modify streams"]
DEFAULT_TOKEN = "emulator-token"
DEFAULT_MODEL_VERSION = 3
SAME_CREATED_EVERY = 50  # every 50th generated comment shares created_at with its predecessor


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_time_ms(value) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("not a string")
    s = value.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    # trim fractional seconds beyond microseconds
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        s = head + "." + (digits[:6].ljust(6, "0") if digits else "0") + rest[i:]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


class Source:
    def __init__(self, world, project, name, sid_int, created_ms, title, description):
        self.world = world
        self.project = project
        self.name = name
        self.int_id = sid_int
        self.id = "%016x" % sid_int
        self.created_ms = created_ms
        self.title = title
        self.description = description
        self.dataset = None  # home dataset (whose generated queue holds this source's generated comments)
        self.slot = 0
        self.offsets = []  # offsets within the dataset's period that belong to this source
        self.rank = {}
        self.uploaded = []  # list of (ts_ms, comment)
        self.uploaded_ts = []

    def to_json(self):
        ts = g.fmt_ms(self.created_ms)
        return {"id": self.id, "owner": self.project, "name": self.name, "title": self.title,
                "description": self.description, "language": "en", "should_translate": False,
                "sensitive_properties": [], "created_at": ts, "updated_at": ts, "last_modified": ts,
                "_kind": "unknown", "bucket_id": None}

    # local index <-> dataset queue index for generated comments
    def n_gen(self) -> int:
        ds = self.dataset
        period = len(ds.pattern)
        full, rem = divmod(ds.n_gen, period)
        return full * len(self.offsets) + sum(1 for o in self.offsets if o < rem)

    def queue_index(self, k: int) -> int:
        per = len(self.offsets)
        return (k // per) * len(self.dataset.pattern) + self.offsets[k % per]

    def ts_at(self, k: int) -> int:
        n = self.n_gen()
        if k < n:
            return self.dataset.ts_ms(self.queue_index(k))
        return self.uploaded[k - n][0]

    def comment_at(self, k: int) -> dict:
        n = self.n_gen()
        if k < n:
            return self.dataset.comment(self.queue_index(k))
        return self.uploaded[k - n][1]

    def total(self) -> int:
        return self.n_gen() + len(self.uploaded)


class Dataset:
    def __init__(self, world, project, name, did_int, sources, pattern, n_gen, base_ms, step_ms, created_ms, title, description):
        self.world = world
        self.project = project
        self.name = name
        self.int_id = did_int
        self.id = "%016x" % did_int
        self.sources = sources
        self.pattern = pattern  # pattern[offset] -> index into self.sources; period = len(pattern)
        self.n_gen = n_gen
        self.base_ms = base_ms
        self.step_ms = step_ms
        self.created_ms = created_ms
        self.title = title
        self.description = description
        self.salt = g.mix64(world.seed, did_int)
        self.uploaded = []  # list of (created_ms, comment)
        self.streams = {}
        for slot, src in enumerate(sources):
            src.dataset = self
            src.slot = slot
            src.offsets = [o for o, s in enumerate(pattern) if s == slot]

    @property
    def full_name(self):
        return "%s/%s" % (self.project, self.name)

    def to_json(self):
        return {"id": self.id, "owner": self.project, "name": self.name, "title": self.title,
                "description": self.description, "created": g.fmt_ms(self.created_ms),
                "last_modified": g.fmt_ms(self.created_ms), "source_ids": [s.id for s in self.sources],
                "has_sentiment": False, "model_family": "english", "limited_access": False,
                "label_defs": g.label_defs(), "label_groups": [{"name": "default", "label_defs": g.label_defs()}],
                "entity_defs": [{"name": n, "title": n, "kind": n, "inherits_from": []} for n in g.GENERAL_FIELDS],
                "general_fields": [{"api_name": n, "field_type_id": "%08x" % (g.str_salt(n) & 0xFFFFFFFF)} for n in g.GENERAL_FIELDS],
                "_kind": "dataset"}

    def total(self) -> int:
        return self.n_gen + len(self.uploaded)

    def created_at_ms(self, i: int) -> int:
        if i < self.n_gen:
            f = i - i // SAME_CREATED_EVERY
            return self.base_ms + f * self.step_ms + (f * 7919) % 1000
        return self.uploaded[i - self.n_gen][0]

    def ts_ms(self, i: int) -> int:
        return self.created_at_ms(i) - 1_800_000

    def comment_key(self, i: int) -> int:
        return g.mix64(self.salt, i)

    def priority(self, i: int) -> str:
        if i < self.n_gen:
            return g.priority_of(self.comment_key(i))
        return self.uploaded[i - self.n_gen][1]["user_properties"].get("string:Priority")

    def comment(self, i: int) -> dict:
        if i >= self.n_gen:
            return self.uploaded[i - self.n_gen][1]
        period = len(self.pattern)
        src = self.sources[self.pattern[i % period]]
        k = (i // period) * len(src.offsets) + src.offsets.index(i % period)
        key = self.comment_key(i)
        created = self.created_at_ms(i)
        return g.make_comment(key, src.id, k, created, created - 1_800_000, g.priority_of(key))

    def first_index_created_at_or_after(self, t_ms: int) -> int:
        lo, hi = 0, self.total()
        while lo < hi:
            mid = (lo + hi) // 2
            if self.created_at_ms(mid) < t_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo


class Stream:
    def __init__(self, world, dataset, name, model, comment_filter, position, created_ms, title="", description=""):
        self.world = world
        self.dataset = dataset
        self.name = name
        self.int_id = g.mix64(world.seed, g.str_salt("stream:%s/%s" % (dataset.full_name, name)))
        self.id = "%016x" % self.int_id
        self.model = model
        self.thresholds = {" > ".join(t["name"]): t["threshold"] for t in (model or {}).get("label_thresholds", [])}
        self.comment_filter = comment_filter
        self.created_ms = created_ms
        self.updated_ms = created_ms
        self.title = title or name.replace("-", " ").title()
        self.description = description
        self.position = position
        self.initial = position
        self.low = position
        self.max_position = position
        self.advances = 0
        self.resets = 0
        self.log = deque(maxlen=20_000)
        self.served = bytearray()  # bitmap over queue indexes
        self.consumed_memo = None  # (low, position, count) for filtered streams

    @property
    def full_name(self):
        return "%s/%s" % (self.dataset.full_name, self.name)

    def to_json(self):
        d = {"id": self.id, "dataset_id": self.dataset.id, "name": self.name, "title": self.title,
             "description": self.description, "created_at": g.fmt_ms(self.created_ms),
             "updated_at": g.fmt_ms(self.updated_ms), "comment_filter": self.comment_filter or {}}
        if self.model:
            d["model"] = self.model
        return d

    def matches(self, i: int) -> bool:
        f = self.comment_filter
        if not f:
            return True
        ds = self.dataset
        comment = None
        srcs = f.get("sources")
        if srcs:
            comment = ds.comment(i)
            if comment["source_id"] not in srcs:
                return False
        for key, cond in (f.get("user_properties") or {}).items():
            if key == "string:Priority":
                v = ds.priority(i)
            else:
                if comment is None:
                    comment = ds.comment(i)
                v = comment["user_properties"].get(key)
            if not _cond_ok(v, cond):
                return False
        return True

    def mark_served(self, i: int):
        byte = i >> 3
        if byte >= len(self.served):
            self.served.extend(b"\0" * (byte + 1 - len(self.served) + 1024))
        self.served[byte] |= 1 << (i & 7)


def _cond_ok(v, cond) -> bool:
    if not isinstance(cond, dict):
        return v == cond
    if "one_of" in cond and v not in cond["one_of"]:
        return False
    if "not_one_of" in cond and v in cond["not_one_of"]:
        return False
    if "minimum" in cond and (v is None or v < cond["minimum"]):
        return False
    if "maximum" in cond and (v is None or v > cond["maximum"]):
        return False
    return True


def default_model(version: int = DEFAULT_MODEL_VERSION) -> dict:
    return {"version": version, "label_thresholds": g.default_label_thresholds(version)}


URGENT_FILTER = {"user_properties": {"string:Priority": {"one_of": ["Urgent"]}}}


class World:
    BACKWARD_MODES = ("accept", "refuse", "ignore")

    def __init__(self, seed=7, comments=None, scenario="default", backward_advance="accept"):
        if scenario not in ("default", "demo"):
            raise ValueError("unknown scenario %r (default, demo)" % scenario)
        if backward_advance not in self.BACKWARD_MODES:
            raise ValueError("backward_advance must be one of %s" % (self.BACKWARD_MODES,))
        if comments is None:
            comments = 2000 if scenario == "default" else 300
        self.seed = int(seed)
        self.scenario = scenario
        self.n_comments = int(comments)
        self.backward_advance = backward_advance
        self.lock = threading.RLock()
        self._key = hashlib.sha256(b"commsmining-emulator:%d" % self.seed).digest()[:32]
        self.tokens = {DEFAULT_TOKEN: (frozenset(ALL_PERMISSIONS), None)}
        self.sources = {}  # (project, name) -> Source
        self.datasets = {}  # (project, name) -> Dataset
        self.projects = set()
        self.streams_by_id = {}
        self._build()

    # ------------------------------------------------------------------ scenario
    def _src(self, project, name, title, description, created_ms):
        sid = g.mix64(self.seed, g.str_salt("source:%s/%s" % (project, name)))
        s = Source(self, project, name, sid, created_ms, title, description)
        self.sources[(project, name)] = s
        self.projects.add(project)
        return s

    def _build(self):
        base = 1_704_067_200_000  # 2024-01-01T00:00:00Z
        inbox = self._src("acme", "inbox", "ACME shared inbox", "Customer e-mails to the shared inbox.", base - 86_400_000 * 30)
        support = self._src("acme", "support-mailbox", "Support mailbox", "Support team mailbox.", base - 86_400_000 * 29)
        claims = self._src("globex", "claims", "Globex claims", "Claims e-mails.", base - 86_400_000 * 10)
        # period-5 interleaving: offsets 0,1,3 -> inbox; 2,4 -> support-mailbox
        ds = Dataset(self, "acme", "collections", g.mix64(self.seed, g.str_salt("dataset:acme/collections")),
                     [inbox, support], [0, 0, 1, 0, 1], self.n_comments, base, 37_000, base - 86_400_000 * 28,
                     "Collections", "Collections e-mails from both acme mailboxes.")
        gds = Dataset(self, "globex", "claims-ds", g.mix64(self.seed, g.str_salt("dataset:globex/claims-ds")),
                      [claims], [0], 50, base + 3_600_000, 3_600_000, base - 86_400_000 * 9,
                      "Claims", "Globex claims dataset.")
        self.datasets[("acme", "collections")] = ds
        self.datasets[("globex", "claims-ds")] = gds
        t0 = base - 86_400_000 * 27
        self._add_stream(ds, "triage", default_model(), None, 0, t0, "Triage", "All comments with predictions.")
        self._add_stream(ds, "raw", None, None, 0, t0, "Raw", "All comments, no model.")
        self._add_stream(ds, "urgent-only", default_model(), URGENT_FILTER, 0, t0, "Urgent only", "Priority = Urgent.")
        self._add_stream(gds, "claims", default_model(2), None, 0, t0, "Claims", "Globex claims stream.")

    def _add_stream(self, ds, name, model, comment_filter, position, created_ms, title="", description=""):
        st = Stream(self, ds, name, model, comment_filter, position, created_ms, title, description)
        ds.streams[name] = st
        self.streams_by_id[st.int_id] = st
        return st

    # ------------------------------------------------------------------ lookups
    def dataset(self, project, name) -> Dataset:
        ds = self.datasets.get((project, name))
        if ds is None:
            raise ApiError(404, "Dataset '%s/%s' not found" % (project, name))
        return ds

    def stream(self, project, dataset, name) -> Stream:
        ds = self.datasets.get((project, dataset))
        st = ds.streams.get(name) if ds else None
        if st is None:
            raise ApiError(404, "Stream '%s/%s/%s' not found" % (project, dataset, name))
        return st

    def source(self, project, name) -> Source:
        s = self.sources.get((project, name))
        if s is None:
            raise ApiError(404, "Source '%s/%s' not found" % (project, name))
        return s

    def source_by_id(self, sid) -> Source:
        for s in self.sources.values():
            if s.id == sid:
                return s
        raise ApiError(404, "Source with id '%s' not found" % sid)

    def require_project(self, project):
        if project not in self.projects:
            raise ApiError(404, "Project '%s' not found" % project)

    # ------------------------------------------------------------------ tokens / auth
    def add_token(self, token=None, permissions=None, projects=None) -> str:
        if token is None:
            token = "tok-%016x" % g.mix64(self.seed, len(self.tokens), int(time.time() * 1e6))
        perms = frozenset(ALL_PERMISSIONS if permissions is None else permissions)
        self.tokens[token] = (perms, None if projects is None else frozenset(projects))
        return token

    def check(self, token, project, permissions):
        entry = self.tokens.get(token)
        if entry is None:
            raise ApiError(401, "Unauthorized")
        perms, projects = entry
        for p in permissions:
            if p not in perms or (project is not None and projects is not None and project not in projects):
                if project is None:
                    raise ApiError(403, "Forbidden: missing permission '%s'" % p)
                raise ApiError(403, "Forbidden: missing permission '%s' on project '%s'" % (p, project))

    # ------------------------------------------------------------------ continuation tokens
    def _mac(self, payload: bytes) -> bytes:
        return hashlib.blake2b(payload, key=self._key, digest_size=8).digest()

    def encode_seq(self, st: Stream, index: int) -> str:
        payload = struct.pack(">QQ", st.int_id, index)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")

    def decode_seq(self, st: Stream, token) -> int:
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            if len(raw) != 24:
                raise ValueError
            payload, mac = raw[:16], raw[16:]
            if self._mac(payload) != mac:
                raise ValueError
            sid, index = struct.unpack(">QQ", payload)
        except Exception:
            raise ApiError(400, "Invalid sequence_id") from None
        if sid != st.int_id or index > st.dataset.total():
            raise ApiError(400, "Invalid sequence_id")
        return index

    def encode_export(self, src: Source, k: int) -> str:
        payload = b"X" + struct.pack(">QQ", src.int_id, k)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii").rstrip("=")

    def decode_export(self, src: Source, token: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
            if len(raw) != 25 or raw[:1] != b"X" or self._mac(raw[:17]) != raw[17:]:
                raise ValueError
            sid, k = struct.unpack(">QQ", raw[1:17])
        except Exception:
            raise ApiError(400, "Invalid continuation") from None
        if sid != src.int_id:
            raise ApiError(400, "Invalid continuation")
        return k

    # ------------------------------------------------------------------ stream operations
    def _scan(self, st: Stream, max_results: int, max_filtered):
        """Return (position, [indexes], num_filtered, end_index)."""
        with self.lock:
            start = st.position
        ds = st.dataset
        total = ds.total()
        results = []
        filtered = 0
        mf = max_filtered if (max_filtered and st.comment_filter) else 0
        i = start
        while i < total and len(results) + max(0, filtered - mf) < max_results:
            if st.matches(i):
                results.append(i)
            else:
                filtered += 1
            i += 1
        return start, results, filtered, i, total

    def results(self, st: Stream, max_results: int, max_filtered) -> dict:
        start, idxs, filtered, end, total = self._scan(st, max_results, max_filtered)
        ds = st.dataset
        out = []
        model = st.model
        for i in idxs:
            c = ds.comment(i)
            pred = g.make_prediction(c["id"], model["version"], st.thresholds) if model else None
            out.append({"comment": c, "prediction": pred, "continuation": self.encode_seq(st, i + 1)})
        with self.lock:
            for i in idxs:
                st.mark_served(i)
        return {"status": "ok", "results": out, "num_filtered": filtered, "more_results": end < total,
                "continuation": self.encode_seq(st, end)}

    def fetch(self, st: Stream, size: int, max_filtered) -> dict:
        start, idxs, filtered, end, total = self._scan(st, size, max_filtered)
        ds = st.dataset
        model = st.model
        out = []
        for i in idxs:
            c = ds.comment(i)
            pred = g.make_prediction(c["id"], model["version"], st.thresholds) if model else None
            labels, entities = g.legacy_labels(pred)
            out.append({"comment": c, "sequence_id": self.encode_seq(st, i + 1), "labels": labels, "entities": entities})
        with self.lock:
            for i in idxs:
                st.mark_served(i)
        return {"status": "ok", "results": out, "filtered": filtered, "sequence_id": self.encode_seq(st, end),
                "is_end_sequence": end >= total}

    def advance(self, st: Stream, index: int) -> str:
        """Apply an advance; returns the outcome ('moved', 'same', 'backward-accepted', 'ignored')."""
        with self.lock:
            old = st.position
            if index < old:
                mode = self.backward_advance
                if mode == "refuse":
                    st.log.append({"op": "advance", "from": old, "to": index, "outcome": "refused", "at": time.time()})
                    raise ApiError(400, "cannot advance backwards: sequence_id is older than the stream position")
                if mode == "ignore":
                    outcome = "ignored"
                else:
                    outcome = "backward-accepted"
                    st.position = index
            else:
                outcome = "same" if index == old else "moved"
                st.position = index
            st.low = min(st.low, st.position)
            st.max_position = max(st.max_position, st.position)
            st.advances += 1
            st.log.append({"op": "advance", "from": old, "to": index, "outcome": outcome, "at": time.time()})
            return outcome

    def reset(self, st: Stream, t_ms: int) -> int:
        with self.lock:
            old = st.position
            idx = st.dataset.first_index_created_at_or_after(t_ms)
            st.position = idx
            st.low = min(st.low, idx)
            st.max_position = max(st.max_position, idx)
            st.resets += 1
            st.updated_ms = max(st.updated_ms, int(time.time() * 1000))
            st.log.append({"op": "reset", "from": old, "to": idx, "to_comment_created_at": g.fmt_ms(t_ms), "at": time.time()})
            return idx

    # ------------------------------------------------------------------ test controls
    def upload(self, project, source_name, n) -> list:
        src = self.source(project, source_name)
        uids = []
        with self.lock:
            datasets = [d for d in self.datasets.values() if src in d.sources]
            for _ in range(int(n)):
                last = max([d.created_at_ms(d.total() - 1) for d in datasets if d.total()] + [0])
                created = last + 1000
                k = src.total()
                key = g.mix64(self.seed, src.int_id, k, 0xA11)
                c = g.make_comment(key, src.id, k, created, created - 1_800_000, g.priority_of(key))
                src.uploaded.append((created - 1_800_000, c))
                for d in datasets:
                    d.uploaded.append((created, c))
                uids.append(c["uid"])
        return uids

    def create_stream(self, project, dataset, name, model=True, comment_filter=None, at="end", title="", description=""):
        ds = self.dataset(project, dataset)
        with self.lock:
            if name in ds.streams:
                raise ApiError(409, "Stream '%s/%s/%s' already exists" % (project, dataset, name))
            if model is True:
                model = default_model()
            elif not model:
                model = None
            if at == "end":
                pos = ds.total()
            elif at == "start":
                pos = 0
            elif isinstance(at, int):
                pos = max(0, min(at, ds.total()))
            else:
                raise ApiError(400, "at must be 'start', 'end' or an index")
            return self._add_stream(ds, name, model, comment_filter, pos, int(time.time() * 1000), title, description)

    def consumed_indexes(self, st: Stream):
        with self.lock:
            lo, hi = st.low, st.position
        return [i for i in range(lo, hi) if st.matches(i)]

    def consumed_count(self, st: Stream) -> int:
        with self.lock:
            lo, hi = st.low, st.position
        if not st.comment_filter:
            return max(0, hi - lo)
        # incremental memo: stream_state is polled while a stream advances through millions of comments
        memo = st.consumed_memo
        if memo is not None and memo[0] == lo and memo[1] <= hi:
            count = memo[2] + sum(1 for i in range(memo[1], hi) if st.matches(i))
        else:
            count = sum(1 for i in range(lo, hi) if st.matches(i))
        st.consumed_memo = (lo, hi, count)
        return count

    def uid_of(self, ds: Dataset, i: int) -> str:
        if i >= ds.n_gen:
            return ds.uploaded[i - ds.n_gen][1]["uid"]
        period = len(ds.pattern)
        src = ds.sources[ds.pattern[i % period]]
        return "%s.%016x" % (src.id, g.mix64(ds.comment_key(i), 1))

    def served_indexes(self, st: Stream):
        with self.lock:
            bm = bytes(st.served)
        out = []
        for byte, v in enumerate(bm):
            if v:
                for bit in range(8):
                    if v & (1 << bit):
                        out.append(byte * 8 + bit)
        return out

    def stream_state(self, st: Stream) -> dict:
        with self.lock:
            d = {"stream": st.full_name, "position": st.position, "max_position": st.max_position,
                 "initial_position": st.initial, "total": st.dataset.total(), "advances": st.advances,
                 "resets": st.resets, "log": list(st.log)}
        d["consumed"] = self.consumed_count(st)
        return d

    # ------------------------------------------------------------------ comment export
    def export(self, src: Source, from_ts, to_ts, after, limit) -> dict:
        total = src.total()
        if after:
            k = self.decode_export(src, after)
        elif from_ts is not None:
            lo, hi = 0, total
            while lo < hi:
                mid = (lo + hi) // 2
                if src.ts_at(mid) < from_ts:
                    lo = mid + 1
                else:
                    hi = mid
            k = lo
        else:
            k = 0
        out = []
        while k < total and len(out) < limit:
            if to_ts is not None and src.ts_at(k) > to_ts:
                k = total
                break
            out.append(src.comment_at(k))
            k += 1
        cont = None
        if k < total and not (to_ts is not None and src.ts_at(k) > to_ts):
            cont = self.encode_export(src, k)
        return {"status": "ok", "comments": out, "continuation": cont}
