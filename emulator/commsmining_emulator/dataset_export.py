"""The dataset export, `POST /api/v1/datasets/<project>/<dataset>/export` (ExportDatasetRequest/Response).

Why this module exists: the documented, non-destructive way to read a dataset's comments with the
labels people reviewed (`annotations`) and the model's `predictions`, apart from the stream queue
(world.py) and the source export, so the routes stay independent.

What it serves, all pure functions of the world (tests compute their truth from the same functions):
- every comment of the dataset once, in its latest version (a re-upload keeps its `created_at` and
  `timestamp`, so it stays in its original place), ordered by `order_by`: `timestamp` (the default)
  or `created_at` (upload time: the dataset's queue order);
- `from` and `to` bound the `order_by` field, both inclusive (as the source export's window);
  `continuation` goes on after the last comment of the previous page, still bounded by `to`;
- reviewed labels on about one comment in four (REVIEWED_EVERY), deterministic from the seed: each
  predicted label is assigned with a chance equal to its probability, and sometimes a label the
  model missed; predictions are the dataset's model's default-taxonomy labels (names as lists of
  levels, as the export's `Name` allows), one per label, with their probability;
- `thread_properties` from the comment's messages, except on comments of `chat` sources.
"""

from __future__ import annotations

import random
from bisect import bisect_left

import orjson

from . import generator as g
from .world import DEFAULT_MODEL_VERSION, REUPLOAD_BACK, ApiError, Dataset, SourceView, _parse_time_ms, is_reupload

REVIEWED_EVERY = 4  # about one comment in four carries reviewed labels
ORDERS = ("timestamp", "created_at")
MAX_LIMIT = 1024
REVIEWERS = ["%016x" % g.str_salt("reviewer:%d" % k) for k in range(5)]
# A benchmark's cache of serialized ExportedComments, {(dataset, queue index): bytes or None}: see warm().
_WARM: dict = {}


# ---------------------------------------------------------------- which comments, in which order
def export_comment(ds: Dataset, i: int):
    """The latest version of the comment first uploaded at queue index `i`; None if entry i is a re-upload."""
    if i >= ds.n_gen:
        created, c = ds.uploaded[i - ds.n_gen]
        if c["created_at"] != g.fmt_ms(created):
            return None  # a re-upload (World.reupload): the comment is served at its original entry
    elif isinstance(ds, SourceView):
        return export_comment(ds.source.dataset, ds.source.queue_index(i))
    elif is_reupload(i):
        return None
    else:
        j = i + REUPLOAD_BACK
        c = ds.comment(j) if j < ds.n_gen and is_reupload(j) else ds.comment(i)
    for src in ds.sources:
        if src.id == c["source_id"]:
            return src.updates.get(c["uid"], c)
    return c


def _by_timestamp(ds: Dataset) -> list:
    """[(timestamp ms, queue index)] of every comment's first entry, sorted; memoised per queue length."""
    memo = getattr(ds, "_export_by_ts", None)
    total = ds.total()
    if memo is not None and memo[0] == total:
        return memo[1]
    items = []
    for i in range(total):
        if i < ds.n_gen and not isinstance(ds, SourceView):
            if not is_reupload(i):
                items.append((ds.ts_ms(i), i))
        else:
            c = export_comment(ds, i)
            if c is not None:
                items.append((_parse_time_ms(c["timestamp"]), i))
    items.sort()
    ds._export_by_ts = (total, items)
    return items


def exported_count(ds: Dataset) -> int:
    """How many comments the export serves for `ds` (its re-uploads are versions of a comment, not comments)."""
    return len(_by_timestamp(ds))


# ---------------------------------------------------------------- what each comment carries
def model_version(ds: Dataset) -> int:
    """The dataset's model: the version of its first stream with one (so thresholds and predictions agree)."""
    for st in ds.streams.values():
        if st.model:
            return st.model["version"]
    return DEFAULT_MODEL_VERSION


