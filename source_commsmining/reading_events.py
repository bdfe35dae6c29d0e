"""What a stream's reader hands the output of `stream_results`, one event at a time.

Its own module because three parts speak it: a stream's reader (stream_reading.py) makes the
events, the scheduler (scheduling.py) passes them on between threads and rounds, and the
output (results_reader.py) turns them into messages.
"""

import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

from airbyte_cdk.models import Level

from source_commsmining.api import CmStream


@dataclass
class Batch:
    """One /results batch, to be printed before the stream may advance past it.

    The reader waits for `delivered` (set by the output after the batch's STATE is flushed) and
    never advances past a batch without it.
    """

    cm: CmStream
    records: List[Dict[str, Any]]
    continuation: str
    watermark: Optional[str]
    delivered: threading.Event = field(default_factory=threading.Event)
    # The rows of the selected flat tables, by table (built in the stream's own thread).
    rows: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Log:
    message: str
    level: Level = Level.INFO


@dataclass
class Done:
    """The stream's reading ended: cleanly, or with `error` (which fails the sync)."""

    cm: CmStream
    error: Optional[BaseException] = None


@dataclass
class Paused:
    """The stream used its share of the record cap for this round (see scheduling.py)."""

    cm: CmStream


Event = Union[Batch, Log, Done, Paused]


@dataclass
class Share:
    """Records a stream may still start batches for in this round; None: no cap.

    Written by the scheduler between rounds, read and lowered by the stream's reader.
    """

    left: Optional[int] = None
