"""``python -m jobwire.gateway.auth``: hash a bearer token for ``[server.auth]``."""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence

from jobwire.gateway.auth._interceptor import hash_token


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jobwire.gateway.auth``: print the SHA-256 to configure for a token.

    The token is read from standard input, so it stays out of shell history
    and the process list; ``--generate`` makes a new random token first.
    """
    parser = argparse.ArgumentParser(
        prog="python -m jobwire.gateway.auth",
        description="Hash a bearer token (read from stdin) for [server.auth] tokens.",
    )
    parser.add_argument(
        "--generate", action="store_true", help="generate a random token and print it too"
    )
    args = parser.parse_args(argv)
    if args.generate:
        token = secrets.token_urlsafe(32)
        sys.stdout.write(f"token:  {token}\nsha256: {hash_token(token)}\n")
        return 0
    token = sys.stdin.readline().strip()
    if not token:
        parser.error("no token on standard input")
    sys.stdout.write(f"{hash_token(token)}\n")
    return 0
