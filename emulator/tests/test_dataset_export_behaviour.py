"""Behavioural contract of the dataset export (`POST /api/v1/datasets/<p>/<d>/export`), as test_behaviour.py.

The connector reads history by upload time in windows (`order_by: created_at`, `from`, `to`) and pages
on `continuation`; an export that ignored any of them would still pass the shape contract. Each check
runs over HTTP on a fresh emulator, and each mutation of the emulator (one behaviour switched off)
must be caught by the check named for it, while the real emulator passes every check.

Behaviours:
- `from` and `to` bound the `order_by` field, both inclusive;
- `order_by: created_at` serves comments in upload order, `timestamp` (the default) in sent order, and
  the two orders differ on this dataset (late uploads);
- `continuation` goes on after the previous page: the pages of a read hold every comment once;
- about one comment in four carries reviewed labels, every one carries predictions with probabilities.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import pytest
import requests

from commsmining_emulator import Emulator, dataset_export

EXPORT = "/api/v1/datasets/acme/collections/export"


class Api:
    def __init__(self, emu: Emulator):
        self.emu = emu
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + emu.token

    def page(self, **body) -> Dict:
        r = self.http.post(self.emu.url + EXPORT, json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def read(self, **body) -> List[Dict]:
        out, page = [], self.page(**body)
        out += page["comments"]
        while page.get("continuation") and len(out) < 2_000:  # an export repeating itself would never end (200 comments)
            page = self.page(**body, continuation=page["continuation"])
            out += page["comments"]
        return out


def field(items: List[Dict], name: str) -> List[str]:
    return [item["comment"][name] for item in items]


def check_window(api: Api) -> List[str]:
    everything = field(api.read(order_by="created_at", limit=1024), "created_at")
    low, high = everything[len(everything) // 4], everything[len(everything) // 2]
    window = field(api.read(order_by="created_at", limit=1024, **{"from": low, "to": high}), "created_at")
    expected = [c for c in everything if low <= c <= high]
    if window != expected:
        return [f"the window [{low}, {high}] served {len(window)} comments, {len(expected)} were uploaded in it"]
    if low not in window or high not in window:
        return ["a comment uploaded exactly on `from` or `to` was left out (both are inclusive)"]
    return []


def check_order(api: Api) -> List[str]:
    by_upload = field(api.read(order_by="created_at", limit=1024), "created_at")
    by_sent = api.read(order_by="timestamp", limit=1024)
    problems = []
    if by_upload != sorted(by_upload):
        problems.append("order_by created_at is not in upload order")
    if field(by_sent, "timestamp") != sorted(field(by_sent, "timestamp")):
        problems.append("order_by timestamp is not in sent order")
    if field(by_sent, "created_at") == by_upload:
        problems.append("both orders are the same on a dataset with late uploads")
    return problems


def check_continuation(api: Api) -> List[str]:
    whole = field(api.read(order_by="created_at", limit=1024), "uid")
    paged = field(api.read(order_by="created_at", limit=37), "uid")
    if paged != whole:
        return [f"pages of 37 served {len(paged)} comments ({len(set(paged))} distinct), one page {len(whole)}"]
    return []


def check_labels(api: Api) -> List[str]:
    items = api.read(limit=1024)
    reviewed = sum(1 for item in items if item["annotations"]["labels"]["assigned"])
    problems = []
    if not 0.15 * len(items) <= reviewed <= 0.35 * len(items):
        problems.append(f"{reviewed} of {len(items)} comments have reviewed labels, not about one in four")
    if not all(0 <= label["probability"] <= 1 for item in items for label in item["predictions"]["labels"]):
        problems.append("a predicted label without a probability in [0, 1]")
    return problems


CHECKS: Dict[str, Callable[[Api], List[str]]] = {
    "window": check_window,
    "order": check_order,
    "continuation": check_continuation,
    "labels": check_labels,
}


def violations() -> Dict[str, List[str]]:
    found = {}
    for name, check in CHECKS.items():
        with Emulator(seed=5, comments=200) as emu:
            problems = check(Api(emu))
        if problems:
            found[name] = problems
    return found


def _with_body(mp, change):
    original = dataset_export.export
    mp.setattr(dataset_export, "export", lambda world, ds, body: original(world, ds, change(dict(body))))


def _ignores_window(mp):
    _with_body(mp, lambda body: {k: v for k, v in body.items() if k not in ("from", "to")})


def _to_exclusive(mp):
    original = dataset_export.export

    def export(world, ds, body):
        page = original(world, ds, body)
        page["comments"] = [c for c in page["comments"] if body.get("to") is None or c["comment"]["created_at"] < body["to"]]
        return page

    mp.setattr(dataset_export, "export", export)


def _ignores_order_by(mp):
    _with_body(mp, lambda body: {k: v for k, v in body.items() if k != "order_by"})


def _ignores_continuation(mp):
    _with_body(mp, lambda body: {k: v for k, v in body.items() if k != "continuation"})


def _no_reviews(mp):
    mp.setattr(dataset_export, "is_reviewed", lambda seed, comment_id: False)


MUTATIONS = {
    "export ignoring from/to": (_ignores_window, "window"),
    "export with `to` exclusive": (_to_exclusive, "window"),
    "export ignoring order_by": (_ignores_order_by, "order"),
    "export ignoring continuation": (_ignores_continuation, "continuation"),
    "export without reviewed labels": (_no_reviews, "labels"),
}


def test_the_dataset_export_behaves_as_documented():
    assert violations() == {}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_mutation_of_the_dataset_export_is_caught(mutation, monkeypatch):
    mutate, caught_by = MUTATIONS[mutation]
    mutate(monkeypatch)
    found = violations()
    assert caught_by in found, f"the mutation '{mutation}' passed the behavioural checks: {found}"


def test_the_admin_count_of_exported_comments_is_what_a_whole_export_serves():
    """The benchmarks tell "nothing lost" of a dataset read from this count, so it must be the export's own."""
    with Emulator(seed=7, comments=200) as emu:
        dataset = emu.world.dataset("acme", "collections")
        emu.reupload("acme", dataset.sources[0].name, dataset.comment(3)["uid"])  # a version, not a comment more
        served = Api(emu).read(limit=64)
        counted = requests.get(emu.url + "/_emulator/datasets/acme/collections", timeout=10).json()["exported_comments"]
    assert counted == len(served) == len({c["comment"]["uid"] for c in served}) > 100
