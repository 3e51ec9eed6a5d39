"""The master's dispatcher (handoff.py): each accepted connection goes to the
ready worker holding the fewest, and what a dying worker never received goes
to another one. Worker ends are plain socket pairs here."""
from __future__ import annotations

import errno
import socket

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from estappliance.handoff import Dispatcher
from estappliance.worker_pool import listening_socket


@defer.inlineCallbacks
def until(predicate, timeout: float = 5.0):
    for _ in range(int(timeout / 0.01)):
        value = predicate()
        if value:
            return value
        yield task.deferLater(reactor, 0.01, lambda: None)
    return predicate()


def received(worker_end: socket.socket) -> list[socket.socket]:
    try:
        _, fds, _, _ = socket.recv_fds(worker_end, 16, 16)  # (3.11 ignores its flags argument)
    except BlockingIOError:
        return []
    return [socket.socket(fileno=fd) for fd in fds]


class DispatcherTests(unittest.TestCase):
    def setUp(self):
        self.listener = listening_socket("127.0.0.1", 0)
        self.port = self.listener.getsockname()[1]
        self.dispatcher = Dispatcher(self.listener)
        self.workers = {}
        for index in (0, 1):
            master_end, worker_end = socket.socketpair()
            self.dispatcher.link(index, master_end)
            worker_end.setblocking(False)
            self.workers[index] = worker_end
        self.addCleanup(self._close)

    def _close(self):
        self.dispatcher.stop()
        for index in list(self.dispatcher.links):
            self.dispatcher.unlink(index)
        for end in self.workers.values():
            end.close()
        self.listener.close()

    def connect(self) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port))
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def test_nothing_is_accepted_until_a_worker_is_ready(self):
        self.connect()
        yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(received(self.workers[0]) + received(self.workers[1]), [])
        self.workers[1].send(b"0 0\n")
        got = yield until(lambda: received(self.workers[1]))
        self.assertEqual(len(got), 1)

    @defer.inlineCallbacks
    def test_a_connection_goes_to_the_worker_holding_fewer(self):
        self.workers[0].send(b"0 3\n")  # ready, three connections already
        self.workers[1].send(b"0 0\n")
        yield until(lambda: all(link.ready for link in self.dispatcher.links.values()))
        for _ in range(3):
            self.connect()
        got = yield until(lambda: len(self.dispatcher.links[1].unconfirmed) == 3)
        self.assertTrue(got)
        self.connect()  # now 3 and 3: either may take it; then the counts differ by one
        yield until(lambda: sum(len(l.unconfirmed) for l in self.dispatcher.links.values()) == 4)
        self.assertEqual(sorted(link.connections for link in self.dispatcher.links.values()), [3, 4])

    @defer.inlineCallbacks
    def test_a_connection_the_dead_worker_never_received_goes_to_another(self):
        self.workers[0].send(b"0 0\n")
        yield until(lambda: self.dispatcher.links[0].ready)
        client = self.connect()
        yield until(lambda: self.dispatcher.links[0].unconfirmed)
        self.workers[1].send(b"0 0\n")
        self.workers[0].close()  # dies without taking it
        yield until(lambda: not self.dispatcher.links[0].ready)
        self.dispatcher.unlink(0)  # what the master does when the process has ended
        got = yield until(lambda: received(self.workers[1]))
        self.assertEqual(len(got), 1)
        client.sendall(b"hello")
        got[0].settimeout(5)
        self.assertEqual(got[0].recv(5), b"hello")
        got[0].close()

    @defer.inlineCallbacks
    def test_the_master_lets_go_of_a_connection_once_the_worker_has_it(self):
        self.workers[0].send(b"0 0\n")
        yield until(lambda: self.dispatcher.links[0].ready)
        client = self.connect()
        link = self.dispatcher.links[0]
        yield until(lambda: link.unconfirmed)
        got = received(self.workers[0])
        self.workers[0].send(b"1 1\n")
        yield until(lambda: not link.unconfirmed)
        self.assertEqual(link.connections, 1)
        got[0].close()  # the worker's copy was the last: the client sees the close
        client.settimeout(5)
        self.assertEqual(client.recv(1), b"")

    @defer.inlineCallbacks
    def test_out_of_descriptors_pauses_accepting_then_resumes(self):
        real = self.listener
        failures = []

        class Exhausted:
            """The listening socket, whose first accept() fails like at the fd limit."""

            def fileno(self):
                return real.fileno()

            def accept(self):
                if not failures:
                    failures.append(1)
                    raise OSError(errno.EMFILE, "Too many open files")
                return real.accept()
        self.dispatcher.sock = Exhausted()
        self.workers[0].send(b"0 0\n")
        yield until(lambda: self.dispatcher.links[0].ready)
        self.connect()
        yield until(lambda: failures)
        self.assertFalse(self.dispatcher._reading)  # no busy loop on a readable socket
        got = yield until(lambda: received(self.workers[0]))
        self.assertEqual(len(got), 1)  # accepted after the pause: nothing lost
        got[0].close()
