"""Several servers in one address ("HOST:PORT,HOST:PORT" or a list): tried in order,
not_owner answers followed, a lost writer moves to the next server and resends what
was not acknowledged, and an error that names every address when none answers."""

import asyncio
import socket
import threading
import unittest

from convergence import AsyncClient, Client, ConnectionLost, codec, errors
from convergence._state import parse_addresses

from server import Server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"


class NotOwnerServer:
    """Answers every HELLO with ERROR not_owner naming ``owner``, as a read replica
    does, then closes."""

    def __init__(self, owner: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answered = 0
        message = f"this server is a read replica; the owner is at {owner}"
        self.reply = codec.encode_error(0, errors.NotOwner.code, message)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(1 << 16)
                conn.sendall(self.reply)
                self.answered += 1

    def close(self):
        self.sock.close()


class AddressListTest(unittest.TestCase):
    def test_a_list_is_split_and_a_wrong_entry_named(self):
        self.assertEqual(parse_addresses("a:1"), ["a:1"])
        self.assertEqual(parse_addresses("a:1,[::1]:2"), ["a:1", "[::1]:2"])
        self.assertEqual(parse_addresses(["a:1", "b:2"]), ["a:1", "b:2"])
        with self.assertRaisesRegex(ValueError, "the server list is empty"):
            parse_addresses("")
        with self.assertRaisesRegex(ValueError, r"'a:1,,b:2': entry 2 is empty"):
            parse_addresses("a:1,,b:2")
        with self.assertRaisesRegex(ValueError, r"entry 3: address 'c' is not HOST:PORT"):
            parse_addresses("a:1,b:2,c")
        with self.assertRaisesRegex(ValueError, r"entry 2: port 70000 is over 65535"):
            parse_addresses(["a:1", "b:70000"])
        with self.assertRaisesRegex(ValueError, r"entry 1: address 'x' is not HOST:PORT"):
            Client("x,127.0.0.1:1")


class FailoverTest(unittest.TestCase):
    def setUp(self):
        self.server = Server("--window", "5ms").start()
        self.addCleanup(self.server.close)

    def test_the_first_server_down_the_next_takes_the_connection(self):
        with Client([closed_address(), self.server.address], source="w") as c:
            self.assertEqual(c.server, self.server.address)
            c.patch("player", "p", {"score": 1})
            c.sync()

    def test_every_server_down_names_each_address(self):
        a, b = closed_address(), closed_address()
        with self.assertRaises(ConnectionLost) as cm:
            Client(f"{a},{b}", source="w")
        self.assertIn(f"no server of {a},{b} took the connection: {a}: ", str(cm.exception))
        self.assertIn(f"; {b}: ", str(cm.exception))
        self.assertIn("Connection refused", str(cm.exception))
        # One address: its own error, as before.
        with self.assertRaises(ConnectionRefusedError):
            Client(a)

    def test_not_owner_is_followed_to_the_owner_it_names(self):
        replica = NotOwnerServer(self.server.address)
        self.addCleanup(replica.close)
        with Client(replica.address, source="w") as c:
            self.assertEqual(c.server, self.server.address)
            self.assertEqual(replica.answered, 1)
        # A replica naming an owner that is down: the error says both.
        gone = closed_address()
        lost = NotOwnerServer(gone)
        self.addCleanup(lost.close)
        with self.assertRaises(ConnectionLost) as cm:
            Client(lost.address, source="w")
        self.assertIn(f"{lost.address}: not_owner (14): this server is a read replica; "
                      f"the owner is at {gone}",
                      str(cm.exception))
        self.assertIn(f"{gone}: ", str(cm.exception))

    def test_a_writer_moves_to_the_next_server_after_kill9_and_resends(self):
        # The second server of the list is the same data dir on another port: what a
        # standby is after a takeover, as far as the client can tell.
        second = Server("--window", "5ms", data_dir=self.server.data_dir)
        second.port = free_port()
        self.addCleanup(second.close)
        n, kill_at = 3000, 1200
        c = Client([self.server.address, second.address], source="w", timeout=20,
                   reconnect_timeout=20)
        self.addCleanup(c.close)
        seqs = []
        with c.batch():
            for i in range(1, n + 1):
                seqs.append(c.patch("player", f"e-{i}", {"score": i}))
                seqs.append(c.patch("player", "hot", {"score": i}))
                if i == kill_at:
                    c.flush()
                    self.server.kill9()
                    second.start()
        c.sync()
        self.assertEqual(c.reconnects, 1)
        self.assertEqual(c.server, second.address)
        self.assertEqual(c.unacknowledged, 0)
        self.assertEqual(c.query("player", "hot").record, {"score": n})
        missing = [i for i in range(1, n + 1) if c.query("player", f"e-{i}") is None]
        self.assertEqual(missing, [])
        with Client(second.address, source="w") as again:
            self.assertEqual(again.last_applied_seq, seqs[-1])

    def test_reconnect_gives_up_naming_every_address(self):
        other = closed_address()
        c = Client([self.server.address, other], source="w", reconnect_timeout=0.5)
        self.addCleanup(c.close)
        self.server.kill9()
        with self.assertRaises(ConnectionLost) as cm:
            for i in range(100):
                c.patch("player", "p", {"score": i})
                c.sync()
        text = str(cm.exception)
        self.assertIn(f"could not reconnect to {self.server.address},{other} within 0.5s: ", text)
        self.assertIn(f"{self.server.address}: ", text)
        self.assertIn(f"{other}: ", text)


class AsyncFailoverTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.server = Server("--window", "5ms").start()
        self.addCleanup(self.server.close)

    async def test_the_first_server_down_the_next_takes_the_connection(self):
        c = await AsyncClient.connect([closed_address(), self.server.address], source="w")
        self.assertEqual(c.server, self.server.address)
        await c.patch("player", "p", {"score": 1})
        await c.sync()
        await c.close()

    async def test_every_server_down_names_each_address(self):
        a, b = closed_address(), closed_address()
        with self.assertRaises(ConnectionLost) as cm:
            await AsyncClient.connect([a, b], source="w")
        self.assertIn(f"no server of {a},{b} took the connection: {a}: ", str(cm.exception))
        self.assertIn(f"; {b}: ", str(cm.exception))

    async def test_not_owner_is_followed(self):
        replica = NotOwnerServer(self.server.address)
        self.addCleanup(replica.close)
        c = await AsyncClient.connect(replica.address, source="w")
        self.assertEqual(c.server, self.server.address)
        await c.close()

    async def test_a_writer_moves_to_the_next_server_after_kill9(self):
        second = Server("--window", "5ms", data_dir=self.server.data_dir)
        second.port = free_port()
        self.addCleanup(second.close)
        c = await AsyncClient.connect([self.server.address, second.address], source="w",
                                      timeout=20, reconnect_timeout=20)
        for i in range(1, 201):
            await c.patch("player", f"e-{i}", {"score": i})
        await c.sync()
        self.server.kill9()
        await asyncio.get_running_loop().run_in_executor(None, second.start)
        for i in range(201, 401):
            await c.patch("player", f"e-{i}", {"score": i})
        await c.sync()
        self.assertGreaterEqual(c.reconnects, 1)
        self.assertEqual(c.server, second.address)
        for i in (1, 200, 201, 400):
            self.assertEqual((await c.query("player", f"e-{i}")).record, {"score": i})
        await c.close()


if __name__ == "__main__":
    unittest.main()
