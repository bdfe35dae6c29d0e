"""`check`: the token works, every configured stream exists, and which of them look read since their creation;
nothing is consumed, advanced or reset."""

import logging
from dataclasses import replace
from typing import Any, List, Mapping, Optional

from airbyte_cdk.models import AirbyteConnectionStatus, Status

from source_commsmining import roles
from source_commsmining.api import CmApi, CmStream
from source_commsmining.errors import describe
from source_commsmining.position_plan import IF_UNREAD, TAKE_OVER_FROM_CREATION, StreamInUse, UnusableStart
from source_commsmining.records import first_few
from source_commsmining.stream_position import Positioning, WouldMove


# UiPath's pages: "Get a stream by name" needs View labels + View streams; /results needs Consume streams,
# View labels and View sources; /advance and /reset need Consume streams and View labels.
_STREAM_PERMISSIONS = (
    f" (Getting a stream's definition needs {roles.needs(roles.VIEW_LABELS, roles.VIEW_STREAMS)} on its project; "
    f"reading it needs {roles.needs(roles.CONSUME_STREAMS, roles.VIEW_LABELS, roles.VIEW_SOURCES)}.)"
)


def check_connection(
    api: CmApi, endpoint: str, streams: List[CmStream], logger: logging.Logger, positioning: Optional[Positioning] = None
) -> AirbyteConnectionStatus:
    try:
        sources = api.list_sources()
    except Exception as error:  # auth, permissions, transport failures after retries, non-API bodies
        return AirbyteConnectionStatus(
            status=Status.FAILED,
            message=f"Could not list sources at {endpoint}: {describe(error)} "
            f"Check `api_endpoint` (e.g. https://acme.reinfer.io), `credentials` (the API token, or the External "
            f"Application; listing sources needs {roles.needs(roles.VIEW_SOURCES)}), and that this network can reach the API.",
        )
    logger.info(f"check: the token can see {len(sources)} sources")
    problems, definitions = [], {}
    for index, cm in enumerate(streams):
        try:
            definitions[cm.key] = api.get_stream(cm)
        except Exception as error:
            problems.append(f"streams[{index}] {cm.key}: {describe(error)}")
    if problems:
        # The first few named, the rest counted: 1,000 unknown streams would otherwise make a 180 KB message.
        return AirbyteConnectionStatus(status=Status.FAILED, message=first_few(problems) + _STREAM_PERMISSIONS)
    refusals = [r for cm in streams for r in _assess(api, cm, definitions[cm.key], positioning or Positioning(), logger)]
    if refusals:
        return AirbyteConnectionStatus(status=Status.FAILED, message=first_few(refusals))
    return AirbyteConnectionStatus(status=Status.SUCCEEDED)


def _assess(api: CmApi, cm: CmStream, definition: Mapping[str, Any], positioning: Positioning, logger: logging.Logger) -> List[str]:
    """Whether `cm` looks read since its creation (a WARN), and what the start position cannot use (a refusal).

    The decision is run as for a stream without state, with peeks and the export only (`dry`): it never
    advances or resets. A stream that looks read is a warning, not a failure: check has no state, and a
    connection's own earlier syncs look the same as another reader; the sync refuses it when it has no state.
    """
    uses_creation = positioning.start_position in (IF_UNREAD, TAKE_OVER_FROM_CREATION)
    try:
        _drain(replace(positioning, start_position=IF_UNREAD).place(api, cm, {}, dry=True, definition=definition))
    except WouldMove:
        return []
    except StreamInUse as taken:
        logger.warning(
            f"check: {taken.message} (If this connection has already synced this stream, its state resumes it and "
            "this does not apply.)"
        )
        return []
    except UnusableStart as error:  # the definition's created_at is not a past time
        if uses_creation:
            return [describe(error)]
    except Exception as error:  # a peek the token may not make: reading will say so with the stream's name
        logger.warning(f"check: could not tell whether stream {cm.key} was read: {describe(error)}")
    return []


def _drain(plan) -> None:
    for _ in plan:
        pass
