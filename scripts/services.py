"""Start or check the services the test suite needs: PostgreSQL and RabbitMQ.

PostgreSQL on 127.0.0.1:5432, RabbitMQ on 127.0.0.1:5672. Run by ``hatch run
test:ci`` before pytest. Where the machine has a Debian PostgreSQL cluster or
RabbitMQ server that is down, it is started. Where one
cannot be reached, its tests skip with a message, except under CI (``CI`` set),
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
RABBITMQ_PORT = 5672


def reachable(port: int = PORT) -> bool:
    """Whether something accepts connections on ``port`` (PostgreSQL's by default)."""
    try:
        with socket.create_connection((HOST, port), timeout=1):
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


def start_rabbitmq() -> None:
    """Start the machine's RabbitMQ server (Debian's init script; idempotent) and wait for it."""
    if shutil.which("rabbitmqctl") is None or not Path("/etc/init.d/rabbitmq-server").exists():
        return
    started = subprocess.run(
        ["service", "rabbitmq-server", "start"], check=False, capture_output=True
    )
    if started.returncode == 0:
        subprocess.run(
            ["rabbitmqctl", "await_startup"], check=False, capture_output=True, timeout=120
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
    if not reachable(RABBITMQ_PORT):
        start_rabbitmq()
    if reachable(RABBITMQ_PORT):
        print(f"services: RabbitMQ is up on {HOST}:{RABBITMQ_PORT}")
    else:
        print(
            f"services: no RabbitMQ on {HOST}:{RABBITMQ_PORT}; its tests will skip (fail under "
            "CI). Start it with: service rabbitmq-server start && rabbitmqctl await_startup"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
