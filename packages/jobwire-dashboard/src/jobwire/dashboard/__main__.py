"""`python -m jobwire.dashboard`."""

from __future__ import annotations

from jobwire.dashboard._cli import main

main()
