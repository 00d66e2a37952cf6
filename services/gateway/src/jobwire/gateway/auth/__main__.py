"""``python -m jobwire.gateway.auth``.

The entry point lives here, not in the package's ``__init__``: the gateway
imports ``jobwire.gateway.auth`` itself, and running an already imported module
as ``__main__`` makes Python warn about ``sys.modules`` on every run.
"""

from __future__ import annotations

import sys

from jobwire.gateway.auth._cli import main

sys.exit(main())
