"""Ports for a server that binds them later: a `derms-bridge` process, moto, a hub started
after the simulator that sends to it.

`free_port()` asks the system for a port from its ephemeral range, the same range that gives
every outgoing connection its local port: such a port, free when asked, can be a connection's
own by the time a process that took seconds to start binds it (seen in CI: "address already in
use" for the last of a sandbox's six ports). The ports here lie below that range, where no
connection is ever given one.
"""

import os
import random
import socket
from pathlib import Path

from derms_bridge.sandbox.servers import LOOPBACK

#: The lowest port looked at: above the well-known services' ports on this machine.
FLOOR = 20000


def ports_outside_the_ephemeral_range() -> range:
    """The larger of the stretches below and above the ports the system gives to outgoing
    connections and to binds to port 0."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return max(range(FLOOR, low), range(high + 1, 65536), key=len)


def is_free(port: int) -> bool:
    """Nothing listens on the port, so a server could bind it (as uvicorn does, reusing it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def ports_to_bind(count: int = 1) -> int:
    """A port P such that P to P + count - 1 are free and outside the ephemeral range.

    Each pytest worker looks in a stretch of its own, so two workers never take the same port;
    another test run on the machine taking the same block at the same moment is made unlikely
    by the random pick, not ruled out.
    """
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    outside = ports_outside_the_ephemeral_range()
    stretch = len(outside) // workers
    first = outside.start + worker * stretch
    candidates = range(first, first + stretch - count + 1, count)
    for port in random.sample(candidates, min(100, len(candidates))):
        if all(is_free(port + n) for n in range(count)):
            return port
    raise RuntimeError(
        f"found no {count} free ports in a row on loopback in {outside.start}-{outside.stop - 1}"
    )
