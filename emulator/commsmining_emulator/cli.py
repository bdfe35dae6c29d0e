"""Command line: run the emulator in the foreground (for demos, benchmarks and kill tests).

Why this module exists: a subprocess emulator can be SIGKILLed by chaos tests and restarted with
the same seed; it prints one parseable line once listening and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .emulator import Emulator
from .faults import Fault
from .identity import DEFAULT_CLIENT_ID


def build_parser():
    p = argparse.ArgumentParser(prog="commsmining-emulator", description="Local Communications Mining API emulator")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = ephemeral)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--comments", type=int, default=None, help="comments in acme/collections (default 2000, demo 300)")
    p.add_argument("--scenario", choices=["default", "demo"], default="default")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--backward-advance", choices=["accept", "refuse", "ignore"], default="accept")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="e.g. 'route=results,status=503,rate=0.2' or 'route=advance,kind=drop_after,times=1'")
    p.add_argument("--token-lifetime", type=float, default=3600.0,
                   help="seconds an External Application's access token lasts (POST /identity_/connect/token)")
    p.add_argument("--ready-file", default=None, help="write the URL to this file once listening")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        faults = [Fault.parse(s) for s in args.fault]
    except (TypeError, ValueError) as e:
        print("commsmining-emulator: bad --fault: %s" % e, file=sys.stderr)
        return 2
    emu = Emulator(seed=args.seed, comments=args.comments, scenario=args.scenario,
                   backward_advance=args.backward_advance, port=args.port, latency_ms=args.latency_ms,
                   verbose=args.verbose, faults=faults, token_lifetime=args.token_lifetime)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emu.start()
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(emu.url + "\n")
        os.replace(tmp, args.ready_file)
    print("commsmining-emulator listening on %s token=%s token_url=%s client_id=%s" % (
        emu.url, emu.token, emu.token_url, DEFAULT_CLIENT_ID), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
