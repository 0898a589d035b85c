#include "wal/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace conv::wal {

std::string SegmentName(uint64_t first_window) {
  return fmt::format("wal-{:016x}.log", first_window);
}

std::string CheckpointName(uint64_t window) {
  return fmt::format("checkpoint-{:016x}.ckpt", window);
}

namespace {

bool ParseName(const std::string& name, std::string_view prefix, std::string_view suffix,
               uint64_t* window) {
  if (name.size() != prefix.size() + 16 + suffix.size()) return false;
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < prefix.size() + 16; ++i) {
    char c = name[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v * 16 + static_cast<uint64_t>(d);
  }
  *window = v;
  return true;
}

SyncObserver sync_observer = nullptr;
void* sync_observer_arg = nullptr;

void NoteSynced(const std::string& path) {
  if (sync_observer != nullptr) sync_observer(path, sync_observer_arg);
}

}  // namespace

void SetSyncObserver(SyncObserver observer, void* arg) {
  sync_observer = observer;
  sync_observer_arg = arg;
}

util::Result<DirListing> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return util::Status::Error(fmt::format("cannot list '{}': {}", dir, std::strerror(errno)));
  }
  DirListing out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    uint64_t w;
    if (ParseName(name, "wal-", ".log", &w)) out.segments.push_back({w, dir + "/" + name});
    if (ParseName(name, "checkpoint-", ".ckpt", &w))
      out.checkpoints.push_back({w, dir + "/" + name});
    if (ParseName(name, "checkpoint-", ".ckpt.tmp", &w))
      out.stale_checkpoints.push_back(dir + "/" + name);
  }
  ::closedir(d);
  auto by_window = [](const NamedFile& a, const NamedFile& b) { return a.window < b.window; };
  std::sort(out.segments.begin(), out.segments.end(), by_window);
  std::sort(out.checkpoints.begin(), out.checkpoints.end(), by_window);
  return out;
}

util::Result<std::string> ReadWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return util::Status::Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::string data;
  data.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      return util::Status::Error(fmt::format("cannot read '{}' at offset {}: {}", path, got,
                                             n == 0 ? "unexpected end" : std::strerror(err)));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return data;
}

util::Status WriteNewFile(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return util::Status::Error(fmt::format("cannot create '{}': {}", path, std::strerror(errno)));
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return util::Status::Error(fmt::format("cannot write '{}': {}", path, std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return util::Status::Error(fmt::format("cannot fsync '{}': {}", path, std::strerror(err)));
  }
  ::close(fd);
  NoteSynced(path);
  return util::Status::Ok();
}

util::Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return util::Status::Error(fmt::format("cannot open dir '{}': {}", dir, std::strerror(errno)));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return util::Status::Error(fmt::format("cannot fsync dir '{}': {}", dir, std::strerror(err)));
  }
  NoteSynced(dir);
  return util::Status::Ok();
}

util::Status TruncateFile(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return util::Status::Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  }
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int err = errno;
    ::close(fd);
    return util::Status::Error(
        fmt::format("cannot cut '{}' at offset {}: {}", path, size, std::strerror(err)));
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    return util::Status::Error(fmt::format("cannot fsync '{}' after cutting it at offset {}: {}",
                                           path, size, std::strerror(err)));
  }
  ::close(fd);
  NoteSynced(path);
  return util::Status::Ok();
}

}  // namespace conv::wal
