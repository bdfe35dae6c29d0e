"""Model versions, model tags, validation summaries, the audit log and thread properties of the emulated tenant.

Why a module of its own: these routes read a dataset's model history and the tenant's audit log,
not the comment queues, so they keep their state here (the World holds one `Models` and one
`AuditLog`) and the queue logic in world.py stays as it is. Every value is a pure function of the
seed and the names, so two emulators with the same seed serve the same bodies.

- A dataset's model versions are 1..latest, where latest is the highest version its streams or
  tags name; `delete_version` removes one (its validation then answers 404, as a pruned model does).
- Tags: `live` on the version the dataset's first stream pins, `staging` on a newer one (acme/collections),
  on the same one (globex/claims-ds: two tags, one version), or none (acme/support-desk).
- The audit log: 300 events spread over the weeks before the first dataset, one every ~3 hours (several pages),
  then whatever `add` appends (at the current time); served in timestamp order, continuation-paged.
"""

from __future__ import annotations

import time

from . import generator as g
from .world import ApiError, _cond_ok, _parse_time_ms

AUDIT_PERMISSION = "Read audit logs"
QUALITIES = ["none", "poor", "average", "good", "excellent"]
AUDIT_EVENT_TYPES = ["login", "create_dataset", "update_stream", "create_source", "update_label_def",
                     "generate_api_token", "delete_comments", "update_user_permissions"]
AUDIT_LIMIT_MAX = 1024
AUDIT_LIMIT_DEFAULT = 128
# Extra tags beyond `live` (on the version the dataset's first stream pins): name -> offset from it.
EXTRA_TAGS = {("acme", "collections"): {"staging": 2}, ("globex", "claims-ds"): {"staging": 0}}


