// Recovery: the input is a data dir's files back to back. Every segment magic
// ("CONVWAL\n") or checkpoint magic ("CONVCKP\n") starts a file that runs up to the
// next magic; it is named after the window of its header (wal-<window>.log,
// checkpoint-<window>.ckpt; a second file of the same name is dropped). Bytes before
// the first magic are ignored. Block checksums are made to match (FixChecksums):
// damage is still reached through lengths and types, which take the same paths here
// as a checksum mismatch (the wal_block target covers that one). The files go to a
// scratch directory, which wal::Recover then replays, as `serve` does at start-up
// together with ReadLatestSchemas and SchemaSet::Reconcile.
//
// Properties: a recovery that succeeds leaves a data dir that recovers again to the
// same records, with no torn tail left to cut; a recovery refused without salvage is
// either refused with salvage too or succeeds with it (and then is stable as well).

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <string_view>

#include "check.h"
#include "engine/schema.h"
#include "wal/files.h"
#include "wal/format.h"
#include "wal/replay.h"
#include "wal_support.h"

namespace conv::wal {
namespace {

void EmptyDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  FUZZ_CHECK(d != nullptr, "cannot list %s", dir.c_str());
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

// A directory of this process, removed at exit. In memory (/dev/shm) when there is
// one: recovery fsyncs what it cuts, which on a disk would be most of the time spent.
const std::string& ScratchDir() {
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp != nullptr ? tmp : "/tmp";
    std::string tmpl = base + "/conv-fuzz-recovery-XXXXXX";
    FUZZ_CHECK(::mkdtemp(tmpl.data()) != nullptr, "cannot create %s", tmpl.c_str());
    return tmpl;
  }();
  static const bool cleanup = [] {
    std::atexit([] {
      EmptyDir(ScratchDir());
      ::rmdir(ScratchDir().c_str());
    });
    return true;
  }();
  (void)cleanup;
  return dir;
}

void WriteFiles(const std::string& dir, std::string_view in) {
  auto next_magic = [&in](size_t from) {
    return std::min(in.find(kSegmentMagic, from), in.find(kCheckpointMagic, from));
  };
  std::set<std::string> names;
  for (size_t at = next_magic(0); at != std::string_view::npos;) {
    size_t end = next_magic(at + 1);
    std::string_view file = in.substr(at, end == std::string_view::npos ? end : end - at);
    at = end;
    uint64_t window = 0;
    if (file.size() >= kFileHeaderSize) std::memcpy(&window, file.data() + 16, sizeof window);
    bool segment = file.substr(0, kSegmentMagic.size()) == kSegmentMagic;
    std::string name = segment ? SegmentName(window) : CheckpointName(window);
    if (!names.insert(name).second) continue;
    std::string bytes(file);
    fuzz::FixChecksums(bytes);
    FUZZ_CHECK(WriteNewFile(dir + "/" + name, bytes).ok(), "cannot write %s", name.c_str());
  }
}

struct Outcome {
  bool ok = false;
  std::string records;
  RecoveryReport report;
};

Outcome Run(const std::string& dir, bool salvage) {
  Outcome o;
  fuzz::Reencoder visitor;
  util::Status st = Recover(dir, visitor, salvage, &o.report);
  o.ok = st.ok();
  if (!o.ok) FUZZ_CHECK(!st.message().empty(), "a refusal without a reason");
  o.records = std::move(visitor.out);
  return o;
}

void CheckStable(const std::string& dir, const Outcome& first, bool salvage) {
  Outcome again = Run(dir, salvage);
  FUZZ_CHECK(again.ok, "a recovered data dir does not recover again");
  FUZZ_CHECK(again.records == first.records, "the second recovery delivers other records");
  FUZZ_CHECK(again.report.last_window == first.report.last_window, "last window %llu, then %llu",
             (unsigned long long)first.report.last_window,
             (unsigned long long)again.report.last_window);
  FUZZ_CHECK(again.report.torn_file.empty(), "a torn tail left after recovery in %s",
             again.report.torn_file.c_str());
}

}  // namespace
}  // namespace conv::wal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace conv::wal;
  const std::string& dir = ScratchDir();
  EmptyDir(dir);
  WriteFiles(dir, std::string_view(reinterpret_cast<const char*>(data), size));

  // What `serve` does before it replays: the persisted schemas, reconciled with
  // the configured ones.
  auto persisted = ReadLatestSchemas(dir);
  if (persisted.ok()) {
    conv::engine::SchemaSet schemas;
    (void)schemas.Reconcile(*persisted);
  }

  Outcome strict = Run(dir, false);
  if (strict.ok) {
    CheckStable(dir, strict, false);
    return 0;
  }
  Outcome salvaged = Run(dir, true);
  if (salvaged.ok) CheckStable(dir, salvaged, true);
  return 0;
}
