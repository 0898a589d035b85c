// Frames: the input is one context byte, then a byte stream cut into frames with
// NextFrame, each decoded by the decoder of its type. The context byte gives what
// a client knows from its own requests: bits 0-1 the schema of RESULT, SNAPSHOT and
// NOTIFY records (VectorSchema), bit 2 whether the QUERY asked for claims, bit 3
// whether the SUBSCRIBE asked for previous records.
//
// Properties: NextFrame cuts within the buffer and says how much it took; every
// frame that decodes re-encodes to a frame that decodes to the same message (the
// second encoding equals the first); SNAPSHOT and NOTIFY built from a shared body
// (the server's path) equal the whole-frame encoding.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "check.h"
#include "engine/record.h"
#include "net/messages.h"
#include "util/coding.h"

namespace conv::net {
namespace {

// Decodes `payload`; when it decodes, encodes it, decodes the encoding and encodes
// that again: the two encodings must be equal.
template <typename Msg, typename Decode, typename Encode>
void RoundTrip(uint8_t type, std::string_view payload, Decode decode, Encode encode) {
  Msg m{};
  if (!decode(payload, &m)) return;
  std::string e1;
  encode(e1, m);
  Frame f;
  size_t consumed = 0;
  FUZZ_CHECK(NextFrame(e1, UINT32_MAX, &f, &consumed) == FrameStatus::kFrame, "type %u", type);
  FUZZ_CHECK(consumed == e1.size() && f.type == type, "type %u: %zu of %zu bytes", type, consumed,
             e1.size());
  Msg m2{};
  FUZZ_CHECK(decode(f.payload, &m2), "type %u: its own encoding does not decode", type);
  std::string e2;
  encode(e2, m2);
  FUZZ_CHECK(e1 == e2, "type %u: re-encoding differs", type);
}

// The varint mask of a record written as mask + values, when written in its
// shortest form (the form the server's body encoders write).
bool ShortestMask(const engine::Schema& schema, std::string_view record, engine::RecordView* v) {
  if (!engine::ParseRecord(schema, record, v).ok()) return false;
  return util::VarintLength(v->mask) == record.size() - v->values.size();
}

void CheckSharedBody(const engine::Schema& schema, const Snapshot& m) {
  std::string body;
  for (const auto& e : m.entries) {
    engine::RecordView v;
    if (!ShortestMask(schema, e.record, &v)) return;
    AppendSnapshotEntry(body, e.kind, e.id, v.mask, v.values);
  }
  std::string whole, shared;
  EncodeSnapshot(whole, m);
  EncodeSnapshotHeader(shared, m.sub, m.entries.size(), body.size());
  shared += body;
  FUZZ_CHECK(whole == shared, "SNAPSHOT: the shared-body encoding differs");
}

void CheckSharedBody(const engine::Schema& schema, const Notify& m, bool include_prev) {
  std::string body;
  for (const auto& c : m.changes) {
    engine::RecordView v, prev;
    if (!ShortestMask(schema, c.record, &v)) return;
    if (include_prev && c.had_prev && !ShortestMask(schema, c.prev, &prev)) return;
    AppendNotifyChange(body, c.kind, c.id, c.changed_mask, c.ts, v.mask, v.values, include_prev,
                       c.had_prev, prev.mask, prev.values);
  }
  std::string whole, shared;
  EncodeNotify(whole, m, include_prev);
  EncodeNotifyHeader(shared, m.sub, m.window, m.changes.size(), body.size());
  shared += body;
  FUZZ_CHECK(whole == shared, "NOTIFY: the shared-body encoding differs");
}

struct StatsReply {
  uint64_t req = 0;
  StatList stats;
};

void DecodeOne(const Frame& f, const engine::Schema& schema, bool with_claims, bool include_prev) {
  auto type = static_cast<FrameType>(f.type);
  auto req_frame = [&](FrameType t) {
    RoundTrip<uint64_t>(
        f.type, f.payload, [](std::string_view p, uint64_t* v) { return DecodeReq(p, v); },
        [t](std::string& out, uint64_t v) { EncodeReq(out, t, v); });
  };
  switch (type) {
    case FrameType::kHello:
      RoundTrip<Hello>(f.type, f.payload, DecodeHello, EncodeHello);
      break;
    case FrameType::kWelcome:
      RoundTrip<Welcome>(f.type, f.payload, DecodeWelcome, EncodeWelcome);
      break;
    case FrameType::kError:
      RoundTrip<Error>(f.type, f.payload, DecodeError, EncodeError);
      break;
    case FrameType::kAssert:
    case FrameType::kPatch:
    case FrameType::kRetract: {
      RoundTrip<WriteOp>(
          f.type, f.payload,
          [type](std::string_view p, WriteOp* m) { return DecodeWriteOp(type, p, m); },
          EncodeWriteOp);
      WriteOp op;
      engine::RecordView v;
      if (DecodeWriteOp(type, f.payload, &op)) (void)engine::ParseRecord(schema, op.record, &v);
      break;
    }
    case FrameType::kAck:
      RoundTrip<uint64_t>(f.type, f.payload, DecodeAck, EncodeAck);
      break;
    case FrameType::kCredit:
      RoundTrip<uint64_t>(f.type, f.payload, DecodeCredit, EncodeCredit);
      break;
    case FrameType::kQuery:
      RoundTrip<Query>(f.type, f.payload, DecodeQuery, EncodeQuery);
      break;
    case FrameType::kResult:
      RoundTrip<Result>(
          f.type, f.payload,
          [&](std::string_view p, Result* m) { return DecodeResult(p, schema, with_claims, m); },
          [](std::string& out, const Result& m) { EncodeResult(out, m); });
      break;
    case FrameType::kSubscribe:
      RoundTrip<Subscribe>(f.type, f.payload, DecodeSubscribe, EncodeSubscribe);
      break;
    case FrameType::kSnapshot: {
      auto decode = [&](std::string_view p, Snapshot* m) { return DecodeSnapshot(p, schema, m); };
      RoundTrip<Snapshot>(f.type, f.payload, decode, EncodeSnapshot);
      Snapshot m;
      if (decode(f.payload, &m)) CheckSharedBody(schema, m);
      break;
    }
    case FrameType::kSnapshotEnd:
      RoundTrip<SnapshotEnd>(f.type, f.payload, DecodeSnapshotEnd, EncodeSnapshotEnd);
      break;
    case FrameType::kNotify: {
      auto decode = [&](std::string_view p, Notify* m) {
        return DecodeNotify(p, schema, include_prev, m);
      };
      RoundTrip<Notify>(f.type, f.payload, decode, [&](std::string& out, const Notify& m) {
        EncodeNotify(out, m, include_prev);
      });
      Notify m;
      if (decode(f.payload, &m)) CheckSharedBody(schema, m, include_prev);
      break;
    }
    case FrameType::kStatsReply:
      RoundTrip<StatsReply>(
          f.type, f.payload,
          [](std::string_view p, StatsReply* m) { return DecodeStatsReply(p, &m->req, &m->stats); },
          [](std::string& out, const StatsReply& m) { EncodeStatsReply(out, m.req, m.stats); });
      break;
    case FrameType::kUnsubscribe:
    case FrameType::kSync:
    case FrameType::kSynced:
    case FrameType::kStats:
    case FrameType::kPing:
    case FrameType::kPong:
      req_frame(type);
      break;
  }
  (void)FrameTypeName(f.type);
}

}  // namespace
}  // namespace conv::net

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace conv::net;
  if (size < 1) return 0;
  const uint8_t context = data[0];
  const conv::engine::Schema schema = conv::fuzz::VectorSchema(context & 3);
  std::string_view buf(reinterpret_cast<const char*>(data + 1), size - 1);
  while (true) {
    Frame f;
    size_t consumed = 0;
    FrameStatus st = NextFrame(buf, kDefaultMaxFrame, &f, &consumed);
    if (st != FrameStatus::kFrame) break;
    FUZZ_CHECK(consumed >= kFrameHeader + 1 && consumed <= buf.size(), "consumed %zu of %zu",
               consumed, buf.size());
    FUZZ_CHECK(f.payload.data() == buf.data() + kFrameHeader + 1 &&
                   f.payload.size() == consumed - kFrameHeader - 1,
               "payload outside the frame");
    DecodeOne(f, schema, (context & 4) != 0, (context & 8) != 0);
    buf.remove_prefix(consumed);
  }
  return 0;
}
