"""The codec's checks: values out of range, records that do not fit the schema,
malformed frames. Round trips with a fixed, printed seed."""

import math
import random
import struct
import unittest

from convergence import codec

KITCHEN = codec.Schema(2, "kitchen", [("flag", codec.BOOL), ("count", codec.I64),
                                      ("ratio", codec.F64), ("label", codec.STRING),
                                      ("blob", codec.BYTES)])
SEED = 20260412


class EncodeTest(unittest.TestCase):
    def test_varints_out_of_range_are_refused(self):
        with self.assertRaisesRegex(ValueError, "seq -1"):
            codec.encode_write(codec.PATCH, -1, 0, 1, b"p", b"\x00")
        with self.assertRaisesRegex(ValueError, "ts 18446744073709551616"):
            codec.encode_write(codec.PATCH, 1, 1 << 64, 1, b"p", b"\x00")
        with self.assertRaisesRegex(ValueError, "lease_ms"):
            codec.encode_hello(b"w", b"", -5)

    def test_record_values_are_checked_against_the_schema(self):
        with self.assertRaisesRegex(ValueError, "no field 'nope'"):
            KITCHEN.encode_record({"nope": 1})
        with self.assertRaisesRegex(TypeError, "'count' is i64, got str"):
            KITCHEN.encode_record({"count": "1"})
        with self.assertRaisesRegex(TypeError, "'flag' is bool, got int"):
            KITCHEN.encode_record({"flag": 1})
        with self.assertRaisesRegex(TypeError, "'ratio' is f64, got bool"):
            KITCHEN.encode_record({"ratio": True})
        with self.assertRaisesRegex(TypeError, "'label' is string, got bytes"):
            KITCHEN.encode_record({"label": b"x"})
        with self.assertRaisesRegex(TypeError, "'blob' is bytes, got str"):
            KITCHEN.encode_record({"blob": "x"})
        with self.assertRaisesRegex(ValueError, "'count' 9223372036854775808 is outside"):
            KITCHEN.encode_record({"count": 1 << 63})
        with self.assertRaisesRegex(TypeError, "expected str or bytes"):
            codec.to_bytes(5)
        with self.assertRaisesRegex(ValueError, "no field 'nope'"):
            KITCHEN.mask_of(["nope"])
        # An int is taken for an f64.
        self.assertEqual(KITCHEN.encode_record({"ratio": 2}), KITCHEN.encode_record({"ratio": 2.0}))

    def test_records_round_trip(self):
        print(f"\nrecord round trip seed {SEED}")
        rng = random.Random(SEED)
        for _ in range(2000):
            rec = {}
            if rng.random() < 0.5:
                rec["flag"] = rng.random() < 0.5
            if rng.random() < 0.5:
                rec["count"] = rng.choice([codec.I64_MIN, codec.I64_MAX, 0, -1,
                                           rng.randint(codec.I64_MIN, codec.I64_MAX)])
            if rng.random() < 0.5:
                rec["ratio"] = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if rng.random() < 0.5:
                rec["label"] = "".join(chr(rng.choice([0x41, 0xE9, 0x2713, 0x1F600]))
                                       for _ in range(rng.randint(0, 200)))
            if rng.random() < 0.5:
                rec["blob"] = rng.randbytes(rng.randint(0, 300))
            b = KITCHEN.encode_record(rec)
            got, end = KITCHEN.decode_record(b, 0, len(b))
            self.assertEqual(end, len(b))
            self.assertEqual(set(got), set(rec))
            for k, v in rec.items():
                if k == "ratio" and math.isnan(v):
                    self.assertEqual(struct.pack("<d", got[k]), struct.pack("<d", v))
                else:
                    self.assertEqual(got[k], v)


