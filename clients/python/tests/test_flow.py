"""Flow control and refusals against a scripted server (docs/protocol.md "Flow
control" and "Writes"): the client never keeps more ops unacknowledged than its
credit, follows CREDIT both ways, and sends an op refused for a full disk, and every
op after it, again."""

import asyncio
import socket
import threading
import unittest

from convergence import AsyncClient, Client, codec

PLAYER = codec.Schema(1, "player", [("x", codec.F64), ("level", codec.I64)])


class ScriptedServer:
    """Accepts one connection at a time; WELCOME with ``credit``; acknowledges ops
    only when as many as its current credit are outstanding (the most a client may
    send without waiting), then applies ``on_ack`` (which may change the credit).
    Refuses ops listed in ``refuse`` once each with ERROR(seq, overloaded), and every
    later op until the refused one comes again."""

    def __init__(self, credit: int, refuse=(), raise_credit_at=None):
        self.credit = credit
        self.refuse = set(refuse)
        self.raise_credit_at = raise_credit_at
        self.applied = []         # seqs applied, in order
        self.max_outstanding = 0  # the most ops unacknowledged at once
        self.violations = []      # (outstanding, credit) when over the credit
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.sock.accept()
        with conn:
            reader = codec.FrameReader()
            outstanding = 0
            refused_from = None
            last = 0

            def send(b):
                conn.sendall(b)

            while True:
                data = conn.recv(1 << 16)
                if not data:
                    return
                reader.feed(data)
                for t, b, s, e in reader.frames():
                    if t == codec.HELLO:
                        send(codec.encode_welcome(codec.Welcome(1, "scripted", 0, 1000, 1,
                                                                self.credit, [PLAYER])))
                        continue
                    if t == codec.SYNC:
                        send(codec.encode_single(codec.ACK, last))
                        send(codec.encode_single(codec.SYNCED, codec.decode_single(t, b, s, e).value))
                        outstanding = 0
                        continue
                    op = codec.decode(t, b, s, e, schemas={1: PLAYER})
                    if refused_from is not None and op.seq != refused_from:
                        send(codec.encode_error(op.seq, 10, "refused: resend from R"))
                        continue
                    refused_from = None
                    if op.seq in self.refuse:
                        self.refuse.discard(op.seq)
                        refused_from = op.seq
                        send(codec.encode_error(op.seq, 10, "disk full"))
                        continue
                    if op.seq <= last:
                        continue  # a duplicate
                    last = op.seq
                    self.applied.append(op.seq)
                    outstanding += 1
                    self.max_outstanding = max(self.max_outstanding, outstanding)
                    if outstanding > self.credit:
                        self.violations.append((outstanding, self.credit))
                    if outstanding >= self.credit:
                        send(codec.encode_single(codec.ACK, last))
                        outstanding = 0
                        if self.raise_credit_at is not None and last >= self.raise_credit_at[0]:
                            self.credit = self.raise_credit_at[1]
                            self.raise_credit_at = None
                            send(codec.encode_single(codec.CREDIT, self.credit))

    def close(self):
        self.sock.close()


class FlowTest(unittest.TestCase):
    def test_never_more_unacknowledged_ops_than_the_credit(self):
        srv = ScriptedServer(credit=8, raise_credit_at=(40, 32))
        self.addCleanup(srv.close)
        with Client(srv.address, source="w", timeout=5) as c:
            self.assertEqual(c.credit, 8)
            with c.batch():
                for i in range(200):
                    c.patch("player", "p", {"level": i})
                    self.assertLessEqual(c.unacknowledged, c.credit)
            c.sync()
            self.assertEqual(c.credit, 32)
        self.assertEqual(srv.violations, [])
        self.assertEqual(srv.max_outstanding, 32)  # it used the credit it was given
        self.assertEqual(len(srv.applied), 200)

    def test_a_lowered_credit_is_obeyed(self):
        srv = ScriptedServer(credit=32, raise_credit_at=(64, 4))
        self.addCleanup(srv.close)
        with Client(srv.address, source="w", timeout=5) as c:
            for i in range(100):
                c.patch("player", "p", {"level": i})
                self.assertLessEqual(c.unacknowledged, c.credit)
            c.sync()
        self.assertEqual(srv.violations, [])
        self.assertEqual(len(srv.applied), 100)

    def test_an_op_refused_for_a_full_disk_is_sent_again_with_those_after_it(self):
        srv = ScriptedServer(credit=16, refuse={5, 12})
        self.addCleanup(srv.close)
        with Client(srv.address, source="w", timeout=5) as c:
            seqs = [c.patch("player", "p", {"level": i}) for i in range(30)]
            c.sync()
        self.assertEqual(srv.applied, seqs)  # each once, in order

    def test_the_asyncio_client_keeps_within_the_credit_and_resends_refused_ops(self):
        srv = ScriptedServer(credit=8, refuse={9}, raise_credit_at=(30, 16))
        self.addCleanup(srv.close)

        async def run():
            c = await AsyncClient.connect(srv.address, source="w", timeout=5)
            seqs = []
            for i in range(120):
                seqs.append(await c.patch("player", "p", {"level": i}))
                self.assertLessEqual(c.unacknowledged, c.credit)
            await c.sync()
            await c.close()
            return seqs

        seqs = asyncio.run(run())
        self.assertEqual(srv.violations, [])
        self.assertEqual(srv.applied, seqs)


