"""The blocking and asyncio clients over TLS (``tls=ssl.SSLContext``) against a real
`convergence serve --tls-cert`, with certificates the openssl command makes."""

import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

from convergence import AsyncClient, Client, SnapshotEnd

from server import Server


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d: str) -> None:
    """ca.pem/ca.key, and server.pem/server.key for localhost and 127.0.0.1."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-days", "30",
            "-subj", "/CN=ca")
    openssl("req", *ec, "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr",
            "-subj", "/CN=localhost")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-out", f"{d}/server.pem", "-days", "30",
            "-extfile", f"{d}/ext")


class TlsTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="convergence-py-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        make_certs(self.dir)
        self.server = Server("--window", "5ms", "--tls-cert", f"{self.dir}/server.pem",
                             "--tls-key", f"{self.dir}/server.key").start()
        self.addCleanup(self.server.close)
        self.tls = ssl.create_default_context(cafile=f"{self.dir}/ca.pem")

    def test_blocking_client_writes_queries_and_subscribes_over_tls(self):
        c = Client(self.server.address, source="w", tls=self.tls)
        self.addCleanup(c.close)
        sub = c.subscribe("player", bootstrap=True)
        self.addCleanup(sub.close)
        self.assertIsInstance(next(iter(sub)), SnapshotEnd)
        c.assert_("player", "p", {"name": "over tls", "level": 3})
        c.sync()
        self.assertEqual(c.query("player", "p").record, {"name": "over tls", "level": 3})
        change = next(iter(sub))
        self.assertEqual((change.id, change.record), ("p", {"name": "over tls", "level": 3}))

    async def test_async_client_over_tls(self):
        async with await AsyncClient.connect(self.server.address, source="a",
                                             tls=self.tls) as c:
            await c.assert_("player", "q", {"level": 4})
            await c.sync()
            self.assertEqual((await c.query("player", "q")).record, {"level": 4})

    def test_a_client_that_does_not_trust_the_server_is_refused(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            Client(self.server.address, tls=ssl.create_default_context())


if __name__ == "__main__":
    unittest.main()
