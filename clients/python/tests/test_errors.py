"""Every error code of docs/protocol.md "Errors" that the server can be made to send
surfaces as its typed error carrying the spec's code."""

import os
import tempfile
import time
import unittest

from convergence import codec, errors
from convergence.client import Client, _Conn

from server import Server


class ErrorsTest(unittest.TestCase):
    def setUp(self):
        self.server = Server("--max-frame", "4096").start()
        self.addCleanup(self.server.close)

    def assertCode(self, cm, cls, code):
        self.assertIsInstance(cm.exception, cls)
        self.assertEqual(cm.exception.code, code)
        self.assertEqual(errors.CODES[code], cls)

    def client(self, **kw):
        c = Client(self.server.address, **kw)
        self.addCleanup(c.close)
        return c

    def test_bad_frame(self):
        c = self.client(reconnect=False)
        c._conn.sock.sendall(codec.frame(0x7F, b""))  # not a client frame
        with self.assertRaises(errors.BadFrame) as cm:
            c.ping()
        self.assertCode(cm, errors.BadFrame, 1)
        self.assertTrue(cm.exception.connection_level)
        with self.assertRaises(errors.BadFrame):  # the client stays failed
            c.stats()

    def test_frame_too_large(self):
        c = self.client(source="w")
        c.patch("player", "p", {"name": "x" * 5000})
        with self.assertRaises(errors.FrameTooLarge) as cm:
            c.sync()
        self.assertCode(cm, errors.FrameTooLarge, 2)

    def test_unsupported_version(self):
        with self.assertRaises(errors.UnsupportedVersion) as cm:
            _Conn(self.server.address, codec.encode_hello(version=2), 5, 1 << 20)
        self.assertCode(cm, errors.UnsupportedVersion, 3)

    def test_not_a_source(self):
        c = self.client()
        seq = c.patch("player", "p", {"x": 1.0})
        with self.assertRaises(errors.NotASource) as cm:
            c.sync()
        self.assertCode(cm, errors.NotASource, 5)
        self.assertEqual(cm.exception.seq_or_req, seq)
        c.ping()  # the connection stays open

    def test_unknown_schema(self):
        c = self.client(source="w")
        with self.assertRaises(errors.UnknownSchema) as cm:
            c.query(99, "x")
        self.assertCode(cm, errors.UnknownSchema, 6)
        seq = c.retract(99, "x")
        with self.assertRaises(errors.UnknownSchema) as cm:
            c.sync()
        self.assertEqual(cm.exception.seq_or_req, seq)
        sub = c.subscribe(99)
        with self.assertRaises(errors.UnknownSchema):
            sub.next(10)
        with self.assertRaises(ValueError):  # a name is checked against WELCOME
            c.query("nope", "x")

    def test_bad_value(self):
        c = self.client(source="w")
        future = int(time.time() * 1e6) + 3600 * 10**6
        seq = c.patch("player", "p", {"x": 1.0}, ts=future)
        c.patch("player", "p", {"x": 2.0})
        with self.assertRaises(errors.BadValue) as cm:
            c.sync()
        self.assertCode(cm, errors.BadValue, 7)
        self.assertEqual(cm.exception.seq_or_req, seq)
        self.assertEqual(c.query("player", "p").record, {"x": 2.0})
        sub = c.subscribe("player", interval_ms=3_600_001)
        with self.assertRaises(errors.BadValue):
            sub.next(10)
        with self.assertRaises(errors.BadValue) as cm:
            Client(self.server.address, source="l", lease_ms=8 * 86_400_000)
        self.assertTrue(cm.exception.connection_level)

    def test_bad_id(self):
        c = self.client(source="w")
        seq = c.patch("player", "", {"x": 1.0})
        with self.assertRaises(errors.BadId) as cm:
            c.sync()
        self.assertCode(cm, errors.BadId, 8)
        self.assertEqual(cm.exception.seq_or_req, seq)
        with self.assertRaises(errors.BadId):
            c.query("player", "i" * 256)
        c.patch("player", "i" * 255, {"x": 1.0})
        c.sync()
        with self.assertRaises(errors.BadId):
            Client(self.server.address, source="s" * 256)

    def test_unknown_subscription(self):
        c = self.client(source="w")
        c._conn.sock.sendall(codec.encode_single(codec.UNSUBSCRIBE, 77))
        with self.assertRaises(errors.UnknownSubscription) as cm:
            c.sync()
        self.assertCode(cm, errors.UnknownSubscription, 9)
        self.assertEqual(cm.exception.seq_or_req, 77)

    def test_source_taken_over(self):
        a = self.client(source="s")
        a.patch("player", "p", {"x": 1.0})
        a.sync()
        self.client(source="s")
        with self.assertRaises(errors.SourceTakenOver) as cm:
            a.ping()
        self.assertCode(cm, errors.SourceTakenOver, 12)

    def test_handshake_required(self):
        with self.assertRaises(errors.HandshakeRequired) as cm:
            _Conn(self.server.address, codec.encode_single(codec.PING, 1), 5, 1 << 20)
        self.assertCode(cm, errors.HandshakeRequired, 13)

    def test_not_owner_names_the_owner(self):
        e = errors.from_error(0, 14, "this server is a read replica; the owner is at 10.0.0.7:3727")
        self.assertIs(type(e), errors.NotOwner)
        self.assertEqual((e.code, e.name, e.owner), (14, "not_owner", "10.0.0.7:3727"))
        self.assertTrue(e.connection_level)
        unknown = errors.from_error(0, 14, "this server is a read replica; the owner is not known yet")
        self.assertEqual(unknown.owner, "")

    def test_an_unknown_code_is_a_server_error_carrying_it(self):
        e = errors.from_error(3, 99, "new")
        self.assertIs(type(e), errors.ServerError)
        self.assertEqual((e.code, e.seq_or_req, e.message), (99, 3, "new"))


