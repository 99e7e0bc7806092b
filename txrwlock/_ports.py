# -*- test-case-name: tests.test_ports -*-
"""
A free TCP port on the loopback interface, for the throwaway servers that the examples and the
tests start.  Private: not part of the API.
"""

from __future__ import annotations

import socket

__all__ = ["freeLoopbackPort"]


def freeLoopbackPort() -> int:
    """
    @return: a TCP port on 127.0.0.1 that was free when asked for: the kernel chose it for a
        socket, now closed.  Another process may take it before the caller binds it, a race
        that a throwaway server, on a machine running tests, can accept.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