class DecodeTest(unittest.TestCase):
    def bad_record(self, b, pattern):
        with self.assertRaisesRegex(codec.ProtocolError, pattern):
            codec.decode(codec.SNAPSHOT, b"\x01\x01\x01\x01p" + b, schema=KITCHEN)

    def test_malformed_records_name_the_field_and_offset(self):
        self.bad_record(b"\x20", "mask 0x20 names a field beyond the 5")
        self.bad_record(b"\x01\x02", "field 'flag' at offset 6: bool 2")
        self.bad_record(b"\x08\x02\xc3\x28", "field 'label' at offset 7: invalid UTF-8")
        self.bad_record(b"\x10\x05ab", "field 'blob' at offset 7: 5 bytes run past the end")
        self.bad_record(b"\x04\x00\x00", "field 'ratio' at offset 6: f64 runs past the end")
        self.bad_record(b"\x02" + b"\xff" * 9 + b"\x02", "varint at offset 6 is over 64 bits")

    def test_malformed_frames(self):
        with self.assertRaisesRegex(codec.ProtocolError, "kind 3"):
            codec.decode(codec.SNAPSHOT, b"\x01\x01\x03\x01p\x00", schema=KITCHEN)
        with self.assertRaisesRegex(codec.ProtocolError, "delete of 'p' carries fields"):
            codec.decode(codec.SNAPSHOT, b"\x01\x01\x02\x01p\x01\x01", schema=KITCHEN)
        with self.assertRaisesRegex(codec.ProtocolError, "changed_mask 0x20"):
            codec.decode(codec.NOTIFY, b"\x01\x01\x01\x01\x01p\x20\x00\x00", schema=KITCHEN)
        with self.assertRaisesRegex(codec.ProtocolError, "had_prev byte 2"):
            codec.decode(codec.NOTIFY, b"\x01\x01\x01\x01\x01p\x00\x00\x00\x02",
                         schema=KITCHEN, include_prev=True)
        with self.assertRaisesRegex(codec.ProtocolError, "reset byte 2"):
            codec.decode(codec.SNAPSHOT_END, b"\x01\x00\x05\x02")
        with self.assertRaisesRegex(codec.ProtocolError, "found byte 2"):
            codec.decode(codec.RESULT, b"\x01\x02", schema=KITCHEN)
        with self.assertRaisesRegex(codec.ProtocolError, "ACK: 1 bytes left over at offset 1"):
            codec.decode(codec.ACK, b"\x01\x00")
        with self.assertRaisesRegex(codec.ProtocolError, "ERROR: payload of 1 bytes ends early"):
            codec.decode(codec.ERROR, b"\x01")
        with self.assertRaisesRegex(codec.ProtocolError, "unknown frame type 0x7f"):
            codec.decode(0x7F, b"")
        with self.assertRaisesRegex(codec.ProtocolError, "1000 entries cannot fit"):
            codec.decode(codec.SNAPSHOT, b"\x01\xe8\x07\x00", schema=KITCHEN)
        with self.assertRaisesRegex(codec.ProtocolError, "has type 9"):
            codec.decode(codec.WELCOME, b"\x01\x00\x00\x00\x00\x00\x01\x01\x01s\x01\x01f\x09")
        with self.assertRaisesRegex(codec.ProtocolError, "has 65 fields"):
            codec.decode(codec.WELCOME, b"\x01\x00\x00\x00\x00\x00\x01\x01\x01s\x41" + b"\x00" * 200)
        with self.assertRaisesRegex(ValueError, "needs its schema"):
            codec.decode(codec.NOTIFY, b"\x01\x01\x00")

    def test_the_frame_reader_checks_the_length_before_buffering(self):
        r = codec.FrameReader(max_frame=100)
        r.feed(struct.pack("<I", 101))
        with self.assertRaisesRegex(codec.ProtocolError, "frame length 101 is over the limit 100"):
            r.frames()
        r = codec.FrameReader()
        r.feed(b"\x00\x00\x00\x00")
        with self.assertRaisesRegex(codec.ProtocolError, "frame of length 0"):
            r.frames()
        r = codec.FrameReader()
        whole = codec.encode_single(codec.ACK, 300) + codec.encode_single(codec.PONG, 7)
        for i in range(len(whole)):  # fed a byte at a time
            r.feed(whole[i:i + 1])
            got = r.frames()
            if got:
                t, b, s, e = got[0]
                self.assertEqual(codec.decode(t, b, s, e).value, 300 if t == codec.ACK else 7)
        self.assertEqual(r.pending(), 0)


if __name__ == "__main__":
    unittest.main()