if __name__ == "__main__":
    unittest.main()


class ScriptedSubscriptionServer:
    """Serves subscriptions from a script: the first SUBSCRIBE gets ERROR(sub,
    overloaded) (a snapshot the server ended), the second a SNAPSHOT_END at window 10
    and a NOTIFY at window 11, then the connection is closed; the SUBSCRIBE after the
    reconnect must resume from window 11, and gets SNAPSHOT_END(12, reset 1)."""

    def __init__(self):
        self.subscribes = []  # (connection number, resume_window, flags)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        for number in range(2):
            conn, _ = self.sock.accept()
            with conn:
                reader = codec.FrameReader()
                while True:
                    data = conn.recv(1 << 16)
                    if not data:
                        break
                    reader.feed(data)
                    closing = False
                    for t, b, s, e in reader.frames():
                        if t == codec.HELLO:
                            conn.sendall(codec.encode_welcome(
                                codec.Welcome(1, "scripted", 0, 1000, 1, 0, [PLAYER])))
                            continue
                        m = codec.decode(t, b, s, e)
                        self.subscribes.append((number, m.resume_window, m.flags))
                        if len(self.subscribes) == 1:
                            conn.sendall(codec.encode_error(m.sub, 10, "snapshot not read"))
                        elif len(self.subscribes) == 2:
                            conn.sendall(codec.encode_snapshot_end(codec.SnapshotEnd(m.sub, 0, 10, True)) +
                                         codec.encode_notify(codec.Notify(m.sub, 11, [
                                             codec.Change(1, "p", 1, 5, {"x": 1.0})]), PLAYER, False))
                            closing = True
                        else:
                            conn.sendall(codec.encode_snapshot_end(codec.SnapshotEnd(m.sub, 0, 12, True)))
                    if closing:
                        break
        self.sock.close()


class SubscriptionRecoveryTest(unittest.TestCase):
    def check(self, events, srv):
        self.assertEqual([type(e).__name__ for e in events], ["SnapshotEnd", "Change", "SnapshotEnd"])
        self.assertFalse(events[0].resumed)
        self.assertEqual((events[1].id, events[1].record, events[1].window), ("p", {"x": 1.0}, 11))
        self.assertTrue(events[2].resumed and events[2].reset)
        self.assertEqual(srv.subscribes, [(0, 0, codec.SUBSCRIBE_BOOTSTRAP),
                                          (0, 0, codec.SUBSCRIBE_BOOTSTRAP),
                                          (1, 11, codec.SUBSCRIBE_BOOTSTRAP)])

    def test_subscribes_again_after_an_ended_snapshot_and_resumes_after_a_reconnect(self):
        srv = ScriptedSubscriptionServer()
        from convergence import Subscription
        sub = Subscription(srv.address, "player", timeout=5)
        events = [sub.next(5) for _ in range(3)]
        sub.close()
        self.check(events, srv)

    def test_the_asyncio_subscription_does_the_same(self):
        srv = ScriptedSubscriptionServer()
        from convergence import AsyncSubscription

        async def run():
            sub = await AsyncSubscription.open(srv.address, "player", timeout=5)
            events = [await sub.next(5) for _ in range(3)]
            await sub.close()
            return events

        self.check(asyncio.run(run()), srv)