class ServerOptionErrorsTest(unittest.TestCase):
    def test_auth_failed(self):
        tmp = tempfile.mkdtemp(prefix="convergence-py-token-")
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write("s3cret\n")
        os.chmod(token_file, 0o600)
        with Server("--auth-token-file", token_file) as server:
            for token in (None, "wrong"):
                with self.assertRaises(errors.AuthFailed) as cm:
                    Client(server.address, token=token)
                self.assertEqual(cm.exception.code, 4)
            with Client(server.address, token="s3cret", source="w") as c:
                c.patch("player", "p", {"x": 1.0})
                c.sync()
                sub = c.subscribe("player")  # the subscription's connection sends it too
                self.assertEqual(sub.next(10).id, "p")
                sub.close()

    def test_overloaded(self):
        with Server("--max-connections", "1") as server:
            with Client(server.address):
                with self.assertRaises(errors.Overloaded) as cm:
                    Client(server.address)
                self.assertEqual(cm.exception.code, 10)

    def test_shutting_down(self):
        with Server() as server:
            c = Client(server.address, source="w", reconnect=False)
            c.patch("player", "p", {"x": 1.0})
            c.sync()
            self.assertEqual(server.stop(), 0)
            with self.assertRaises(errors.ShuttingDown) as cm:
                c.ping()
            self.assertEqual(cm.exception.code, 11)
            c.close()

    def test_without_reconnect_a_lost_connection_is_connection_lost(self):
        with Server() as server:
            c = Client(server.address, source="w", reconnect=False)
            server.kill9()
            with self.assertRaises(errors.ConnectionLost):
                c.ping()
            c.close()

    def test_reconnecting_gives_up_after_its_timeout(self):
        with Server() as server:
            c = Client(server.address, source="w", reconnect_timeout=0.5)
            server.kill9()
            t = time.monotonic()
            with self.assertRaises(errors.ConnectionLost):
                c.ping()
            self.assertLess(time.monotonic() - t, 5)
            c.close()


if __name__ == "__main__":
    unittest.main()
