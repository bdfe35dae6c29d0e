"""Fault injection: make the emulator misbehave like a real API behind real proxies.

Why this module exists: the connector must survive 5xx/429 answers, HTML error pages from a
proxy, slow and hanging calls, connection resets, and the nasty case where the server applied
an advance but the client never saw the answer ("drop_after"). Faults are evaluated in
injection order, first match wins; `times` faults are consumed when they fire; `rate` uses a
seeded RNG so chaos runs are reproducible.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field

ROUTES = ("results", "advance", "reset", "fetch", "sources", "datasets", "export_dataset", "streams", "comments", "token", "*")
KINDS = ("status", "html", "delay", "hang", "drop", "drop_after", "stall", "omit_more_results")
# Kinds that shape a /results answer instead of failing it (a stuck queue; a server that leaves out a key).
RESULTS_KINDS = ("stall", "omit_more_results")


@dataclass
class Fault:
    route: str = "*"
    kind: str = "status"
    status: int | None = None  # default 503 for "status", 502 for "html"
    retry_after: float | int | None = None
    seconds: float = 0.0
    rate: float | None = None
    times: int | None = None
    body: str | None = None
    id: int = field(default=0, compare=False)

    def __post_init__(self):
        if self.route not in ROUTES:
            raise ValueError("unknown fault route %r (one of %s)" % (self.route, ", ".join(ROUTES)))
        if self.kind not in KINDS:
            raise ValueError("unknown fault kind %r (one of %s)" % (self.kind, ", ".join(KINDS)))
        if self.kind in RESULTS_KINDS and self.route != "results":
            raise ValueError("fault kind %r applies to route 'results' only" % self.kind)
        if self.status is None:
            self.status = 502 if self.kind == "html" else 503
        self.status = int(self.status)
        self.seconds = float(self.seconds or 0.0)
        if self.rate is not None:
            self.rate = float(self.rate)
        if self.times is not None:
            self.times = int(self.times)

    def to_json(self):
        return asdict(self)

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        """Parse the CLI form: 'route=results,status=503,rate=0.2' (kind defaults to status)."""
        kw = {}
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            k, _, v = part.partition("=")
            k = k.strip().replace("-", "_")
            v = v.strip()
            if k in ("status", "times"):
                kw[k] = int(v)
            elif k in ("rate", "seconds", "retry_after"):
                kw[k] = float(v)
            elif k in ("route", "kind", "body"):
                kw[k] = v
            else:
                raise ValueError("unknown fault key %r" % k)
        return cls(**kw)


class FaultSet:
    def __init__(self, seed: int):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed * 7919 + 17)
        self._next_id = 1
        self.fired = 0

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def clear(self):
        with self._lock:
            self._faults.clear()

    def list(self):
        with self._lock:
            return [f.to_json() for f in self._faults]

    def pick(self, route: str) -> Fault | None:
        with self._lock:
            for f in list(self._faults):
                if f.route != "*" and f.route != route:
                    continue
                if f.times is not None and f.times <= 0:
                    continue
                if f.rate is not None and self._rng.random() >= f.rate:
                    continue
                if f.times is not None:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                self.fired += 1
                return f
        return None
