#pragma once

// Building blocks for write-ahead log tests: windows of random records together with
// what a visitor must see for them, a visitor that records what it sees, and small
// file helpers.

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "wal/records.h"
#include "wal/writer.h"

namespace conv::testing {

// Every visitor call as one line of text, in order.
class RecordingVisitor : public wal::RecordVisitor {
 public:
  void OnClaim(const wal::ClaimRecord& r) override;
  void OnRetract(const wal::RetractRecord& r) override;
  void OnSource(const wal::SourceRecord& r) override;
  void OnSchema(const wal::SchemaRecord& r) override;
  void OnLease(const wal::LeaseRecord& r) override;
  void OnWindow(uint64_t window) override;

  std::vector<std::string> events;
};

// Encoded records and the lines a RecordingVisitor prints for them.
struct EncodedRecords {
  std::string bytes;
  uint64_t count = 0;
  std::vector<std::string> events;
};

// One WINDOW block's content.
struct TestWindow {
  uint64_t window = 0;
  uint64_t ops = 0;
  EncodedRecords records;
};

// `n` random CLAIM (uniform and per-field ts), RETRACT and SOURCE records with values
// of about `value_bytes` bytes.
EncodedRecords RandomRecords(std::mt19937_64& rng, size_t n, size_t value_bytes = 16);
// Two SCHEMA records: "player"-like id 1 and "item" id 2.
EncodedRecords TestSchemaRecords();

// Windows first..first+n-1, each with 1..max_records random records.
std::vector<TestWindow> RandomWindows(std::mt19937_64& rng, uint64_t first, size_t n,
                                      size_t max_records, size_t value_bytes = 16);

// Appends `windows` with one SegmentWriter (schema records at each segment's head),
// each window its own group commit (Sync after each), and closes. Fails the test on
// a write error.
void WriteWindows(const std::string& dir, const std::vector<TestWindow>& windows,
                  const EncodedRecords& schemas, wal::WriterOptions options);

// What Recover must deliver for `windows` (in order), given the first window of each
// segment (the blocks that carry the schema records).
std::vector<std::string> ExpectedEvents(const std::vector<TestWindow>& windows,
                                        const EncodedRecords& schemas,
                                        const std::set<uint64_t>& segment_heads);
// The first windows of the segments in `dir`.
std::set<uint64_t> SegmentHeads(const std::string& dir);

// Whole-file helpers; they fail the test on an I/O error.
std::string ReadAll(const std::string& path);
void WriteAll(const std::string& path, std::string_view data);
// Offsets of the blocks of a segment or checkpoint image (after the file header).
std::vector<uint64_t> BlockOffsets(std::string_view file);

// The first `n` lines of `v`, joined, for failure messages.
std::string Head(const std::vector<std::string>& v, size_t n = 8);

}  // namespace conv::testing
