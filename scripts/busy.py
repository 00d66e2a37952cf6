"""Run a command while one CPU core is kept busy: the suite's stress mode.

``hatch run test:stress`` runs the whole test suite this way; a test that
passes on an idle machine but fails here depends on a margin the machine
cannot promise. The spinning process is started here and stopped here, by its
PID, whatever the command's outcome.

Usage: ``python scripts/busy.py [--cores N] -- COMMAND...``
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

SPIN = "while True: pass"


def main(argv: list[str]) -> int:
    """Start the spinners, run the command, stop the spinners; return its exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=1, help="cores to keep busy (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.cores)]
    print(f"busy: {args.cores} spinning process(es), pids {[p.pid for p in spinners]}", flush=True)
    try:
        return subprocess.call(command)
    finally:
        for spinner in spinners:
            os.kill(spinner.pid, signal.SIGKILL)
            spinner.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
