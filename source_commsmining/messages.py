"""Airbyte messages for the results tables (`stream_results` unless named), and the flush that makes "emitted" mean "on stdout"."""

import sys
import time
from typing import Any, Dict, Mapping

from airbyte_cdk.models import (
    AirbyteLogMessage,
    AirbyteMessage,
    AirbyteRecordMessage,
    AirbyteStateBlob,
    AirbyteStateMessage,
    AirbyteStateType,
    AirbyteStreamState,
    AirbyteStreamStatus,
    Level,
    StreamDescriptor,
    Type,
)
from airbyte_cdk.utils.stream_status_utils import as_airbyte_message as stream_status_message

STREAM_NAME = "stream_results"
_DESCRIPTORS: Dict[str, StreamDescriptor] = {}


def _descriptor(stream: str) -> StreamDescriptor:
    """One descriptor per results table, built once (a STATE and a status per table per batch)."""
    descriptor = _DESCRIPTORS.get(stream)
    if descriptor is None:
        descriptor = _DESCRIPTORS[stream] = StreamDescriptor(name=stream)
    return descriptor


def record(data: Mapping[str, Any], emitted_at: int, stream: str = STREAM_NAME) -> AirbyteMessage:
    return AirbyteMessage(
        type=Type.RECORD,
        record=AirbyteRecordMessage(stream=stream, data=data, emitted_at=emitted_at),
    )


def state(state_dict: Mapping[str, Any], stream: str = STREAM_NAME) -> AirbyteMessage:
    return AirbyteMessage(
        type=Type.STATE,
        state=AirbyteStateMessage(
            type=AirbyteStateType.STREAM,
            stream=AirbyteStreamState(stream_descriptor=_descriptor(stream), stream_state=AirbyteStateBlob(state_dict)),
        ),
    )


def log(message: str, level: Level = Level.INFO) -> AirbyteMessage:
    return AirbyteMessage(type=Type.LOG, log=AirbyteLogMessage(level=level, message=message))


def status(value: AirbyteStreamStatus, stream: str = STREAM_NAME) -> AirbyteMessage:
    return stream_status_message(_descriptor(stream), value)


def now_ms() -> int:
    return int(time.time() * 1000)


def flush_stdout() -> None:
    """Pushes everything printed so far through to the stdout file descriptor.

    Under `launch()` sys.stdout is the CDK's PrintBuffer, whose flush() writes its buffer to
    sys.__stdout__ and flushes that; elsewhere sys.stdout is a plain stream. Both are flushed,
    so this holds whether or not PYTHONUNBUFFERED is set.
    """
    sys.stdout.flush()
    if sys.__stdout__ is not None and sys.__stdout__ is not sys.stdout:
        sys.__stdout__.flush()