def _quality(score: int) -> str:
    return QUALITIES[min(4, max(0, score // 20))]


class Models:
    """Model versions, tags and validation summaries per dataset."""

    def __init__(self, world):
        self.world = world
        self.tags = {}  # (project, dataset) -> {tag: (version, updated_ms)}
        self.deleted = set()  # (project, dataset, version)

    def build(self):
        for (project, name), ds in self.world.datasets.items():
            pinned = [st.model["version"] for st in ds.streams.values() if st.model]
            if not pinned:
                continue
            tags = {"live": (pinned[0], ds.created_ms + 86_400_000)}
            for tag, offset in EXTRA_TAGS.get((project, name), {}).items():
                tags[tag] = (pinned[0] + offset, ds.created_ms + 2 * 86_400_000)
            self.tags[(project, name)] = tags

    def set_tag(self, ds, tag, version):
        if tag not in ("live", "staging"):
            raise ApiError(400, "Invalid tag %r: expected live or staging" % (tag,))
        with self.world.lock:
            self.tags.setdefault((ds.project, ds.name), {})[tag] = (int(version), int(time.time() * 1000))

    def delete_version(self, ds, version):
        with self.world.lock:
            self.deleted.add((ds.project, ds.name, int(version)))

    def model_tags(self, ds) -> list:
        tags = self.tags.get((ds.project, ds.name), {})
        return [{"name": tag, "version": v, "updated_at": g.fmt_ms(at)} for tag, (v, at) in sorted(tags.items())]

    def latest(self, ds) -> int:
        named = [st.model["version"] for st in ds.streams.values() if st.model]
        named += [v for v, _ in self.tags.get((ds.project, ds.name), {}).values()]
        return max(named, default=0)

    def validation(self, ds, version: int) -> dict:
        """`ValidationSummaryV1` of a version; 404 for a version the dataset does not have (or no longer has)."""
        if not 1 <= version <= self.latest(ds) or (ds.project, ds.name, version) in self.deleted:
            raise ApiError(404, "Model version %d of dataset '%s/%s' not found" % (version, ds.project, ds.name))
        h = g.mix64(ds.salt, version, 0x7A1)
        score = min(100, 35 + 9 * version + h % 7)
        labels = [name for name, _, _ in g.LABELS]
        red = max(0, 4 - version) + (h >> 8) % 2
        amber = max(0, 6 - version) + (h >> 12) % 3
        return {
            "version": version,
            "labels": [{"name": name, "parts": name.split(" > ")} for name in labels],
            "entities": [{"name": e["name"], "title": e["title"]} for e in g.entity_defs()],
            "num_reviewed_comments": 120 * version + (h >> 16) % 100,
            "num_labels": len(labels),
            "num_amber_labels": amber,
            "num_red_labels": red,
            "mean_average_precision_safe": round(min(0.99, 0.45 + 0.08 * version + ((h >> 20) % 50) / 1000), 4),
            "dataset_quality": _quality(score),
            "dataset_score": score,
            "balance": round(min(1.0, 0.5 + 0.05 * version), 4),
            "balance_quality": _quality(score - 5),
            "coverage": round(min(1.0, 0.6 + 0.06 * version), 4),
            "coverage_quality": _quality(score + 5),
            "underperforming_labels_quality": _quality(score - 10) if red else None,
            "all_labels_quality": _quality(score),
        }


class AuditLog:
    """The tenant's audit events, in timestamp order."""

    def __init__(self, world, n=300):
        self.world = world
        self.tenant = {"id": "%016x" % g.mix64(world.seed, 0x7E7A), "name": "emulated-tenant"}
        self.users = [{"id": "%016x" % g.mix64(world.seed, 0x05E4, k), "tenant_id": self.tenant["id"], "username": u,
                       "email": "%s@acme.example" % u, "display_name": u.title()} for k, u in enumerate(("alice", "bob", "carol"))]
        self.events = []
        self._n = n

    def build(self):
        first = min(ds.created_ms for ds in self.world.datasets.values())
        start = first - 40 * 86_400_000
        for k in range(self._n):
            self.events.append(self._event(k, start + k * 3 * 3_600_000 + g.mix64(self.world.seed, k, 0xA0D) % 3_600_000))

    def _project_id(self, project: str) -> str:
        return "%016x" % g.mix64(self.world.seed, g.str_salt("project:%s" % project))

    def _event(self, k: int, ts_ms: int) -> dict:
        h = g.mix64(self.world.seed, k, 0xE7E)
        datasets = sorted(self.world.datasets.values(), key=lambda d: d.id)
        ds = datasets[h % len(datasets)]
        kind = AUDIT_EVENT_TYPES[(h >> 8) % len(AUDIT_EVENT_TYPES)]
        user = self.users[(h >> 16) % len(self.users)]
        event = {"event_id": "%016x" % g.mix64(self.world.seed, k, 0xEE1D), "event_type": kind, "timestamp": g.fmt_ms(ts_ms),
                 "actor_user_id": user["id"], "actor_tenant_id": self.tenant["id"], "tenant_ids": [self.tenant["id"]]}
        if kind in ("create_dataset", "update_label_def"):
            event.update(dataset_ids=[ds.id], project_ids=[self._project_id(ds.project)])
        elif kind == "update_stream" and ds.streams:
            st = sorted(ds.streams.values(), key=lambda s: s.id)[(h >> 24) % len(ds.streams)]
            event.update(trigger_ids=[st.id], dataset_ids=[ds.id])
        elif kind in ("create_source", "delete_comments"):
            event.update(source_ids=[ds.sources[0].id], project_ids=[self._project_id(ds.project)])
        elif kind == "update_user_permissions":
            event.update(user_ids=[self.users[(h >> 28) % len(self.users)]["id"]], project_ids=None)
        return event

    def add(self, n: int, at_ms=None) -> list:
        """Appends n events, 1 s apart, from `at_ms` (default: the last n seconds up to now); returns them."""
        with self.world.lock:
            last = _parse_time_ms(self.events[-1]["timestamp"]) if self.events else 0
            start = max(int(time.time() * 1000) - 1000 * int(n) if at_ms is None else int(at_ms), last + 1)
            new = [self._event(len(self.events) + i, start + i * 1000) for i in range(int(n))]
            self.events.extend(new)
        return new

    def _token(self, index: int) -> str:
        return self.world.seal(b"A", ">Q", index)

    def _index(self, token: str) -> int:
        try:
            return self.world.unseal(b"A", ">Q", token)[0]
        except Exception:
            raise ApiError(400, "Invalid continuation") from None

    def query(self, body: dict) -> dict:
        """A page of `QueryAuditEventsResponse`: events in [minimum, maximum] (inclusive), from the continuation on."""
        limit = body.get("limit")
        if limit is None:
            limit = AUDIT_LIMIT_DEFAULT
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= AUDIT_LIMIT_MAX:
            raise ApiError(400, "Invalid limit: must be an integer between 1 and %d" % AUDIT_LIMIT_MAX)
        bounds = ((body.get("filter") or {}).get("timestamp") or {})
        if not isinstance(bounds, dict):
            raise ApiError(400, "Invalid filter.timestamp: expected an object")
        lo_hi = []
        for key in ("minimum", "maximum"):
            value = bounds.get(key)
            try:
                lo_hi.append(None if value is None else _parse_time_ms(value))
            except (ValueError, TypeError, OverflowError):
                raise ApiError(400, "Invalid filter.timestamp.%s: %r is not an RFC 3339 datetime" % (key, value)) from None
        lo, hi = lo_hi
        continuation = body.get("continuation")
        start = self._index(continuation) if continuation else 0
        with self.world.lock:
            events = list(self.events)
        out, i = [], start
        while i < len(events) and len(out) < limit:
            ts = _parse_time_ms(events[i]["timestamp"])
            if (lo is None or ts >= lo) and (hi is None or ts <= hi):
                out.append(events[i])
            i += 1
        more = any((lo is None or _parse_time_ms(e["timestamp"]) >= lo) and (hi is None or _parse_time_ms(e["timestamp"]) <= hi)
                   for e in events[i:])
        return {"status": "ok", "audit_events": out, "tenants": [self.tenant], "users": self.users,
                **self._referenced(out), "continuation": self._token(i) if more else None}

    def _referenced(self, events) -> dict:
        wanted = {key: {i for e in events for i in (e.get(key) or [])}
                  for key in ("dataset_ids", "source_ids", "trigger_ids", "project_ids")}
        w = self.world
        datasets = [{"id": d.id, "name": d.name, "title": d.title, "project_id": self._project_id(d.project)}
                    for d in w.datasets.values() if d.id in wanted["dataset_ids"]]
        sources = [{"id": s.id, "name": s.name, "title": s.title, "project_id": self._project_id(s.project)}
                   for s in w.sources.values() if s.id in wanted["source_ids"]]
        triggers = [{"id": st.id, "dataset_id": d.id, "name": st.name, "title": st.title}
                    for d in w.datasets.values() for st in d.streams.values() if st.id in wanted["trigger_ids"]]
        projects = [{"id": self._project_id(p), "tenant_id": self.tenant["id"], "name": p}
                    for p in sorted(w.projects) if self._project_id(p) in wanted["project_ids"]]
        return {"datasets": datasets, "sources": sources, "triggers": triggers, "projects": projects}


def thread_properties(comment: dict) -> dict:
    """`thread_properties[i]` of the comment export for comment i (`include_thread_properties=true`)."""
    messages = comment.get("messages") or []
    people = set()
    for m in messages:
        people.add(m.get("from"))
        people.update(m.get("to") or [])
        people.update(m.get("cc") or [])
    people.discard(None)
    h = g.mix64(g.str_salt(comment.get("thread_id") or comment["uid"]), 0x7B)
    position = (comment.get("user_properties") or {}).get("number:Position in Thread")
    return {"duration": float(h % 86_400) + 0.5 * len(messages), "response_time": float((h >> 20) % 7_200),
            "num_messages": len(messages), "num_participants": len(people),
            "first_sender": (messages[0].get("from") if messages else None) or "unknown",
            "thread_position": int(position) if isinstance(position, (int, float)) else None}


def count_comments(world, src, comment_filter) -> int:
    """`num_comments` of a source under a comment filter: `timestamp` {minimum, maximum} and `user_properties`."""
    comment_filter = comment_filter or {}
    if not isinstance(comment_filter, dict):
        raise ApiError(400, "Invalid comment_filter: expected an object")
    unsupported = sorted(k for k, v in comment_filter.items() if v is not None and k not in ("timestamp", "user_properties"))
    if unsupported:
        raise ApiError(400, "The emulator does not model comment_filter.%s" % unsupported[0])
    bounds = comment_filter.get("timestamp") or {}
    try:
        lo = _parse_time_ms(bounds["minimum"]) if bounds.get("minimum") else None
        hi = _parse_time_ms(bounds["maximum"]) if bounds.get("maximum") else None
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "Invalid comment_filter.timestamp") from None
    props = comment_filter.get("user_properties") or {}
    count, after = 0, None
    while True:
        page = world.export(src, lo, hi, after, 4096)
        for c in page["comments"]:
            if all(_cond_ok((c.get("user_properties") or {}).get(k), cond) for k, cond in props.items()):
                count += 1
        after = page["continuation"]
        if not after:
            return count
