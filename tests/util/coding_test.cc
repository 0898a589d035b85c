#include "util/coding.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

using conv::util::Reader;

namespace {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

std::string Bytes(std::initializer_list<uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::string VarintOf(uint64_t v) {
  std::string s;
  conv::util::PutVarint(s, v);
  return s;
}

// Edge values of every varint length: 2^k - 1, 2^k and 2^k + 1 for every k, plus the
// ends of the range.
std::vector<uint64_t> EdgeValues() {
  std::vector<uint64_t> v = {0, 1, 127, 128, 255, 256, 300, 16383, 16384, kU64Max, kU64Max - 1};
  for (int k = 1; k < 64; ++k) {
    uint64_t p = uint64_t{1} << k;
    v.push_back(p - 1);
    v.push_back(p);
    v.push_back(p + 1);
  }
  return v;
}

// A heap buffer of exactly the input's size, so AddressSanitizer reports any read past
// its end.
std::vector<uint8_t> Exact(std::string_view s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

}  // namespace

TEST_CASE("coding: varints have the LEB128 encodings of the spec") {
  CHECK(VarintOf(0) == Bytes({0x00}));
  CHECK(VarintOf(1) == Bytes({0x01}));
  CHECK(VarintOf(127) == Bytes({0x7f}));
  CHECK(VarintOf(128) == Bytes({0x80, 0x01}));
  CHECK(VarintOf(300) == Bytes({0xac, 0x02}));
  CHECK(VarintOf(16384) == Bytes({0x80, 0x80, 0x01}));
  CHECK(VarintOf(uint64_t{1} << 63) ==
        Bytes({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}));
  CHECK(VarintOf(kU64Max) == Bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
}

TEST_CASE("coding: every edge value round-trips through a varint of the predicted length") {
  for (uint64_t v : EdgeValues()) {
    CAPTURE(v);
    std::string s = VarintOf(v);
    CHECK(s.size() == conv::util::VarintLength(v));
    CHECK(s.size() <= conv::util::kMaxVarintBytes);

    uint8_t raw[conv::util::kMaxVarintBytes];
    size_t n = conv::util::EncodeVarint(raw, v);
    CHECK(std::string(reinterpret_cast<const char*>(raw), n) == s);

    auto buf = Exact(s);
    Reader r(buf.data(), buf.size());
    uint64_t got = 0;
    REQUIRE(r.Varint(&got));
    CHECK(got == v);
    CHECK(r.done());
    CHECK(r.ok());
  }
  CHECK(conv::util::VarintLength(0) == 1);
  CHECK(conv::util::VarintLength(127) == 1);
  CHECK(conv::util::VarintLength(128) == 2);
  CHECK(conv::util::VarintLength(uint64_t{1} << 63) == 10);
  CHECK(conv::util::VarintLength(kU64Max) == 10);
}

TEST_CASE("coding: zigzag maps small magnitudes to small varints and round-trips the i64 range") {
  CHECK(conv::util::ZigzagEncode(0) == 0);
  CHECK(conv::util::ZigzagEncode(-1) == 1);
  CHECK(conv::util::ZigzagEncode(1) == 2);
  CHECK(conv::util::ZigzagEncode(-2) == 3);
  CHECK(conv::util::ZigzagEncode(-64) == 127);
  CHECK(conv::util::ZigzagEncode(64) == 128);
  CHECK(conv::util::ZigzagEncode(kI64Max) == kU64Max - 1);
  CHECK(conv::util::ZigzagEncode(kI64Min) == kU64Max);
  CHECK(conv::util::ZigzagDecode(kU64Max) == kI64Min);
  CHECK(conv::util::ZigzagDecode(kU64Max - 1) == kI64Max);

  std::vector<int64_t> values = {0,   1,       -1,      63,          -64,        64,
                                 -65, kI64Max, kI64Min, kI64Max - 1, kI64Min + 1};
  for (int k = 0; k < 63; ++k) {
    int64_t p = int64_t{1} << k;
    values.insert(values.end(), {p, -p, p - 1, -p + 1, -p - 1});
  }
  for (int64_t v : values) {
    CAPTURE(v);
    CHECK(conv::util::ZigzagDecode(conv::util::ZigzagEncode(v)) == v);
    std::string s;
    conv::util::PutZigzag(s, v);
    auto buf = Exact(s);
    Reader r(buf.data(), buf.size());
    int64_t got = 0;
    REQUIRE(r.Zigzag(&got));
    CHECK(got == v);
    CHECK(r.done());
  }
}

TEST_CASE("coding: fixed-width integers and doubles are little-endian and bit-exact") {
  std::string s;
  conv::util::PutFixed32(s, 0x01020304u);
  conv::util::PutFixed64(s, 0x0102030405060708ull);
  CHECK(s == Bytes({0x04, 0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}));
  CHECK(conv::util::DecodeFixed32(reinterpret_cast<const uint8_t*>(s.data())) == 0x01020304u);
  uint8_t raw[4];
  conv::util::EncodeFixed32(raw, 0xdeadbeefu);
  CHECK(std::string(reinterpret_cast<const char*>(raw), 4) == Bytes({0xef, 0xbe, 0xad, 0xde}));

  for (uint32_t v : {0u, 1u, 0x80u, 0xffffffffu}) {
    std::string e;
    conv::util::PutFixed32(e, v);
    auto buf = Exact(e);
    Reader r(buf.data(), buf.size());
    uint32_t got = 0;
    REQUIRE(r.Fixed32(&got));
    CHECK(got == v);
    CHECK(r.done());
  }
  for (uint64_t v : {uint64_t{0}, uint64_t{1} << 63, kU64Max}) {
    std::string e;
    conv::util::PutFixed64(e, v);
    auto buf = Exact(e);
    Reader r(buf.data(), buf.size());
    uint64_t got = 0;
    REQUIRE(r.Fixed64(&got));
    CHECK(got == v);
    CHECK(r.done());
  }

  std::string one;
  conv::util::PutDouble(one, 1.0);
  CHECK(one == Bytes({0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));

  const double doubles[] = {0.0,
                            -0.0,
                            1.5,
                            -2.25,
                            std::numeric_limits<double>::max(),
                            std::numeric_limits<double>::lowest(),
                            std::numeric_limits<double>::min(),
                            std::numeric_limits<double>::denorm_min(),
                            std::numeric_limits<double>::infinity(),
                            -std::numeric_limits<double>::infinity(),
                            std::numeric_limits<double>::quiet_NaN()};
  for (double v : doubles) {
    CAPTURE(v);
    std::string e;
    conv::util::PutDouble(e, v);
    REQUIRE(e.size() == 8);
    auto buf = Exact(e);
    Reader r(buf.data(), buf.size());
    double got = 0;
    REQUIRE(r.Double(&got));
    uint64_t want_bits, got_bits;
    std::memcpy(&want_bits, &v, 8);
    std::memcpy(&got_bits, &got, 8);
    CHECK(got_bits == want_bits);
    CHECK(r.done());
  }
}

TEST_CASE("coding: strings round-trip with their varint length, including empty and binary") {
  const std::string values[] = {"",
                                "a",
                                std::string("\0\x01\xff", 3),
                                std::string(127, 'x'),
                                std::string(128, 'y'),
                                std::string(20000, 'z')};
  std::string all;
  for (const auto& v : values)
    conv::util::PutStr(all, v);
  auto buf = Exact(all);
  Reader r(buf.data(), buf.size());
  for (const auto& v : values) {
    std::string_view got;
    REQUIRE(r.Str(&got));
    CHECK(got == v);
    // The view points into the input.
    if (!got.empty()) {
      CHECK(reinterpret_cast<const uint8_t*>(got.data()) >= buf.data());
      CHECK(reinterpret_cast<const uint8_t*>(got.data()) + got.size() <= buf.data() + buf.size());
    }
  }
  CHECK(r.done());
  CHECK(r.ok());

  std::string len128;
  conv::util::PutStr(len128, std::string(128, 'q'));
  CHECK(len128.substr(0, 2) == Bytes({0x80, 0x01}));
}

TEST_CASE("coding: an 11-byte varint is rejected") {
  std::string s(10, '\x80');
  s.push_back('\x00');
  auto buf = Exact(s);
  Reader r(buf.data(), buf.size());
  uint64_t v = 0;
  CHECK_FALSE(r.Varint(&v));
  CHECK_FALSE(r.ok());

  // The same with every continuation byte set to all ones.
  std::string ones(10, '\xff');
  ones.push_back('\x01');
  auto buf2 = Exact(ones);
  Reader r2(buf2.data(), buf2.size());
  CHECK_FALSE(r2.Varint(&v));
  CHECK_FALSE(r2.ok());
}

TEST_CASE("coding: a 10-byte varint whose last byte carries more than bit 63 is rejected") {
  for (int last = 0; last < 256; ++last) {
    CAPTURE(last);
    std::string s(9, '\xff');
    s.push_back(static_cast<char>(last));
    auto buf = Exact(s);
    Reader r(buf.data(), buf.size());
    uint64_t v = 0;
    bool ok = r.Varint(&v);
    if (last <= 1) {
      CHECK(ok);
      CHECK(v == (last == 1 ? kU64Max : kU64Max >> 1));
      CHECK(r.done());
    } else {
      CHECK_FALSE(ok);
      CHECK_FALSE(r.ok());
    }
  }
  // 2^63 exactly, with nine empty continuation bytes.
  std::string s(9, '\x80');
  s.push_back('\x01');
  Reader r(s);
  uint64_t v = 0;
  REQUIRE(r.Varint(&v));
  CHECK(v == uint64_t{1} << 63);
}

TEST_CASE("coding: a varint cut short at any byte is rejected") {
  for (uint64_t value : {uint64_t{128}, uint64_t{1} << 35, kU64Max}) {
    std::string full = VarintOf(value);
    for (size_t n = 0; n < full.size(); ++n) {
      CAPTURE(value);
      CAPTURE(n);
      auto buf = Exact(std::string_view(full).substr(0, n));
      Reader r(buf.data(), buf.size());
      uint64_t v = 0;
      CHECK_FALSE(r.Varint(&v));
      CHECK_FALSE(r.ok());
      CHECK(r.remaining() == 0);
    }
  }
}

TEST_CASE("coding: a failed Reader stays failed and reads nothing more") {
  // A str whose length runs past the end, followed by bytes a later getter could read
  // if the failure were forgotten.
  std::string s = VarintOf(100);
  s += "abcdefghijklmnop";
  auto buf = Exact(s);
  Reader r(buf.data(), buf.size());
  std::string_view sv;
  CHECK_FALSE(r.Str(&sv));
  CHECK_FALSE(r.ok());
  CHECK(r.remaining() == 0);
  CHECK(r.done());
  CHECK(r.rest().empty());

  uint8_t u8 = 0;
  uint32_t u32 = 0;
  uint64_t u64 = 0;
  int64_t i64 = 0;
  double d = 0;
  CHECK_FALSE(r.U8(&u8));
  CHECK_FALSE(r.Fixed32(&u32));
  CHECK_FALSE(r.Fixed64(&u64));
  CHECK_FALSE(r.Double(&d));
  CHECK_FALSE(r.Varint(&u64));
  CHECK_FALSE(r.Zigzag(&i64));
  CHECK_FALSE(r.Str(&sv));
  CHECK_FALSE(r.Bytes(1, &sv));
  CHECK_FALSE(r.Skip(1));
  CHECK_FALSE(r.ok());
  // Not even a zero-length read revives it.
  (void)r.Bytes(0, &sv);
  (void)r.Skip(0);
  CHECK_FALSE(r.ok());
}

TEST_CASE("coding: fixed-width reads and slices never run past the end") {
  for (size_t size = 0; size < 9; ++size) {
    CAPTURE(size);
    auto buf = Exact(std::string(size, '\x5a'));
    {
      Reader r(buf.data(), buf.size());
      uint32_t v;
      CHECK(r.Fixed32(&v) == (size >= 4));
    }
    {
      Reader r(buf.data(), buf.size());
      uint64_t v;
      CHECK(r.Fixed64(&v) == (size >= 8));
    }
    {
      Reader r(buf.data(), buf.size());
      double v;
      CHECK(r.Double(&v) == (size >= 8));
    }
    {
      Reader r(buf.data(), buf.size());
      uint8_t v;
      CHECK(r.U8(&v) == (size >= 1));
    }
    for (size_t n = 0; n <= size + 1; ++n) {
      Reader r(buf.data(), buf.size());
      std::string_view v;
      CHECK(r.Bytes(n, &v) == (n <= size));
      Reader r2(buf.data(), buf.size());
      CHECK(r2.Skip(n) == (n <= size));
      if (n <= size) {
        CHECK(r2.offset() == n);
        CHECK(r2.remaining() == size - n);
      }
    }
  }
}

TEST_CASE("coding: a str whose declared length exceeds the input is rejected, even near 2^64") {
  for (uint64_t declared : {uint64_t{4}, uint64_t{1} << 32, kU64Max - 2, kU64Max}) {
    CAPTURE(declared);
    std::string s = VarintOf(declared);
    s += "abc";
    auto buf = Exact(s);
    Reader r(buf.data(), buf.size());
    std::string_view v;
    CHECK_FALSE(r.Str(&v));
    CHECK_FALSE(r.ok());
  }
  Reader r(std::string_view("abc"));
  std::string_view v;
  CHECK_FALSE(r.Bytes(std::numeric_limits<size_t>::max(), &v));
  Reader r2(std::string_view("abc"));
  CHECK_FALSE(r2.Skip(std::numeric_limits<size_t>::max()));
}

TEST_CASE("coding: offset, remaining, rest and pos track the read position") {
  std::string s = VarintOf(300) + "xyz";
  auto buf = Exact(s);
  Reader r(buf.data(), buf.size());
  CHECK(r.offset() == 0);
  CHECK(r.remaining() == 5);
  uint64_t v;
  REQUIRE(r.Varint(&v));
  CHECK(r.offset() == 2);
  CHECK(r.remaining() == 3);
  CHECK(r.rest() == "xyz");
  CHECK(r.pos() == buf.data() + 2);
  CHECK_FALSE(r.done());
  REQUIRE(r.Skip(3));
  CHECK(r.done());
  CHECK(r.ok());
}

TEST_CASE("coding: random sequences of values round-trip and every prefix fails cleanly") {
  const uint32_t seed = 20240611;
  MESSAGE("seed = ", seed);
  std::mt19937_64 rng(seed);
  enum Kind { kU8, kFixed32, kFixed64, kDouble, kVarint, kZigzag, kStr, kNumKinds };
  struct Item {
    Kind kind;
    uint64_t u;
    std::string s;
  };
  for (int round = 0; round < 200; ++round) {
    CAPTURE(round);
    std::vector<Item> items;
    std::string enc;
    int count = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < count; ++i) {
      Item it{static_cast<Kind>(rng() % kNumKinds), rng() >> (rng() % 64), {}};
      switch (it.kind) {
        case kU8:
          conv::util::PutU8(enc, static_cast<uint8_t>(it.u));
          break;
        case kFixed32:
          conv::util::PutFixed32(enc, static_cast<uint32_t>(it.u));
          break;
        case kFixed64:
          conv::util::PutFixed64(enc, it.u);
          break;
        case kDouble: {
          double d;
          std::memcpy(&d, &it.u, 8);
          conv::util::PutDouble(enc, d);
          break;
        }
        case kVarint:
          conv::util::PutVarint(enc, it.u);
          break;
        case kZigzag:
          conv::util::PutZigzag(enc, static_cast<int64_t>(it.u));
          break;
        case kStr:
          it.s.resize(rng() % 200);
          for (char& c : it.s)
            c = static_cast<char>(rng());
          conv::util::PutStr(enc, it.s);
          break;
        case kNumKinds:
          break;
      }
      items.push_back(std::move(it));
    }
    // Reads `items` from the first `n` bytes; returns how many were read whole.
    auto read_prefix = [&](size_t n, bool* all_ok) {
      auto buf = Exact(std::string_view(enc).substr(0, n));
      Reader r(buf.data(), buf.size());
      size_t read = 0;
      *all_ok = true;
      for (const Item& it : items) {
        bool ok = false, same = false;
        switch (it.kind) {
          case kU8: {
            uint8_t v = 0;
            ok = r.U8(&v);
            same = v == static_cast<uint8_t>(it.u);
            break;
          }
          case kFixed32: {
            uint32_t v = 0;
            ok = r.Fixed32(&v);
            same = v == static_cast<uint32_t>(it.u);
            break;
          }
          case kFixed64: {
            uint64_t v = 0;
            ok = r.Fixed64(&v);
            same = v == it.u;
            break;
          }
          case kDouble: {
            double d = 0;
            ok = r.Double(&d);
            uint64_t bits;
            std::memcpy(&bits, &d, 8);
            same = bits == it.u;
            break;
          }
          case kVarint: {
            uint64_t v = 0;
            ok = r.Varint(&v);
            same = v == it.u;
            break;
          }
          case kZigzag: {
            int64_t v = 0;
            ok = r.Zigzag(&v);
            same = v == static_cast<int64_t>(it.u);
            break;
          }
          case kStr: {
            std::string_view v;
            ok = r.Str(&v);
            same = v == it.s;
            break;
          }
          case kNumKinds:
            break;
        }
        if (!ok) {
          *all_ok = false;
          CHECK_FALSE(r.ok());
          break;
        }
        CHECK(same);
        CHECK(r.offset() <= n);
        ++read;
      }
      return read;
    };
    bool all_ok = false;
    CHECK(read_prefix(enc.size(), &all_ok) == items.size());
    CHECK(all_ok);
    for (size_t n = 0; n < enc.size(); ++n) {
      CAPTURE(n);
      read_prefix(n, &all_ok);
      CHECK_FALSE(all_ok);
    }
  }
}