def predicted_labels(comment_id: str, version: int) -> list:
    """[(label name, probability)]: the default taxonomy's labels of the /results prediction, once each."""
    seen = {}
    for label in g.make_prediction(comment_id, version, {})["taxonomies"][0]["labels"]:
        seen.setdefault(label["name"], label["occurrence_confidence"]["value"])
    return list(seen.items())


def is_reviewed(seed: int, comment_id: str) -> bool:
    return g.mix64(seed, int(comment_id, 16), 0x4EF1) % REVIEWED_EVERY == 0


def reviewed_labels(seed: int, comment: dict, version: int, predicted=None) -> list:
    """The names a person assigned (empty when the comment was not reviewed), in assignment order.
    `predicted`: the comment's predicted_labels, when the caller has them already."""
    cid = comment["id"]
    if not is_reviewed(seed, cid):
        return []
    r = random.Random(g.mix64(seed, int(cid, 16), 0x4EF2))
    predicted = predicted_labels(cid, version) if predicted is None else predicted
    names = [name for name, probability in predicted if r.random() < probability]
    if r.random() < 0.25:  # a label the model did not predict
        missed = g.LABELS[g.LEAVES[int(r.random() * len(g.LEAVES))]][0]
        if missed not in names:
            names.append(missed)
    return names


def exported(world, ds: Dataset, c: dict) -> dict:
    """One ExportedComment."""
    version = model_version(ds)
    created_ms = _parse_time_ms(c["created_at"])
    predicted = predicted_labels(c["id"], version)
    assigned = []
    for k, name in enumerate(reviewed_labels(world.seed, c, version, predicted)):
        h = g.mix64(world.seed, int(c["id"], 16), k, 0x4EF3)
        assigned.append({"name": name, "sentiment": None,
                         "metadata": {"user_id": REVIEWERS[h % len(REVIEWERS)],
                                      "timestamp": g.fmt_ms(created_ms + 3_600_000 + h % 86_400_000)}})
    body = {"comment": c, "annotations": {"labels": {"assigned": assigned}, "sentiment": None},
            "predictions": {"labels": [{"name": name.split(" > "), "probability": p, "sentiment": None}
                                       for name, p in predicted], "sentiment": None}}
    src = next((s for s in ds.sources if s.id == c["source_id"]), None)
    if src is None or src.kind != "chat":
        body["thread_properties"] = thread_properties(c)
    return body


def thread_properties(c: dict) -> dict:
    messages = c["messages"]
    sent = [_parse_time_ms(m["sent_at"]) for m in messages if m.get("sent_at")]
    up = c["user_properties"]
    return {"duration": (max(sent) - min(sent)) / 1000.0 if len(sent) > 1 else None,
            "response_time": (sent[1] - sent[0]) / 1000.0 if len(sent) > 1 else None,
            "num_messages": len(messages), "num_participants": int(up.get("number:Participants", 2)),
            "first_sender": messages[0].get("from") if messages else None,
            "thread_position": int(up.get("number:Position in Thread", 1))}


# ---------------------------------------------------------------- continuation tokens
def encode(world, ds: Dataset, order: str, position: int) -> str:
    return world.seal(b"D", ">QBQ", ds.int_id, ORDERS.index(order), position)


def decode(world, ds: Dataset, order: str, token) -> int:
    try:
        did, kind, position = world.unseal(b"D", ">QBQ", token)
    except Exception:
        raise ApiError(400, "Invalid continuation") from None
    if did != ds.int_id or kind != ORDERS.index(order):
        raise ApiError(400, "Invalid continuation: it belongs to another dataset or `order_by`")
    return position


# ---------------------------------------------------------------- the route
def _time(body: dict, name: str):
    value = body.get(name)
    if value is None:
        return None
    try:
        return _parse_time_ms(value)
    except (ValueError, TypeError, OverflowError):
        raise ApiError(400, "Invalid %s: %r is not an RFC 3339 datetime" % (name, value)) from None


