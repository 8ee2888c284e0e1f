"""Benchmarks, run from the repository root: ``python -m bench COMMAND [options]``.

    python -m bench checkins [--count 10000] [--workers 2]   check-in dispatch (the default)
    python -m bench soak [--duration 300] [--rate 50]       webhooks under faults (5 minutes)
    python -m bench webhooks [--quick] [--profile]           webhook throughput, latency, memory

Each benchmark builds its own throwaway world on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import sys

from bench import checkin_dispatch, soak, webhooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    checkin_dispatch.add_command(commands)
    soak.add_command(commands)
    webhooks.add_command(commands)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] or ["checkins"])
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
