"""Start or check the services the test suite needs: PostgreSQL on 127.0.0.1:5432.

Run by ``hatch run test:ci`` before pytest. Where the machine has a Debian
PostgreSQL cluster that is down, it is started. Where no PostgreSQL can be
reached, the PostgreSQL tests skip with a message, except under CI (``CI`` set),
where they fail: CI must test what users deploy.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST, PORT = "127.0.0.1", 5432


def reachable() -> bool:
    """Whether something accepts connections on the PostgreSQL port."""
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def start_debian_cluster() -> None:
    """Start the machine's Debian PostgreSQL cluster(s), if there are any."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return
    for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )


def main() -> int:
    """Print the state of each service; start what can be started."""
    if not reachable():
        start_debian_cluster()
        for _ in range(60):
            if reachable():
                break
            time.sleep(0.5)
    if reachable():
        print(f"services: PostgreSQL is up on {HOST}:{PORT}")
    else:
        print(
            f"services: no PostgreSQL on {HOST}:{PORT}; its tests will skip (fail under CI). "
            "Start one with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
