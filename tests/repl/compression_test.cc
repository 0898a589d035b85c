// The stream's chunk encoding (repl/compression.h): what a reader accepts and the
// error that names what it refuses.

#include "repl/compression.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>
#include <string>

using namespace conv;

namespace {

std::string Repetitive(size_t n) {
  std::string s;
  while (s.size() < n)
    s += fmt::format("player/{} score {} ", s.size() % 97, s.size() % 13);
  s.resize(n);
  return s;
}

}  // namespace

TEST_CASE("compression: a window compresses and decodes to the same bytes") {
  const std::string data = Repetitive(100'000);
  std::string z = repl::Compress(data);
  REQUIRE_FALSE(z.empty());
  CHECK(z.size() < data.size() / 5);
  auto back = repl::Decode(repl::kZstd, z, "window 7", data.size());
  REQUIRE_MESSAGE(back.ok(), back.message());
  CHECK(*back == data);
  // No encoding: the bytes as they are (a stream written before compression).
  auto raw = repl::Decode("", data, "window 7", 0);
  REQUIRE(raw.ok());
  CHECK(*raw == data);
}

TEST_CASE("compression: bytes that would not shrink are sent as they are") {
  std::mt19937_64 rng(20261201);  // fixed seed
  std::string noise(4096, '\0');
  for (char& c : noise)
    c = static_cast<char>(rng());
  CHECK(repl::Compress(noise).empty());
  CHECK(repl::Compress("").empty());
}

TEST_CASE("compression: a reader refuses an unknown encoding, a damaged frame, too many bytes") {
  const std::string data = Repetitive(50'000);
  const std::string z = repl::Compress(data);
  REQUIRE_FALSE(z.empty());

  auto unknown = repl::Decode("lz4", z, "window 9", data.size());
  CHECK(unknown.message() == "window 9: unknown Conv-Encoding 'lz4' (this server reads zstd)");

  auto not_frame = repl::Decode(repl::kZstd, "not a frame at all", "window 9", data.size());
  CHECK(not_frame.message() == "window 9: its 18 bytes are not a zstd frame with its size");

  auto too_big = repl::Decode(repl::kZstd, z, "checkpoint 3", data.size() - 1);
  CHECK(too_big.message() == fmt::format("checkpoint 3: decompresses to {} bytes, more than the "
                                         "{} allowed",
                                         data.size(), data.size() - 1));

  // Cut short (a chunk lost from the middle would do the same), and one byte flipped
  // in the compressed body.
  auto cut = repl::Decode(repl::kZstd, z.substr(0, z.size() / 2), "window 9", data.size());
  CHECK(cut.message().rfind(
            fmt::format("window 9: the zstd frame of {} bytes is damaged: ", z.size() / 2), 0) ==
        0);
  std::string flipped = z;
  flipped[flipped.size() / 2] ^= 0x5a;
  auto bad = repl::Decode(repl::kZstd, flipped, "window 9", data.size());
  CHECK(bad.message().rfind(
            fmt::format("window 9: the zstd frame of {} bytes is damaged: ", z.size()), 0) == 0);
}

TEST_CASE("compression: one compressor, inputs of several sizes in turn, each frame whole") {
  repl::Compressor c;
  std::mt19937_64 rng(20261202);  // fixed seed
  std::string noise(8192, '\0');
  for (char& ch : noise)
    ch = static_cast<char>(rng());
  // Growing, shrinking, one that does not shrink, then small again: each frame
  // decodes to its own input, whatever the buffer held before.
  for (size_t n : {1'000u, 200'000u, 3'000u, 0u, 8'192u, 50'000u}) {
    const std::string data = n == 8'192 ? noise : Repetitive(n);
    std::string_view z = c.Compress(data);
    if (n == 0 || n == 8'192) {
      CHECK(z.empty());
      continue;
    }
    REQUIRE_FALSE(z.empty());
    CHECK(z.size() < data.size());
    auto back = repl::Decode(repl::kZstd, std::string(z), fmt::format("input of {}", n), n);
    REQUIRE_MESSAGE(back.ok(), back.message());
    CHECK(*back == data);
  }
}
