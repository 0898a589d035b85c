"""The asyncio client against a real `convergence serve`."""

import asyncio
import unittest

from convergence import AsyncClient, SnapshotEnd, errors

from server import Server
from test_client import apply


class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    def setUp(self):
        self.server = Server("--window", "5ms").start()
        self.addCleanup(self.server.close)

    def restart(self):
        self.server.kill9()
        self.server.start()

    async def test_writes_survive_kill9_with_reconnect_and_resend(self):
        n = 4000
        c = await AsyncClient.connect(self.server.address, source="w", timeout=20)
        seqs = []
        for i in range(1, n + 1):
            seqs.append(await c.patch("player", f"e-{i}", {"score": i}))
            seqs.append(await c.patch("player", "hot", {"score": i}))
            self.assertLessEqual(c.unacknowledged, c.credit)
            if i == n // 2:
                await asyncio.to_thread(self.restart)
        await c.sync()
        self.assertGreaterEqual(c.reconnects, 1)
        mark = c.welcome.last_applied_seq
        stats = await c.stats()
        self.assertEqual(stats["ops_applied"], sum(1 for s in seqs if s > mark))
        self.assertEqual((await c.query("player", "hot")).record, {"score": n})
        missing = [i for i in range(1, n + 1) if await c.query("player", f"e-{i}") is None]
        self.assertEqual(missing, [])
        await c.close()

    async def test_query_stats_ping_and_errors(self):
        async with await AsyncClient.connect(self.server.address, source="w") as c:
            await c.assert_("player", "p", {"name": "n", "level": 2}, ts=5)
            await c.sync()
            e = await c.query("player", "p", claims=True)
            self.assertEqual(e.record, {"name": "n", "level": 2})
            self.assertEqual([(x.source, x.ts_max) for x in e.claims], [("w", 5)])
            self.assertIsNone(await c.query("player", "q"))
            self.assertIn("ops_applied", await c.stats())
            self.assertGreater(await c.ping(), 0)
            with self.assertRaises(errors.UnknownSchema):
                await c.query(42, "x")
            seq = await c.patch("player", "", {"x": 1.0})
            with self.assertRaises(errors.BadId) as cm:
                await c.sync()
            self.assertEqual((cm.exception.code, cm.exception.seq_or_req), (8, seq))

    async def test_bootstrap_then_resume_across_a_restart_with_include_prev(self):
        async with await AsyncClient.connect(self.server.address, source="w", timeout=20) as w:
            truth = {}
            for i in range(50):
                truth[f"p-{i}"] = {"score": i}
                await w.patch("player", f"p-{i}", {"score": i})
            await w.sync()
            sub = await w.subscribe("player", include_prev=True)
            model, since = {}, set()
            async for ev in sub:
                apply(model, since, ev)
                if isinstance(ev, SnapshotEnd):
                    break
            self.assertEqual(model, truth)

            await w.patch("player", "p-1", {"score": 100})
            await w.sync()
            ev = await sub.next(10)
            self.assertEqual((ev.id, ev.record, ev.prev, ev.changed),
                             ("p-1", {"score": 100}, {"score": 1}, ("score",)))
            truth["p-1"] = {"score": 100}
            apply(model, since, ev)

            await asyncio.to_thread(self.restart)
            await w.patch("player", "p-2", {"score": 200})
            await w.retract("player", "p-3")
            await w.sync()
            truth["p-2"] = {"score": 200}
            del truth["p-3"]
            resumed = False
            while model != truth or not resumed:
                ev = await sub.next(10)
                self.assertIsNotNone(ev)
                apply(model, since, ev)
                resumed |= isinstance(ev, SnapshotEnd) and ev.resumed
            self.assertGreaterEqual(sub.reconnects, 1)
            await sub.close()
            self.assertIsNone(await sub.next())

    async def test_a_connection_level_error_fails_waiting_requests(self):
        c = await AsyncClient.connect(self.server.address, source="s")
        other = await AsyncClient.connect(self.server.address, source="s")  # takes the source over
        with self.assertRaises(errors.SourceTakenOver):
            for _ in range(100):
                await c.ping()
        with self.assertRaises(errors.SourceTakenOver):
            await c.patch("player", "p", {"x": 1.0})
        await c.close()
        await other.close()


if __name__ == "__main__":
    unittest.main()
