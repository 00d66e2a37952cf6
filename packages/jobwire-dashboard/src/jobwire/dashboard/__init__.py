"""Web dashboard for jobwire operators.

It talks to the gateway only through the public SDK (`jobwire.client.AsyncClient`),
so it works with any gateway and any provider. Run it with the
`jobwire-dashboard` command, or serve the app yourself:

Example:
    ```python
    import uvicorn
    from jobwire.dashboard import DashboardSettings, create_app

    app = create_app(DashboardSettings(gateway="127.0.0.1:50051"))
    uvicorn.run(app, host="127.0.0.1", port=8080)
    ```
"""

from __future__ import annotations

from jobwire.dashboard.__about__ import __version__
from jobwire.dashboard._app import create_app
from jobwire.dashboard._errors import ConfigError, DashboardError
from jobwire.dashboard._settings import DashboardSettings, is_loopback

__all__ = [
    "ConfigError",
    "DashboardError",
    "DashboardSettings",
    "__version__",
    "create_app",
    "is_loopback",
]

for _name in __all__:
    if not _name.startswith("__"):
        globals()[_name].__module__ = "jobwire.dashboard"
del _name