def export(world, ds: Dataset, body: dict) -> dict:
    """One page of ExportDatasetResponse for an ExportDatasetRequest body."""
    unknown = sorted(set(body) - {"comment_uids", "source_ids", "from", "to", "continuation", "order_by", "limit"})
    if unknown:
        raise ApiError(400, "Invalid JSON body: unknown field `%s`" % unknown[0])
    order = body.get("order_by") or "timestamp"
    if order not in ORDERS:
        raise ApiError(400, "Invalid order_by: expected `timestamp` or `created_at`")
    limit = body.get("limit")
    if limit is None:
        limit = 128
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "Invalid limit: must be an integer between 1 and %d" % MAX_LIMIT)
    from_ms, to_ms = _time(body, "from"), _time(body, "to")
    uids = set(body["comment_uids"]) if body.get("comment_uids") is not None else None
    sources = set(body["source_ids"]) if body.get("source_ids") is not None else None
    with world.lock:
        if order == "created_at":
            total = ds.total()
            at = lambda p: (ds.created_at_ms(p), p)  # noqa: E731
            length = total
            if body.get("continuation"):
                position = decode(world, ds, order, body["continuation"])
            else:
                position = ds.first_index_created_at_or_after(from_ms) if from_ms is not None else 0
        else:
            items = _by_timestamp(ds)
            at = items.__getitem__
            length = len(items)
            if body.get("continuation"):
                position = decode(world, ds, order, body["continuation"])
            else:
                position = bisect_left(items, (from_ms, -1)) if from_ms is not None else 0
        out = []
        while position < length:
            key, i = at(position)
            if to_ms is not None and key > to_ms:
                position = length
                break
            if len(out) >= limit:
                break
            position += 1
            if _WARM and uids is None and sources is None and (ds, i) in _WARM:
                if _WARM[(ds, i)] is not None:
                    out.append(orjson.Fragment(_WARM[(ds, i)]))
                continue
            c = export_comment(ds, i)
            if c is None or (uids is not None and c["uid"] not in uids) or (sources is not None and c["source_id"] not in sources):
                continue
            out.append(exported(world, ds, c))
    more = position < length
    return {"status": "ok", "comments": out, "continuation": encode(world, ds, order, position) if more else None}



def warm(world, ds: Dataset) -> None:
    """For benchmarks: serialize every ExportedComment of `ds` once, so that the export then costs the
    emulator next to no CPU per comment (an API whose time is its latency, not this machine's CPU).
    Valid until the dataset changes: nothing is uploaded to a warmed dataset."""
    if not hasattr(orjson, "Fragment"):
        raise RuntimeError("warm() embeds pre-serialized comments with orjson.Fragment: upgrade orjson (3.10 or later)")
    for i in range(ds.total()):
        c = export_comment(ds, i)
        _WARM[(ds, i)] = None if c is None else orjson.dumps(exported(world, ds, c))


def add_dataset(world, project: str, name: str, comments: int, base_ms=None, step_ms: int = 37_000) -> Dataset:
    """A test control: a dataset over a new source of its own, with `comments` generated comments uploaded one
    every `step_ms` from `base_ms` (the first exactly then; default: so that the last is an hour before now,
    so a read up to now has no long empty stretch), and a `triage` stream with a model."""
    import time

    from .world import default_model

    if base_ms is None:
        base_ms = (int(time.time()) - 3600) * 1000 - int(comments) * step_ms
    with world.lock:
        if (project, name) in world.datasets:
            raise ApiError(409, "Dataset '%s/%s' already exists" % (project, name))
        src = world._src(project, name + "-source", name.title() + " source", "Comments of " + name, base_ms - 86_400_000 * 30)
        ds = Dataset(world, project, name, g.mix64(world.seed, g.str_salt("dataset:%s/%s" % (project, name))), [src], [0],
                     int(comments), int(base_ms), int(step_ms), base_ms - 86_400_000 * 28, name.title(), "Added by a test.")
        world.datasets[(project, name)] = ds
        world._add_stream(ds, "triage", default_model(), None, 0, base_ms - 86_400_000 * 27, "Triage", "")
        return ds
