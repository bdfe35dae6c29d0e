"""The emulated tenant: projects, sources, datasets, streams, tokens and stream positions.

Why this module exists: it holds all the state and semantics (queue order, comment filters,
/results batching, advance/reset rules, continuation tokens, comment export) independent of
HTTP, so the server stays a thin translation layer and the Emulator's Python controls act on
exactly the same objects as the API.

A dataset's queue = generated comments 0..n_gen-1 (computed from the index, never stored)
followed by uploaded comments (stored). Positions are queue indexes; a stream's position is
the index of the next comment it will return.

What the real API does and a tidy generator would not (all pure functions of the queue index):
every LATE_EVERY-th generated comment was uploaded late (its `timestamp` is days or years before
its `created_at`), and every REUPLOAD_EVERY-th queue entry is a re-upload of the comment
REUPLOAD_BACK entries earlier (same uid, new `last_modified`, changed text), which a stream serves
again and the export serves in place of the old version. A SourceView dataset holds a source that
another dataset holds too, so one comment is in several datasets' streams.
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

# every permission a served route checks ("Export datasets": the dataset export; IXP calls it "Dataset - Export")
ALL_PERMISSIONS = ["View sources", "View labels", "View streams", "Consume streams", "Read audit logs", "Export datasets"]
DEFAULT_TOKEN = "emulator-token"
DEFAULT_MODEL_VERSION = 3
SAME_CREATED_EVERY = 50  # every 50th generated comment shares created_at with its predecessor
LATE_EVERY, LATE_AT = 97, 41  # queue index i with i % 97 == 41: sent long before it was uploaded
REUPLOAD_EVERY, REUPLOAD_AT, REUPLOAD_BACK = 101, 57, 55  # i % 101 == 57 (i >= 110): re-upload of i - 55
DAY_MS = 86_400_000


def is_late(i: int) -> bool:
    return i % LATE_EVERY == LATE_AT


def is_reupload(i: int) -> bool:
    return i >= 2 * REUPLOAD_BACK and i % REUPLOAD_EVERY == REUPLOAD_AT


def original_of(i: int) -> int:
    """The queue index of the comment that entry i is a version of (i itself unless a re-upload)."""
    return i - REUPLOAD_BACK if is_reupload(i) else i


def lateness_ms(key: int) -> int:
    """How long before its upload a late comment was sent: days for most, years for some."""
    h = g.mix64(key, 0x1A7E)
    if h % 4 == 0:
        return (1 + (h >> 8) % 7) * 365 * DAY_MS
    return (1 + (h >> 8) % 30) * DAY_MS + (h >> 16) % DAY_MS


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


def updated(comment: dict, uploaded_ms: int, text=None) -> dict:
    """A re-upload's version: last_modified is its upload time, and always later than the old one's."""
    return g.updated_comment(comment, max(uploaded_ms, _parse_time_ms(comment["last_modified"]) + 1000), text)


class Source:
    def __init__(self, world, project, name, sid_int, created_ms, title, description, kind="unknown"):
        self.world = world
        self.kind = kind  # `_kind`: call, chat, unknown, ixp_design, ixp_runtime (SourceKind)
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
        self.uploaded = []  # list of (ts_ms, created_ms, comment), in upload order
        self.updates = {}  # uid -> latest version, for comments re-uploaded at run time
        self._export_memo = None  # (n_gen, len(uploaded), [(ts_ms, kind, index)]) of the out-of-order part

    def to_json(self):
        ts = g.fmt_ms(self.created_ms)
        return {"id": self.id, "owner": self.project, "name": self.name, "title": self.title,
                "description": self.description, "language": "en", "should_translate": False,
                "sensitive_properties": [], "created_at": ts, "updated_at": ts, "last_modified": ts,
                "_kind": self.kind, "bucket_id": None}

    # local index <-> dataset queue index for generated comments
    def n_gen(self) -> int:
        ds = self.dataset
        period = len(ds.pattern)
        full, rem = divmod(ds.n_gen, period)
        return full * len(self.offsets) + sum(1 for o in self.offsets if o < rem)

    def queue_index(self, k: int) -> int:
        per = len(self.offsets)
        return (k // per) * len(self.dataset.pattern) + self.offsets[k % per]

    def regular(self, k: int) -> bool:
        """Generated local comment k is exported in local order (neither late nor a re-upload entry)."""
        i = self.queue_index(k)
        return not (is_late(i) or is_reupload(i))

    def gen_ts(self, k: int) -> int:
        return self.dataset.ts_ms(self.queue_index(k))

    def gen_latest(self, k: int) -> dict:
        """Generated local comment k as the export serves it: its latest version."""
        ds = self.dataset
        i = self.queue_index(k)
        j = i + REUPLOAD_BACK
        c = ds.comment(j) if j < ds.n_gen and is_reupload(j) else ds.comment(i)
        return self.updates.get(c["uid"], c)

    def out_of_order(self) -> list:
        """Late generated comments and every uploaded one, ordered by timestamp: (ts, kind, index)."""
        n = self.n_gen()
        memo = self._export_memo
        if memo is not None and memo[0] == n and memo[1] == len(self.uploaded):
            return memo[2]
        items = []
        ds = self.dataset
        i = LATE_AT
        while i < ds.n_gen:
            if ds.sources[ds.pattern[i % len(ds.pattern)]] is self and not is_reupload(i):
                items.append((ds.ts_ms(i), 0, self.local_index(i)))
            i += LATE_EVERY
        for u, (ts, _, _) in enumerate(self.uploaded):
            items.append((ts, 1, u))
        items.sort()
        self._export_memo = (n, len(self.uploaded), items)
        return items

    def local_index(self, i: int) -> int:
        period = len(self.dataset.pattern)
        return (i // period) * len(self.offsets) + self.offsets.index(i % period)

    def item_comment(self, kind: int, index: int) -> dict:
        if kind == 0:
            return self.gen_latest(index)
        c = self.uploaded[index][2]
        return self.updates.get(c["uid"], c)

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
                "label_defs": g.label_defs(), "label_groups": g.label_groups(),
                "entity_defs": g.entity_defs(), "general_fields": g.general_field_defs(),
                "_label_properties": ["0000000000000001"], "_timezone": "Europe/London",
                "_preferred_locales": {"default": "en-GB", "preferences": [{"language": "en", "locale": "en-GB"}]},
                "_dataset_flags": [], "_model_config": {}, "readonly": False}

    def total(self) -> int:
        return self.n_gen + len(self.uploaded)

    def created_at_ms(self, i: int) -> int:
        if i < self.n_gen:
            f = i - i // SAME_CREATED_EVERY
            return self.base_ms + f * self.step_ms + (f * 7919) % 1000
        return self.uploaded[i - self.n_gen][0]

    def ts_ms(self, i: int) -> int:
        """A generated comment's `timestamp` (when it was sent): 30 min before its upload, or long before."""
        i = original_of(i)
        created = self.created_at_ms(i)
        if is_late(i):
            return created - lateness_ms(self.comment_key(i))
        return created - 1_800_000

    def comment_key(self, i: int) -> int:
        return g.mix64(self.salt, i)

    def priority(self, i: int) -> str:
        if i < self.n_gen:
            return g.priority_of(self.comment_key(original_of(i)))
        return self.uploaded[i - self.n_gen][1]["user_properties"].get("string:Priority")

    def comment(self, i: int) -> dict:
        if i >= self.n_gen:
            return self.uploaded[i - self.n_gen][1]
        if is_reupload(i):
            return updated(self.comment(original_of(i)), self.created_at_ms(i))
        period = len(self.pattern)
        src = self.sources[self.pattern[i % period]]
        k = (i // period) * len(src.offsets) + src.offsets.index(i % period)
        key = self.comment_key(i)
        created = self.created_at_ms(i)
        return g.make_comment(key, src.id, k, created, self.ts_ms(i), g.priority_of(key))

    def uid_at(self, i: int) -> str:
        if i >= self.n_gen:
            return self.uploaded[i - self.n_gen][1]["uid"]
        i = original_of(i)
        src = self.sources[self.pattern[i % len(self.pattern)]]
        return "%s.%016x" % (src.id, g.mix64(self.comment_key(i), 1))

    def first_index_created_at_or_after(self, t_ms: int) -> int:
        lo, hi = 0, self.total()
        while lo < hi:
            mid = (lo + hi) // 2
            if self.created_at_ms(mid) < t_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo


class SourceView(Dataset):
    """A dataset over a source that another dataset (its home) generates: same comments, same uids.

    Its queue is the source's entries of the home queue, in the same order, then what is uploaded
    to the source later (World.upload and World.reupload append to every dataset holding it).
    """

    def __init__(self, world, project, name, did_int, source, created_ms, title, description):
        self.world = world
        self.project = project
        self.name = name
        self.int_id = did_int
        self.id = "%016x" % did_int
        self.sources = [source]
        self.source = source
        self.created_ms = created_ms
        self.title = title
        self.description = description
        self.salt = g.mix64(world.seed, did_int)
        self.uploaded = []
        self.streams = {}

    @property
    def n_gen(self) -> int:
        return self.source.n_gen()

    def _home(self, i: int) -> int:
        return self.source.queue_index(i)

    def created_at_ms(self, i: int) -> int:
        if i < self.n_gen:
            return self.source.dataset.created_at_ms(self._home(i))
        return self.uploaded[i - self.n_gen][0]

    def ts_ms(self, i: int) -> int:
        return self.source.dataset.ts_ms(self._home(i))

    def priority(self, i: int) -> str:
        if i < self.n_gen:
            return self.source.dataset.priority(self._home(i))
        return self.uploaded[i - self.n_gen][1]["user_properties"].get("string:Priority")

    def comment(self, i: int) -> dict:
        if i < self.n_gen:
            return self.source.dataset.comment(self._home(i))
        return self.uploaded[i - self.n_gen][1]

    def uid_at(self, i: int) -> str:
        if i < self.n_gen:
            return self.source.dataset.uid_at(self._home(i))
        return self.uploaded[i - self.n_gen][1]["uid"]


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
        self.models = None  # the model history and the audit log (insights.py), set by the Emulator that owns this
        self.audit = None

    # ------------------------------------------------------------------ scenario
    def _src(self, project, name, title, description, created_ms, kind="unknown"):
        sid = g.mix64(self.seed, g.str_salt("source:%s/%s" % (project, name)))
        s = Source(self, project, name, sid, created_ms, title, description, kind)
        self.sources[(project, name)] = s
        self.projects.add(project)
        return s

    def _build(self):
        base = 1_704_067_200_000  # 2024-01-01T00:00:00Z
        inbox = self._src("acme", "inbox", "ACME shared inbox", "Customer e-mails to the shared inbox.", base - 86_400_000 * 30)
        # Source kinds of the API's SourceKind enum: e-mail sources are `unknown`; a chat and a call source.
        support = self._src("acme", "support-mailbox", "Support mailbox", "Support team mailbox.", base - 86_400_000 * 29,
                            "chat")
        claims = self._src("globex", "claims", "Globex claims", "Claims e-mails.", base - 86_400_000 * 10, "call")
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
        # the support mailbox is in a second dataset: its comments are in both datasets' streams
        desk = SourceView(self, "acme", "support-desk", g.mix64(self.seed, g.str_salt("dataset:acme/support-desk")),
                          support, base - 86_400_000 * 20, "Support desk", "The support mailbox on its own.")
        self.datasets[("acme", "support-desk")] = desk
        self._add_stream(desk, "escalations", default_model(4), None, 0, t0, "Escalations",
                         "Every support e-mail, under the support team's model.")

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

    def seal(self, tag: bytes, fmt: str, *values: int, padded: bool = False) -> str:
        """An opaque continuation token: `tag`, the values packed as `fmt` and their MAC, in URL-safe base64."""
        payload = tag + struct.pack(fmt, *values)
        token = base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")
        return token if padded else token.rstrip("=")

    def unseal(self, tag: bytes, fmt: str, token) -> tuple:
        """The values of a token `seal` made with this `tag` and `fmt`; ValueError (or TypeError) for anything else."""
        raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        size = len(tag) + struct.calcsize(fmt)
        if len(raw) != size + 8 or raw[:len(tag)] != tag or self._mac(raw[:size]) != raw[size:]:
            raise ValueError("not a token of this world")
        return struct.unpack(fmt, raw[len(tag):size])

    def encode_seq(self, st: Stream, index: int) -> str:
        return self.seal(b"", ">QQ", st.int_id, index, padded=True)

    def decode_seq(self, st: Stream, token) -> int:
        try:
            sid, index = self.unseal(b"", ">QQ", token)
        except Exception:
            raise ApiError(400, "Invalid sequence_id") from None
        if sid != st.int_id or index > st.dataset.total():
            raise ApiError(400, "Invalid sequence_id")
        return index

    def encode_export(self, src: Source, pos) -> str:
        return self.seal(b"X", ">QQQ", src.int_id, pos[0], pos[1])

    def decode_export(self, src: Source, token: str):
        try:
            sid, k, o = self.unseal(b"X", ">QQQ", token)
        except Exception:
            raise ApiError(400, "Invalid continuation") from None
        if sid != src.int_id:
            raise ApiError(400, "Invalid continuation")
        return k, o

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

    def result_at(self, st: Stream, i: int) -> dict:
        """The /results entry `results` serves for queue index `i` of `st` (tests compute their truth from it)."""
        c = st.dataset.comment(i)
        model = st.model
        pred = g.make_prediction(c["id"], model["version"], st.thresholds) if model else None
        return {"comment": c, "prediction": pred, "continuation": self.encode_seq(st, i + 1)}

    def results(self, st: Stream, max_results: int, max_filtered) -> dict:
        start, idxs, filtered, end, total = self._scan(st, max_results, max_filtered)
        ds = st.dataset
        model = st.model
        out = [self.result_at(st, i) for i in idxs]
        with self.lock:
            for i in idxs:
                st.mark_served(i)
        body = {"status": "ok", "results": out, "num_filtered": filtered, "more_results": end < total,
                "continuation": self.encode_seq(st, end)}
        if model and ds.project == "acme":
            # the real API may add the model's taxonomy (never its version) to a /results body
            body["model"] = g.model_definition()
        return body

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
    def upload(self, project, source_name, n, timestamp_ms=None, days_back=None) -> list:
        """Upload n new comments; each dataset holding the source appends them to its queue.

        Their `created_at` is after every comment so far. `timestamp` (when it was sent) is 30 min
        before that, or `timestamp_ms`, or `days_back` days before the `created_at` (a late upload).
        """
        src = self.source(project, source_name)
        uids = []
        with self.lock:
            datasets = [d for d in self.datasets.values() if src in d.sources]
            for _ in range(int(n)):
                last = max([d.created_at_ms(d.total() - 1) for d in datasets if d.total()] + [0])
                created = last + 1000
                if timestamp_ms is not None:
                    ts = int(timestamp_ms)
                elif days_back is not None:
                    ts = created - int(float(days_back) * DAY_MS)
                else:
                    ts = created - 1_800_000
                k = src.total()
                key = g.mix64(self.seed, src.int_id, k, 0xA11)
                c = g.make_comment(key, src.id, k, created, ts, g.priority_of(key))
                src.uploaded.append((ts, created, c))
                for d in datasets:
                    d.uploaded.append((created, c))
                uids.append(c["uid"])
        return uids

    def find_comment(self, src: Source, uid: str) -> dict:
        """The latest version of a comment of `src` by uid (a scan: for tests, not for 1M comments)."""
        if uid in src.updates:
            return src.updates[uid]
        for _, _, c in src.uploaded:
            if c["uid"] == uid:
                return c
        ds = src.dataset
        for k in range(src.n_gen()):
            i = src.queue_index(k)
            if not is_reupload(i) and ds.uid_at(i) == uid:
                return src.gen_latest(k)
        raise ApiError(404, "Comment '%s' not found in source '%s/%s'" % (uid, src.project, src.name))

    def reupload(self, project, source_name, uid, text=None) -> dict:
        """Upload an existing comment again with changed text: same uid, new `last_modified`.

        Every stream over a dataset holding the source serves it again (a new queue entry, after
        every comment so far); the export serves the new version in the old one's place.
        """
        src = self.source(project, source_name)
        with self.lock:
            datasets = [d for d in self.datasets.values() if src in d.sources]
            old = self.find_comment(src, uid)
            last = max([d.created_at_ms(d.total() - 1) for d in datasets if d.total()] + [0])
            created = last + 1000
            new = updated(old, created, text)
            src.updates[uid] = new
            for d in datasets:
                d.uploaded.append((created, new))
        return new

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
            return self._add_stream(ds, name, model, comment_filter, pos, self._created_ms(ds, pos), title, description)

    @staticmethod
    def _created_ms(ds, pos: int) -> int:
        """A stream starts at its creation time: its `created_at` is the time of its first comment (a reset to
        it goes back to `pos`), or, at the end of the queue, just after the last comment (uploads come later)."""
        if pos < ds.total():
            return ds.created_at_ms(pos)
        if ds.total():
            return ds.created_at_ms(ds.total() - 1) + 1
        return int(time.time() * 1000)

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
        return ds.uid_at(i)

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

    def consume(self, st: Stream, n: int) -> list:
        """Another reader of `st` (a robot, another integration): /results and advance past up to `n` comments,
        as any consumer would; returns the uids it took. The stream's one position moves for every reader."""
        taken = []
        while len(taken) < n:
            start, idxs, filtered, end, total = self._scan(st, 1, 1024)
            if not idxs:
                if end <= start:
                    break
                self.advance(st, end)  # past comments its filter skips
                continue
            with self.lock:
                st.mark_served(idxs[0])
            taken.append(self.uid_of(st.dataset, idxs[0]))
            self.advance(st, idxs[0] + 1)
        return taken

    # ------------------------------------------------------------------ comment export
    def export(self, src: Source, from_ts, to_ts, after, limit) -> dict:
        """One page of a source's comments in `timestamp` order, as the export serves them.

        Two sorted runs are merged: generated comments in local order (their timestamps never
        decrease) and the out-of-order rest (late and uploaded ones, sorted once). A position is
        (next local index, next out-of-order index); the continuation carries both.
        """
        n = src.n_gen()
        late = src.out_of_order()

        def next_regular(k):
            while k < n and not src.regular(k):
                k += 1
            return k

        if after:
            k, o = self.decode_export(src, after)
        elif from_ts is not None:
            # ts of the next regular comment from k on never decreases with k: bisect on it
            lo, hi = 0, n
            while lo < hi:
                mid = (lo + hi) // 2
                r = next_regular(mid)
                if r < n and src.gen_ts(r) < from_ts:
                    lo = mid + 1
                else:
                    hi = mid
            k = lo
            lo, hi = 0, len(late)
            while lo < hi:
                mid = (lo + hi) // 2
                if late[mid][0] < from_ts:
                    lo = mid + 1
                else:
                    hi = mid
            o = lo
        else:
            k, o = 0, 0
        out = []
        while True:
            k = next_regular(k)
            ts_k = src.gen_ts(k) if k < n else None
            ts_o = late[o][0] if o < len(late) else None
            if ts_k is None and ts_o is None:
                break
            take_regular = ts_o is None or (ts_k is not None and ts_k <= ts_o)
            ts = ts_k if take_regular else ts_o
            if to_ts is not None and ts > to_ts:
                break
            if len(out) >= limit:
                return {"status": "ok", "comments": out, "continuation": self.encode_export(src, (k, o))}
            if take_regular:
                out.append(src.gen_latest(k))
                k += 1
            else:
                out.append(src.item_comment(late[o][1], late[o][2]))
                o += 1
        return {"status": "ok", "comments": out, "continuation": None}
