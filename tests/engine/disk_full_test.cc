// A full disk (SPEC §3): writes are refused with `overloaded` and never acknowledged,
// reads go on, and writes resume without a restart once space is back. The data dir
// sits on a small tmpfs the test mounts itself (root only; skipped otherwise).

#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "engine/durability.h"
#include "engine/schema.h"
#include "support/durable_server.h"
#include "support/op_model.h"
#include "support/process.h"
#include "support/test_server.h"
#include "support/wal_fixtures.h"
#include "util/log.h"
#include "wal/format.h"
#include "wal/replay.h"
#include "wal/writer.h"

// Last: <sys/mount.h> defines BLOCK_SIZE, which the engine's queue headers use as a name.
#include <sys/mount.h>

using namespace conv;
using namespace std::chrono_literals;
using testing::Stat;

namespace {

const std::string kSource = "disk-full-writer";

// A tmpfs mounted for the test's lifetime; unmounted (lazily, so it cannot fail on a
// stray open file) on every path out.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& path, const std::string& options) : path_(path) {
    std::filesystem::create_directory(path);
    if (::mount("tmpfs", path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  bool mounted_ = false;
  std::string error_;
};

// Fills the file system holding `path` until a write fails with ENOSPC; returns the
// bytes written.
uint64_t FillUp(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  std::string chunk(64 << 10, 'f');
  uint64_t total = 0;
  for (size_t size : {size_t{64} << 10, size_t{4} << 10, size_t{512}, size_t{1}}) {
    for (;;) {
      ssize_t n = ::write(fd, chunk.data(), size);
      if (n > 0) {
        total += static_cast<uint64_t>(n);
        continue;
      }
      REQUIRE_MESSAGE(errno == ENOSPC, "filling the tmpfs: ", std::strerror(errno));
      break;
    }
  }
  ::close(fd);
  return total;
}

struct RemoveOnExit {
  std::string path;
  ~RemoveOnExit() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

struct Replies {
  uint64_t acked = 0;
  std::vector<net::Error> errors;
};

// Reads what arrives within `wait` (stopping early once `until_ack` is acknowledged,
// when non-zero).
void Collect(net::Client& c, std::chrono::milliseconds wait, uint64_t until_ack, Replies* r) {
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return;
    c.set_timeout(left);
    auto f = c.ReadFrame();
    if (!f.ok()) return;  // the timeout
    uint64_t seq = 0;
    if (testing::IsType(*f, net::FrameType::kAck) && net::DecodeAck(f->payload, &seq)) {
      r->acked = std::max(r->acked, seq);
      if (until_ack != 0 && r->acked >= until_ack) return;
    } else if (testing::IsType(*f, net::FrameType::kError)) {
      r->errors.push_back(testing::ErrorOf(*f));
    }
  }
}

void Send(net::Client& c, const testing::OpGenerator& gen, uint64_t from, uint64_t to) {
  std::string frames;
  for (uint64_t q = from; q <= to; ++q)
    frames += gen.Frame(0, q);
  REQUIRE(c.Send(frames).ok());
}

testing::StateByEntity Model(const testing::OpGenerator& gen, uint64_t upto) {
  testing::StateModel m(gen.schema());
  for (uint64_t q = 1; q <= upto; ++q)
    m.Apply(kSource, gen.Op(0, q));
  return m.State();
}

}  // namespace

TEST_CASE("disk-full: writes are refused while the disk is full and resume when space returns") {
  testing::TempDir root("conv-diskfull");
  TmpfsMount mnt(root.File("mnt"), "size=4m,mode=0700");
  if (!mnt.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs (", mnt.error(),
            "); the disk-full test needs root or CAP_SYS_ADMIN");
    return;
  }
  const std::string data_dir = root.File("mnt") + "/data";
  const std::string filler = root.File("mnt") + "/filler";
  // ASSERTs only, ~3 KB each, over many entities: the log grows fast.
  testing::OpGenerator gen(engine::PlayerSchema(), 4711, 400, {100, 0}, 3000, "big-");
  testing::DurableServerOptions options;
  options.data_dir = data_dir;
  options.segment_bytes = 256u << 10;
  uint64_t last = 0;  // every op up to this one is acknowledged
  {
    testing::DurableServer server(options);
    // Declared after the server so that it runs first: the graceful stop at the end
    // finds space, so the last window is written rather than given up.
    RemoveOnExit free_space{filler};
    auto w = server.Connect(kSource);
    auto reader = server.Connect();
    Send(*w, gen, 1, 20);
    REQUIRE(testing::WaitForAck(*w, 20));
    last = 20;
    uint64_t filled = FillUp(filler);
    MESSAGE("filler took ", filled, " bytes of the 4 MiB tmpfs");

    // Write until the log cannot take more: the first refused op ends the loop.
    uint64_t seq = last;
    uint64_t refused = 0;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (refused == 0 && std::chrono::steady_clock::now() < deadline) {
      Send(*w, gen, seq + 1, seq + 4);
      seq += 4;
      Replies r;
      Collect(*w, 1s, seq, &r);
      if (r.acked > last) last = r.acked;
      for (const auto& e : r.errors) {
        REQUIRE_MESSAGE(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded), e.message);
        CHECK(e.message.find("disk is full") != std::string::npos);
        if (refused == 0 || e.seq_or_req < refused) refused = e.seq_or_req;
      }
    }
    REQUIRE_MESSAGE(refused != 0, "the log never filled the disk");
    MESSAGE("acknowledged up to op ", last, "; ops from ", refused, " refused");
    CHECK(Stat(*reader, "disk_full") == 1);
    CHECK(Stat(*reader, "disk_full_events") >= 1);
    // Ops accepted before the disk filled are applied, and reads go on.
    auto state = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
    REQUIRE(state.ok());
    CHECK_MESSAGE(*state == Model(gen, refused - 1),
                  testing::DescribeDifference(Model(gen, refused - 1), *state));

    // Still full: the op is refused again (its seq was not consumed), nothing is acked.
    Send(*w, gen, refused, refused);
    {
      Replies r;
      Collect(*w, 300ms, 0, &r);
      CHECK(r.acked < refused);
      if (r.acked > last) last = r.acked;
      REQUIRE(r.errors.size() >= 1);
      for (const auto& e : r.errors) {
        CHECK(e.code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
        CHECK(e.seq_or_req >= refused);
      }
    }
    CHECK(Stat(*reader, "disk_full") == 1);

    // Space is back: what was accepted is acknowledged, without a restart.
    REQUIRE(std::filesystem::remove(filler));
    {
      Replies r;
      Collect(*w, 10s, refused - 1, &r);
      REQUIRE_MESSAGE(r.acked >= refused - 1, "accepted ops were not acknowledged");
      CHECK(r.errors.empty());
      last = refused - 1;
    }
    CHECK(Stat(*reader, "disk_full") == 0);

    // An op that arrives after space returned but before the writer resent the refused
    // one (it was pipelined behind it) must not be taken: that would turn the resend
    // of the refused op into a "duplicate" that is acknowledged and never applied.
    Send(*w, gen, refused + 1, refused + 1);
    {
      Replies r;
      Collect(*w, 300ms, 0, &r);
      CHECK(r.acked == 0);
      REQUIRE(r.errors.size() == 1);
      CHECK(r.errors[0].seq_or_req == refused + 1);
      CHECK(r.errors[0].code == static_cast<uint64_t>(net::ErrorCode::kOverloaded));
    }
    // The writer resends from the refused op on.
    Send(*w, gen, refused, refused + 20);
    {
      Replies r;
      Collect(*w, 10s, refused + 20, &r);
      CHECK(r.acked >= refused + 20);
      CHECK(r.errors.empty());
      last = refused + 20;
    }
    auto resumed = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
    REQUIRE(resumed.ok());
    CHECK_MESSAGE(*resumed == Model(gen, last),
                  testing::DescribeDifference(Model(gen, last), *resumed));
  }

  // Every acknowledged op is in the log.
  testing::DurableServer server(options);
  auto w = server.Connect(kSource);
  CHECK(w->welcome().last_applied_seq == last);
  auto reader = server.Connect();
  auto state = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
  REQUIRE(state.ok());
  CHECK_MESSAGE(*state == Model(gen, last), testing::DescribeDifference(Model(gen, last), *state));
}

namespace {

bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string ReadText(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    out.append(buf, n);
  return out;
}

}  // namespace

TEST_CASE("disk-full: a segment shrinks to what the file system has room for") {
  testing::TempDir root("conv-diskfull");
  TmpfsMount mnt(root.File("mnt"), "size=2m,mode=0700");
  if (!mnt.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs (", mnt.error(),
            "); the disk-full tests need root or CAP_SYS_ADMIN");
    return;
  }
  const std::string dir = root.File("mnt");
  std::mt19937_64 rng(61);
  auto schemas = testing::TestSchemaRecords();
  auto windows = testing::RandomWindows(rng, 1, 5, 40, 100);
  wal::WriterOptions o;
  o.segment_bytes = wal::kSegmentBytes;  // 64 MiB on a 2 MiB file system
  {
    wal::SegmentWriter w(dir, o);
    w.SetSchemaRecords(schemas.bytes, schemas.count);
    for (const auto& win : windows) {
      std::vector<std::string_view> f = {win.records.bytes};
      auto r = w.AppendWindow(win.window, win.ops, win.records.count, f);
      REQUIRE_MESSAGE(r.ok(), r.message);
    }
    REQUIRE(w.Sync().ok());
    CHECK(w.stats().segments == 1);

    // A window larger than the whole file system cannot have a segment, however small.
    auto big = testing::RandomRecords(rng, 36000, 100);
    REQUIRE(big.bytes.size() > (2u << 20));
    std::vector<std::string_view> f = {big.bytes};
    auto r = w.AppendWindow(6, 1, big.count, f);
    CHECK(r.errc == wal::WriteErrc::kNoSpace);
    CHECK(r.message.find("cannot allocate") != std::string::npos);
  }
  testing::RecordingVisitor v;
  wal::RecoveryReport report;
  auto st = wal::Recover(dir, v, false, &report);
  REQUIRE_MESSAGE(st.ok(), st.message());
  CHECK(v.events == testing::ExpectedEvents(windows, schemas, {1}));
}

TEST_CASE("disk-full: a stop while the disk stays full ends and names the windows not written") {
  testing::TempDir root("conv-diskfull");
  TmpfsMount mnt(root.File("mnt"), "size=1m,mode=0700");
  if (!mnt.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs (", mnt.error(),
            "); the disk-full tests need root or CAP_SYS_ADMIN");
    return;
  }
  const std::string dir = root.File("mnt") + "/data";
  std::filesystem::create_directory(dir);
  FillUp(root.File("mnt") + "/filler");
  std::FILE* sink = std::tmpfile();
  REQUIRE(sink != nullptr);
  util::Logger log(util::LogLevel::kInfo, util::LogFormat::kText, sink);
  wal::WriterOptions o;
  o.segment_bytes = 64 << 10;
  std::string fatal;
  engine::Durability d(dir, o, nullptr, &log, [&](const std::string& m) { fatal = m; });
  std::mt19937_64 rng(62);
  for (uint64_t w = 1; w <= 3; ++w) {
    auto recs = testing::RandomRecords(rng, 5);
    engine::WindowBatch b;
    b.window = w;
    b.fragments.push_back(recs.bytes);
    b.records = recs.count;
    d.Submit(std::move(b));
  }
  std::vector<uint64_t> durable;
  std::atomic<bool> done{false};
  std::thread t([&] {
    d.Run([&](uint64_t w) { durable.push_back(w); });
    done = true;
  });
  REQUIRE(WaitFor([&] { return d.disk_full(); }, 5s));
  auto t0 = std::chrono::steady_clock::now();
  d.Stop();
  bool ended = WaitFor([&] { return done.load(); }, 5s);
  if (!ended) std::filesystem::remove(root.File("mnt") + "/filler");  // let it end
  t.join();
  auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(ended);
  CHECK(took < 1s);
  CHECK(durable.empty());
  CHECK(fatal.empty());
  std::string text = ReadText(sink);
  std::fclose(sink);
  MESSAGE(text);
  CHECK(text.find("windows 1 to 3 were not written to the log") != std::string::npos);
  CHECK(text.find("not acknowledged") != std::string::npos);
}

TEST_CASE("disk-full: a graceful stop with the disk full ends and keeps what was acknowledged") {
  testing::TempDir root("conv-diskfull");
  TmpfsMount mnt(root.File("mnt"), "size=4m,mode=0700");
  if (!mnt.mounted()) {
    MESSAGE("skipped: cannot mount a tmpfs (", mnt.error(),
            "); the disk-full tests need root or CAP_SYS_ADMIN");
    return;
  }
  const std::string data_dir = root.File("mnt") + "/data";
  const std::string filler = root.File("mnt") + "/filler";
  testing::OpGenerator gen(engine::PlayerSchema(), 4712, 400, {100, 0}, 3000, "big-");
  testing::DurableServerOptions options;
  options.data_dir = data_dir;
  options.segment_bytes = 256u << 10;
  uint64_t last = 0;
  {
    RemoveOnExit free_space{filler};  // after the server: only if the stop hung
    testing::DurableServer server(options);
    auto w = server.Connect(kSource);
    Send(*w, gen, 1, 10);
    REQUIRE(testing::WaitForAck(*w, 10));
    last = 10;
    FillUp(filler);
    uint64_t seq = last, refused = 0;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (refused == 0 && std::chrono::steady_clock::now() < deadline) {
      Send(*w, gen, seq + 1, seq + 4);
      seq += 4;
      Replies r;
      Collect(*w, 1s, seq, &r);
      if (r.acked > last) last = r.acked;
      for (const auto& e : r.errors) {
        if (refused == 0 || e.seq_or_req < refused) refused = e.seq_or_req;
      }
    }
    REQUIRE_MESSAGE(refused != 0, "the log never filled the disk");
    MESSAGE("acknowledged up to op ", last, "; ops from ", refused, " refused");

    std::atomic<bool> stopped{false};
    auto t0 = std::chrono::steady_clock::now();
    std::thread stopper([&] {
      server.Shutdown();
      stopped = true;
    });
    bool ended = WaitFor([&] { return stopped.load(); }, 10s);
    if (!ended) std::filesystem::remove(filler);  // so that the stop can end
    stopper.join();
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK_MESSAGE(ended, "the graceful stop waited for disk space");
    MESSAGE("the stop took ", std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
            " ms");
    Replies r;
    Collect(*w, 200ms, 0, &r);
    CHECK(r.acked <= last);  // nothing acknowledged that was not durable before
  }
  std::filesystem::remove(filler);
  testing::DurableServer server(options);
  auto w = server.Connect(kSource);
  CHECK(w->welcome().last_applied_seq >= last);
  auto reader = server.Connect();
  auto state = testing::QueryState(*reader, gen.schema(), gen.EntityIds());
  REQUIRE(state.ok());
  uint64_t applied = w->welcome().last_applied_seq;
  CHECK_MESSAGE(*state == Model(gen, applied),
                testing::DescribeDifference(Model(gen, applied), *state));
}
