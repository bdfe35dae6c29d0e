"""Every line the connector writes, to stdout or stderr, goes through errors.mask_line.

Whatever a server echoed back and whichever part of the CDK or the connector wrote it, no form of
the API token, in any case, reaches the output.
"""

import logging
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import AirbyteLogMessage, AirbyteMessage, Level, Type

from source_commsmining import errors

# The CDK prints a CONTROL message holding the whole migrated config (config_migrations, in the manifest:
# a top-level api_token becomes `credentials`) for the platform to store. Masked, it would make the platform
# store "****" as the token; unmasked, it would print the token. So it is not printed: the migration is
# applied in memory on every run, and a LOG says how to store the new shape.
_CONFIG_CONTROL = '{"type":"CONTROL","control":{"type":"CONNECTOR_CONFIG"'
_MIGRATED_NOTE = AirbyteEntrypoint.airbyte_message_to_string(
    AirbyteMessage(
        type=Type.LOG,
        log=AirbyteLogMessage(
            level=Level.INFO,
            message="This config holds a top-level `api_token` (the shape before sign-in methods): it is read as "
            "`credentials` {auth_type: api_token}. Saving the connection's settings once stores the new shape.",
        ),
    )
)


class MaskedStream:
    """sys.stdout / sys.stderr for the run: every write goes through errors.mask_line (most lines
    skip the mask's scans after a cheap probe; see errors.PROBES)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith(_CONFIG_CONTROL):
            text = _MIGRATED_NOTE
        return self._stream.write(errors.mask_line(text))

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def masked_output() -> Iterator[Callable[[str], None]]:
    """What launch prints through, masked: yields the function that writes one message line.

    As airbyte_cdk.entrypoint.launch, every line goes through the CDK's PrintBuffer, which
    ResultsReader flushes (messages.flush_stdout) after each STATE before it lets a stream advance.
    sys.stdout, sys.stderr (which the PrintBuffer redirects to stdout) and the CDK's log handler,
    which writes to the PrintBuffer itself, all go through the mask.
    """
    with PRINT_BUFFER:
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (MaskedStream(stream) for stream in saved)
        log_handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is PRINT_BUFFER
        ]
        for handler in log_handlers:
            handler.setStream(MaskedStream(PRINT_BUFFER))
        try:
            # One write per line (print would make a second, empty one for `end`): through the mask to the PrintBuffer.
            yield lambda line: sys.stdout.write(line + "\n")
        finally:
            sys.stdout, sys.stderr = saved
            for handler in log_handlers:
                handler.setStream(PRINT_BUFFER)
