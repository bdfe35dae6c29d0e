"""Behavioural contract: the emulator does what the API's documentation says, not only in its shapes.

Why this test exists: the shape contract (test_contract.py) passed with 0 violations on emulators whose
advance or reset did nothing or whose export ignored its time window. Here each documented behaviour
the connector relies on is checked over HTTP, and the test proves it can fail: each parametrized
mutation of the emulator (a monkeypatch of one behaviour) must be caught by the check named for it,
while the real emulator passes every check.

Documented behaviours (shared/api-docs, shared/api-notes.md, shared/api-shapes):
- /results is repeatable until advanced; advancing to the batch continuation serves what follows.
- reset moves the stream to the first comment created at or after `to_comment_created_at`.
- the export serves only comments whose `timestamp` is within [from_timestamp, to_timestamp].
- `more_results` is true while comments remain after the batch, false at the end of the queue.
- at most `max_results` results per batch, exactly that many while the queue holds enough.
- the advance body is AdvanceStreamRequest `{sequence_id}`: another key is refused (400), nothing moves.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import pytest
import requests

from commsmining_emulator import Emulator
from commsmining_emulator import server
from commsmining_emulator.world import World

PROJECT, DATASET = "acme", "collections"
STREAMS = f"/api/v1/datasets/{PROJECT}/{DATASET}/streams"
EXPORT = "/api/_private/sources/acme/inbox/comments"


class Api:
    def __init__(self, emu: Emulator):
        self.emu = emu
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + emu.token

    def results(self, stream: str, **params) -> Dict:
        r = self.http.get(f"{self.emu.url}{STREAMS}/{stream}/results", params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def advance(self, stream: str, body: Dict) -> requests.Response:
        return self.http.post(f"{self.emu.url}{STREAMS}/{stream}/advance", json=body, timeout=10)

    def reset(self, stream: str, created_at: str) -> requests.Response:
        return self.http.post(f"{self.emu.url}{STREAMS}/{stream}/reset", json={"to_comment_created_at": created_at}, timeout=10)

    def export(self, **params) -> Dict:
        r = self.http.get(self.emu.url + EXPORT, params=params, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


def uids(body: Dict) -> List[str]:
    return [result["comment"]["uid"] for result in body["results"]]


# ---------------------------------------------------------------- the checks: each returns what is wrong
def check_advance(api: Api) -> List[str]:
    first = api.results("raw", max_results=5)
    if uids(api.results("raw", max_results=5)) != uids(first):
        return ["/results is not repeatable before an advance"]
    if api.advance("raw", {"sequence_id": first["continuation"]}).status_code != 200:
        return ["advance to the batch continuation refused"]
    after = api.results("raw", max_results=5)
    if set(uids(after)) & set(uids(first)) or not uids(after):
        return ["advance did not move the stream past the batch"]
    per_result = after["results"][1]["continuation"]
    api.advance("raw", {"sequence_id": per_result})
    if uids(api.results("raw", max_results=1)) != uids(after)[2:3]:
        return ["advance to a result's continuation did not move right after that result"]
    return []


def check_reset(api: Api) -> List[str]:
    batch = api.results("triage", max_results=20)
    api.advance("triage", {"sequence_id": batch["continuation"]})
    target = batch["results"][10]["comment"]["created_at"]
    r = api.reset("triage", target)
    if r.status_code != 200:
        return [f"reset refused: {r.status_code}"]
    served = api.results("triage", max_results=32)
    # The first comment created at or after the time: batch[10], or an earlier one sharing its created_at.
    first = next(i for i, result in enumerate(batch["results"]) if result["comment"]["created_at"] >= target)
    if uids(served)[:11 - first] != uids(batch)[first:11]:
        return ["reset did not move the stream back to the first comment created at or after the time"]
    return []


def check_export_window(api: Api) -> List[str]:
    everything = api.export(limit=256)["comments"]
    stamps = sorted(c["timestamp"] for c in everything)
    low, high = stamps[len(stamps) // 4], stamps[len(stamps) // 2]
    window = api.export(limit=256, from_timestamp=low, to_timestamp=high)["comments"]
    problems = [f"export served timestamp {c['timestamp']} outside [{low}, {high}]" for c in window
                if not low <= c["timestamp"] <= high][:1]
    expected = sum(1 for s in stamps if low <= s <= high)
    if len(window) != expected:
        problems.append(f"export window served {len(window)} comments, {expected} have a timestamp in it")
    return problems


def check_more_results(api: Api) -> List[str]:
    total = api.emu.stream_state(PROJECT, DATASET, "raw")["total"]
    api.emu.create_stream(PROJECT, DATASET, "tail", model=False, at=total - 40)
    first = api.results("tail", max_results=32)
    if first["more_results"] is not True:
        return ["more_results is not true while comments remain after the batch"]
    api.advance("tail", {"sequence_id": first["continuation"]})
    last = api.results("tail", max_results=32)
    if len(last["results"]) != 8 or last["more_results"] is not False:
        return ["more_results is not false at the end of the queue"]
    return []


def check_max_results(api: Api) -> List[str]:
    problems = []
    for n in (1, 7, 32):
        got = len(api.results("raw", max_results=n)["results"])
        if got != n:
            problems.append(f"max_results={n} served {got} results")
    return problems


def check_advance_body(api: Api) -> List[str]:
    before = api.emu.stream_state(PROJECT, DATASET, "raw")["position"]
    token = api.results("raw", max_results=3)["continuation"]
    r = api.advance("raw", {"continuation": token})
    problems = []
    if r.status_code != 400:
        problems.append(f"advance with an unknown body key answered {r.status_code}, not 400")
    if api.emu.stream_state(PROJECT, DATASET, "raw")["position"] != before:
        problems.append("advance with an unknown body key moved the stream")
    return problems


CHECKS: Dict[str, Callable[[Api], List[str]]] = {
    "advance": check_advance,
    "reset": check_reset,
    "export_window": check_export_window,
    "more_results": check_more_results,
    "max_results": check_max_results,
    "advance_body": check_advance_body,
}


def violations() -> Dict[str, List[str]]:
    """Every check on its own fresh emulator: {check: problems}."""
    found = {}
    for name, check in CHECKS.items():
        with Emulator(seed=5, comments=300) as emu:
            problems = check(Api(emu))
        if problems:
            found[name] = problems
    return found


# ---------------------------------------------------------------- mutations of the emulator
def _advance_ignored(mp):
    mp.setattr(World, "advance", lambda self, st, index: "moved")


def _reset_ignored(mp):
    mp.setattr(World, "reset", lambda self, st, t_ms: st.position)


def _export_ignores_window(mp):
    original = World.export
    mp.setattr(World, "export", lambda self, src, from_ts, to_ts, after, limit: original(self, src, None, None, after, limit))


def _more_results_inverted(mp):
    original = World.results

    def results(self, st, max_results, max_filtered):
        body = original(self, st, max_results, max_filtered)
        body["more_results"] = not body["more_results"]
        return body

    mp.setattr(World, "results", results)


def _max_results_ignored(mp):
    original = World.results
    mp.setattr(World, "results", lambda self, st, max_results, max_filtered: original(self, st, 16, max_filtered))


def _advance_accepts_unknown_keys(mp):
    method, original = server.STREAM_OPS["advance"]

    def lenient(w, tok, q, b, *args):
        return original(w, tok, q, {"sequence_id": b.get("sequence_id") or b.get("continuation")}, *args)

    mp.setitem(server.STREAM_OPS, "advance", (method, lenient))


MUTATIONS = {
    "advance ignored": (_advance_ignored, "advance"),
    "reset ignored": (_reset_ignored, "reset"),
    "export ignoring from/to_timestamp": (_export_ignores_window, "export_window"),
    "more_results inverted": (_more_results_inverted, "more_results"),
    "max_results ignored": (_max_results_ignored, "max_results"),
    "advance accepting an unknown body key": (_advance_accepts_unknown_keys, "advance_body"),
}


def test_the_emulator_behaves_as_the_api_documents():
    assert violations() == {}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_mutation_of_the_emulator_is_caught(mutation, monkeypatch):
    mutate, caught_by = MUTATIONS[mutation]
    mutate(monkeypatch)
    found = violations()
    assert caught_by in found, f"the mutation '{mutation}' passed the behavioural checks: {found}"
