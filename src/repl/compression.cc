#include "repl/compression.h"

#include <fmt/format.h>
#include <zstd.h>

#include <memory>

namespace conv::repl {

namespace {

// zstd's default level: a window's blocks of the page's write scenario shrink to
// about a fifth (level 1: to a third, in 18% less time; the three NATS servers'
// work on the bytes saved is worth more, docs/performance.md, Replication).
constexpr int kLevel = 3;

// The level, and a checksum of the content in every frame: a damaged chunk is
// named as such before the blocks' own CRCs would see it.
ZSTD_CCtx* NewContext() {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  if (c == nullptr) return nullptr;
  if (ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, kLevel)) ||
      ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1))) {
    ZSTD_freeCCtx(c);
    return nullptr;
  }
  return c;
}

// A buffer more than eight times the frame bound asked for, and larger than this,
// is given back (after a rare large window).
constexpr size_t kKeepCapacity = size_t{16} << 20;

}  // namespace

struct Compressor::Context {
  ZSTD_CCtx* c = NewContext();
  ~Context() { ZSTD_freeCCtx(c); }
};

Compressor::Compressor() : ctx_(std::make_unique<Context>()) {}
Compressor::~Compressor() = default;

std::string_view Compressor::Compress(std::string_view data) {
  if (ctx_->c == nullptr || data.empty()) return {};
  const size_t bound = ZSTD_compressBound(data.size());
  if (bound > capacity_ || (capacity_ > kKeepCapacity && capacity_ / 8 > bound)) {
    buf_.reset();  // the old buffer goes before the new one comes
    buf_ = std::make_unique_for_overwrite<char[]>(bound);
    capacity_ = bound;
  }
  size_t n = ZSTD_compress2(ctx_->c, buf_.get(), capacity_, data.data(), data.size());
  if (ZSTD_isError(n) || n >= data.size()) return {};
  return {buf_.get(), n};
}

std::string Compress(std::string_view data) {
  Compressor c;
  return std::string(c.Compress(data));
}

util::Result<std::string> Decode(std::string_view encoding, std::string data, std::string_view what,
                                 size_t max_size) {
  if (encoding.empty()) return data;
  if (encoding != kZstd) {
    return util::Status::Error(fmt::format("{}: unknown {} '{}' (this server reads zstd)", what,
                                           kEncodingHeader, encoding));
  }
  unsigned long long size = ZSTD_getFrameContentSize(data.data(), data.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) {
    return util::Status::Error(
        fmt::format("{}: its {} bytes are not a zstd frame with its size", what, data.size()));
  }
  if (size > max_size) {
    return util::Status::Error(fmt::format("{}: decompresses to {} bytes, more than the {} allowed",
                                           what, size, max_size));
  }
  std::string out(static_cast<size_t>(size), '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n) || n != out.size()) {
    return util::Status::Error(fmt::format(
        "{}: the zstd frame of {} bytes is damaged: {}", what, data.size(),
        ZSTD_isError(n) ? ZSTD_getErrorName(n) : fmt::format("{} bytes of {}", n, out.size())));
  }
  return out;
}

}  // namespace conv::repl
