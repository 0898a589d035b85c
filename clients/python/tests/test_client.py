"""The blocking client against a real `convergence serve`."""

import threading
import unittest

from convergence import Client, SnapshotEnd, SnapshotEntry

from server import Server


def apply(model: dict, events_since_end: set, ev) -> None:
    """What a subscriber keeps: id -> record."""
    if isinstance(ev, SnapshotEnd):
        if ev.reset:
            for gone in set(model) - events_since_end:
                del model[gone]
        events_since_end.clear()
        return
    if isinstance(ev, SnapshotEntry):
        events_since_end.add(ev.id)
    if ev.deleted:
        model.pop(ev.id, None)
    else:
        model[ev.id] = ev.record


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.server = Server("--window", "5ms").start()
        self.addCleanup(self.server.close)

    def test_writes_survive_kill9_with_reconnect_and_resend(self):
        n = 6000
        kill_at = 2500
        c = Client(self.server.address, source="w", timeout=20)
        self.addCleanup(c.close)
        first_mark = c.last_applied_seq
        seqs = []
        with c.batch():
            for i in range(1, n + 1):
                # Each op creates its own entity, and "hot" keeps the last op's number:
                # a lost op leaves an entity missing, an op applied twice (after a newer
                # one) leaves "hot" behind.
                seqs.append(c.patch("player", f"e-{i}", {"score": i}))
                seqs.append(c.patch("player", "hot", {"score": i}))
                if i == kill_at:
                    c.flush()
                    self.server.kill9()
                    self.server.start()
        c.sync()
        self.assertGreaterEqual(c.reconnects, 1)
        mark = c.last_applied_seq  # the restarted server's mark when the client came back
        self.assertEqual(seqs, sorted(seqs))
        self.assertGreater(seqs[0], first_mark)
        stats = c.stats()
        # The restarted server applied exactly the ops above its mark: the rest it had.
        self.assertEqual(stats["ops_applied"], sum(1 for s in seqs if s > mark))
        self.assertEqual(c.query("player", "hot").record, {"score": n})
        for i in range(1, n + 1, 97):
            self.assertEqual(c.query("player", f"e-{i}").record, {"score": i}, i)
        missing = [i for i in range(1, n + 1) if c.query("player", f"e-{i}") is None]
        self.assertEqual(missing, [])

    def test_seq_numbers_continue_from_welcome_after_a_new_client(self):
        with Client(self.server.address, source="w") as c:
            last = [c.patch("player", "p", {"level": k}) for k in range(5)][-1]
            c.sync()
        with Client(self.server.address, source="w") as c:
            self.assertEqual(c.last_applied_seq, last)
            self.assertGreater(c.patch("player", "p", {"level": 9}), last)
            c.sync()
            self.assertEqual(c.stats()["duplicates"], 0)
            self.assertEqual(c.query("player", "p").record, {"level": 9})

    def test_query_with_and_without_claims(self):
        with Client(self.server.address, source="a") as a, \
                Client(self.server.address, source="b") as b:
            a.assert_("player", "p-1", {"name": "ann", "x": 1.0}, ts=1000)
            b.patch("player", "p-1", {"x": 2.0, "online": True}, ts=2000)
            a.sync()
            b.sync()
            e = a.query("player", "p-1")
            self.assertEqual(e.record, {"name": "ann", "x": 2.0, "online": True})
            self.assertIsNone(e.claims)
            e = a.query("player", "p-1", claims=True)
            self.assertEqual(sorted((c.source, c.ts_max, tuple(sorted(c.record.items())))
                                    for c in e.claims),
                             [("a", 1000, (("name", "ann"), ("x", 1.0))),
                              ("b", 2000, (("online", True), ("x", 2.0)))])
            self.assertIsNone(a.query("player", "nobody"))
            b.retract("player", "p-1")
            a.retract("player", "p-1")
            b.sync()
            a.sync()
            self.assertIsNone(a.query("player", "p-1"))

    def test_bootstrap_then_resume_across_a_restart(self):
        w = Client(self.server.address, source="w", timeout=20)
        self.addCleanup(w.close)
        truth = {}
        for i in range(200):
            truth[f"p-{i}"] = {"score": i}
            w.patch("player", f"p-{i}", {"score": i})
        w.sync()
        sub = w.subscribe("player", prefix="p-")
        self.addCleanup(sub.close)
        model, since = {}, set()
        while True:
            ev = sub.next(10)
            self.assertIsNotNone(ev, "no SnapshotEnd")
            apply(model, since, ev)
            if isinstance(ev, SnapshotEnd):
                self.assertTrue(ev.reset)
                self.assertFalse(ev.resumed)
                break
        self.assertEqual(model, truth)

        for i in range(0, 200, 3):
            truth[f"p-{i}"] = {"score": -i}
            w.patch("player", f"p-{i}", {"score": -i})
        w.retract("player", "p-7")
        del truth["p-7"]
        w.sync()
        self.drain_until(sub, model, since, truth)
        before = sub.window

        self.server.stop()
        self.server.start()
        for i in range(1, 200, 5):
            if f"p-{i}" in truth:
                truth[f"p-{i}"] = {"score": 1000 + i}
                w.patch("player", f"p-{i}", {"score": 1000 + i})
        w.retract("player", "p-11")
        del truth["p-11"]
        truth["p-new"] = {"score": 5}
        w.patch("player", "p-new", {"score": 5})
        w.sync()
        ends = self.drain_until(sub, model, since, truth, resumed=True)
        self.assertGreaterEqual(sub.reconnects, 1)
        self.assertGreater(sub.window, before)

    def drain_until(self, sub, model, since, truth, resumed=False):
        ends = []
        while model != truth or (resumed and not any(e.resumed for e in ends)):
            ev = sub.next(10)
            self.assertIsNotNone(ev, f"the subscriber never saw the state: {len(model)} entities")
            apply(model, since, ev)
            if isinstance(ev, SnapshotEnd):
                ends.append(ev)
        return ends

    def test_include_prev(self):
        with Client(self.server.address, source="w") as w:
            w.patch("player", "p-1", {"name": "old", "x": 1.0})
            w.sync()
            sub = w.subscribe("player", bootstrap=False, include_prev=True)
            self.addCleanup(sub.close)
            end = sub.next(10)
            self.assertIsInstance(end, SnapshotEnd)
            self.assertEqual((end.total, end.reset), (0, False))
            w.patch("player", "p-1", {"name": "new"})
            w.patch("player", "p-2", {"level": 3})
            w.sync()
            changes = {}
            while len(changes) < 2:
                ev = sub.next(10)
                self.assertIsNotNone(ev)
                changes[ev.id] = ev
            c1, c2 = changes["p-1"], changes["p-2"]
            self.assertEqual(c1.changed, ("name",))
            self.assertEqual(c1.record, {"name": "new", "x": 1.0})
            self.assertTrue(c1.had_prev)
            self.assertEqual(c1.prev, {"name": "old", "x": 1.0})
            self.assertEqual(c2.changed, ("level",))
            self.assertFalse(c2.had_prev)
            self.assertIsNone(c2.prev)
            w.retract("player", "p-1")
            w.sync()
            gone = sub.next(10)
            self.assertTrue(gone.deleted)
            self.assertEqual(gone.record, {})
            self.assertEqual(gone.prev, {"name": "new", "x": 1.0})

    def test_field_mask_and_prefix(self):
        with Client(self.server.address, source="w") as w:
            sub = w.subscribe("player", prefix="a-", fields=["x"], bootstrap=False)
            self.addCleanup(sub.close)
            self.assertIsInstance(sub.next(10), SnapshotEnd)
            w.patch("player", "b-1", {"x": 1.0})
            w.patch("player", "a-1", {"name": "n"})  # outside the mask: not sent
            w.patch("player", "a-2", {"x": 2.0, "name": "m"})
            w.sync()
            ev = sub.next(10)
            self.assertEqual((ev.id, ev.record, ev.changed), ("a-2", {"x": 2.0}, ("x",)))
            self.assertIsNone(sub.next(0.3))

    def test_credit_is_never_exceeded_on_a_real_server(self):
        with Client(self.server.address, source="w") as c:
            peak = 0
            with c.batch():
                for i in range(30000):
                    c.patch("player", f"p-{i % 500}", {"score": i})
                    peak = max(peak, c.unacknowledged)
                    self.assertLessEqual(c.unacknowledged, c.credit)
            c.sync()
            self.assertEqual(c.stats()["credit_waits"], 0)
            self.assertGreater(peak, 0)

    def test_a_subscription_iterates_from_another_thread(self):
        with Client(self.server.address, source="w") as w:
            sub = w.subscribe("player", bootstrap=False)
            self.addCleanup(sub.close)
            self.assertIsInstance(sub.next(10), SnapshotEnd)
            got = []

            def read():
                for ev in sub:
                    got.append(ev.id)
                    if len(got) == 3:
                        return

            t = threading.Thread(target=read)
            t.start()
            for i in range(3):
                w.patch("player", f"t-{i}", {"level": i})
                w.sync()
            t.join(10)
            self.assertEqual(sorted(got), ["t-0", "t-1", "t-2"])


if __name__ == "__main__":
    unittest.main()
