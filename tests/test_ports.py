"""
Tests for L{txrwlock._ports}, the free-port helper of the examples and the tests.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from txrwlock._ports import freeLoopbackPort

__all__ = ["FreeLoopbackPortTests"]


class FreeLoopbackPortTests(SynchronousTestCase):
    """
    L{freeLoopbackPort} gives a port that can be bound on the loopback interface at once.
    """

    def test_bindable(self) -> None:
        """
        The port is an unprivileged TCP port, and a listening socket can take it.
        """
        port = freeLoopbackPort()
        self.assertGreater(port, 1023)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            s.listen()
            self.assertEqual(s.getsockname(), ("127.0.0.1", port))
