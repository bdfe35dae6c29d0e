"""`check`: the token works and every configured stream exists, without reading any stream."""

import logging
from typing import List

from airbyte_cdk.models import AirbyteConnectionStatus, Status

from source_commsmining import roles
from source_commsmining.api import CmApi, CmStream
from source_commsmining.errors import describe
from source_commsmining.records import first_few


# UiPath's pages: "Get a stream by name" needs View labels + View streams; /results needs Consume streams,
# View labels and View sources; /advance and /reset need Consume streams and View labels.
_STREAM_PERMISSIONS = (
    f" (Getting a stream's definition needs {roles.needs(roles.VIEW_LABELS, roles.VIEW_STREAMS)} on its project; "
    f"reading it needs {roles.needs(roles.CONSUME_STREAMS, roles.VIEW_LABELS, roles.VIEW_SOURCES)}.)"
)


def check_connection(api: CmApi, endpoint: str, streams: List[CmStream], logger: logging.Logger) -> AirbyteConnectionStatus:
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
    if streams:
        logger.info(
            "check: each configured Communications Mining stream must be dedicated to this connection: a stream has "
            "one position for all its consumers, so another reader (a robot, another connection, a second sync at "
            "the same time) would take comments this one never delivers. Create one stream per consumer (same model, "
            "same filter)."
        )
    problems = []
    for index, cm in enumerate(streams):
        try:
            api.get_stream(cm)
        except Exception as error:
            problems.append(f"streams[{index}] {cm.key}: {describe(error)}")
    if problems:
        # The first few named, the rest counted: 1,000 unknown streams would otherwise make a 180 KB message.
        return AirbyteConnectionStatus(status=Status.FAILED, message=first_few(problems) + _STREAM_PERMISSIONS)
    return AirbyteConnectionStatus(status=Status.SUCCEEDED)
