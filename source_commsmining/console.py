"""The console script, `source-commsmining spec|check|discover|read`: signal handlers first, then the connector.

Importing the CDK takes a second or two; a signal in that time would otherwise end the process
with a KeyboardInterrupt traceback or a bare -15. The package's __init__ defers its import of the
source, so the handlers (signals.py) are in place within milliseconds of start.
"""

import sys

from source_commsmining import signals


def main() -> None:
    signals.install_while_starting()
    try:
        from source_commsmining.run import run

        run()
    except signals.Interrupted as stop:  # the run's handler, before the run's own handling began
        try:
            print(signals.early_trace(stop), flush=True)
        except (BrokenPipeError, OSError):
            pass
        sys.exit(128 + stop.signum)
