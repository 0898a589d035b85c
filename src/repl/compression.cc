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

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

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

}  // namespace

std::string Compress(std::string_view data) {
  // One context per thread (the WAL thread's windows, the checkpoint thread's files).
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(NewContext());
  if (ctx == nullptr || data.empty()) return {};
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress2(ctx.get(), out.data(), out.size(), data.data(), data.size());
  if (ZSTD_isError(n) || n >= data.size()) return {};
  out.resize(n);
  return out;
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
