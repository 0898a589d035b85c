// CRC-32C: the known answers of RFC 3720 (B.4) and of the common check string, on
// both code paths, and the portable path equal to the instruction on random input of
// every length and split (fixed seed, printed; CONV_SEED overrides it).

#include "util/crc32c.h"

#include <doctest/doctest.h>

#include <random>
#include <string>

#include "support/op_model.h"

using namespace conv::util;

namespace {

struct Known {
  const char* name;
  std::string data;
  uint32_t crc;
};

std::vector<Known> KnownAnswers() {
  std::string inc(32, '\0'), dec(32, '\0');
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<char>(i);
    dec[i] = static_cast<char>(31 - i);
  }
  // The iSCSI SCSI Read (10) command PDU of RFC 3720, B.4.
  const uint8_t pdu[48] = {0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                           0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
                           0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
                           0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  return {
      {"32 bytes of zeros", std::string(32, '\0'), 0x8a9136aau},
      {"32 bytes of ones", std::string(32, '\xff'), 0x62a8ab43u},
      {"32 incrementing bytes", inc, 0x46dd794eu},
      {"32 decrementing bytes", dec, 0x113fdb5cu},
      {"an iSCSI read command", std::string(reinterpret_cast<const char*>(pdu), 48), 0xd9963a56u},
      {"the check string 123456789", "123456789", 0xe3069283u},
      {"nothing", "", 0u},
  };
}

}  // namespace

TEST_CASE("crc32c: the known answers of RFC 3720, on both code paths") {
  MESSAGE("the SSE4.2 instruction is ", crc32c::HaveHardware() ? "" : "not ", "used here");
  for (const Known& k : KnownAnswers()) {
    CAPTURE(k.name);
    CHECK(crc32c::Value(k.data) == k.crc);
    CHECK(crc32c::ExtendPortable(0, k.data.data(), k.data.size()) == k.crc);
  }
}

TEST_CASE("crc32c: the portable path equals the instruction on random input, split anywhere") {
  const uint64_t seed = conv::testing::TestSeed("CONV_SEED", 3720);
  MESSAGE("seed ", seed, " (CONV_SEED)");
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 2000; ++round) {
    std::string data(rng() % 300, '\0');
    for (char& c : data)
      c = static_cast<char>(rng());
    size_t split = data.empty() ? 0 : rng() % (data.size() + 1);
    CAPTURE(round);
    uint32_t whole = crc32c::Value(data);
    CHECK(crc32c::ExtendPortable(0, data.data(), data.size()) == whole);
    // Extending in two pieces gives the CRC of the whole, on either path.
    uint32_t head = crc32c::Value(data.data(), split);
    CHECK(crc32c::Extend(head, data.data() + split, data.size() - split) == whole);
    uint32_t head_p = crc32c::ExtendPortable(0, data.data(), split);
    CHECK(crc32c::ExtendPortable(head_p, data.data() + split, data.size() - split) == whole);
    // Masking round-trips and changes the value.
    CHECK(crc32c::Unmask(crc32c::Mask(whole)) == whole);
  }
}
