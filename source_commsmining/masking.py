"""Every line the connector writes, to stdout or stderr, goes through errors.mask_line.

Whatever a server echoed back and whichever part of the CDK or the connector wrote it, no form of
the API token, in any case, reaches the output.
"""

import logging
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from airbyte_cdk.logger import PRINT_BUFFER

from source_commsmining import errors


class MaskedStream:
    """sys.stdout / sys.stderr for the run: every write goes through errors.mask_line (most lines
    skip the mask's scans after a cheap probe; see errors.PROBES)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
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
