"""``python -m jobwire.gateway``."""

from __future__ import annotations

import sys

from jobwire.gateway._cli import main

sys.exit(main())
