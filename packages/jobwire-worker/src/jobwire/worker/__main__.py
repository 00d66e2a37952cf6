"""``python -m jobwire.worker``: the ``jobwire-worker`` command."""

from __future__ import annotations

from jobwire.worker._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
