#pragma once

// Wire protocol v1 constants. docs/protocol.md is the normative description.

#include <cstdint>
#include <string>
#include <string_view>

namespace conv::net {

constexpr uint64_t kProtocolVersion = 1;
constexpr uint32_t kDefaultMaxFrame = 1 << 20;
constexpr uint16_t kDefaultPort = 3727;
// u32 length, then u8 type: the smallest possible frame.
constexpr size_t kFrameHeader = 4;

enum class FrameType : uint8_t {
  kHello = 0x01,
  kWelcome = 0x02,
  kError = 0x03,
  kAssert = 0x10,
  kPatch = 0x11,
  kRetract = 0x12,
  kAck = 0x13,
  kCredit = 0x14,
  kQuery = 0x20,
  kResult = 0x21,
  kSubscribe = 0x30,
  kUnsubscribe = 0x31,
  kSnapshot = 0x32,
  kSnapshotEnd = 0x33,
  kNotify = 0x34,
  kSync = 0x40,
  kSynced = 0x41,
  kStats = 0x42,
  kStatsReply = 0x43,
  kPing = 0x44,
  kPong = 0x45,
};

enum class ErrorCode : uint64_t {
  kBadFrame = 1,
  kFrameTooLarge = 2,
  kUnsupportedVersion = 3,
  kAuthFailed = 4,
  kNotASource = 5,
  kUnknownSchema = 6,
  kBadValue = 7,
  kBadId = 8,
  kUnknownSubscription = 9,
  kOverloaded = 10,
  kShuttingDown = 11,
  kSourceTakenOver = 12,
  kHandshakeRequired = 13,
  kNotOwner = 14,
};

std::string_view FrameTypeName(uint8_t type);

// ERROR `not_owner` (docs/protocol.md): its message, and the owner's HOST:PORT
// read back from one ("" when the message names none).
std::string NotOwnerMessage(std::string_view owner);
// ERROR `not_owner` from a deposed owner (fenced: another owner took over).
std::string DeposedMessage(std::string_view owner);
std::string OwnerInNotOwnerMessage(std::string_view message);
std::string_view ErrorCodeName(uint64_t code);

}  // namespace conv::net
