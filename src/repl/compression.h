#pragma once

// The stream's chunks may be compressed (docs/replication.md, "Stream"): a window's
// blocks, or a checkpoint file, are compressed whole as one zstd frame, which is
// then cut into chunks; every chunk says so in its Conv-Encoding header. The three
// NATS servers each receive, store and (the leader) send every byte: a quarter of
// the bytes is a quarter of their work. Internal to src/repl.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "util/status.h"

namespace conv::repl {

inline constexpr const char* kEncodingHeader = "Conv-Encoding";
inline constexpr const char* kZstd = "zstd";

// Compresses one input after another with one zstd context and one output buffer,
// both kept: a window's frame costs no allocation and no clearing of a new buffer
// (the page's scenario at saturation: 1.3 MB per window, the pages of a new buffer
// faulted in and zeroed every time). Used by one thread at a time.
class Compressor {
 public:
  Compressor();
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // `data` as one zstd frame (its size recorded in the frame), valid until the next
  // call; empty when that would not be smaller than `data` (then sent as is, with no
  // Conv-Encoding).
  std::string_view Compress(std::string_view data);

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<char[]> buf_;
  size_t capacity_ = 0;
};

// The same with a compressor of its own (a checkpoint file: one at a time, seconds
// apart), the frame copied out.
std::string Compress(std::string_view data);

// The bytes a chunk sequence of encoding `encoding` (empty: none) stands for;
// `what` names it in errors. An encoding other than zstd, a frame that is not
// whole, or one that would exceed `max_size` bytes, is an error.
util::Result<std::string> Decode(std::string_view encoding, std::string data, std::string_view what,
                                 size_t max_size);

}  // namespace conv::repl
