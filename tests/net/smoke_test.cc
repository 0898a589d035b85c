#include <doctest/doctest.h>

#include "engine/record.h"
#include "support/test_server.h"

using namespace conv;

TEST_CASE("e2e: an asserted player can be queried back") {
  testing::TestServer ts;
  auto w = ts.Connect("writer-1");
  const engine::Schema* player = w->FindSchema("player");
  REQUIRE(player != nullptr);
  engine::RecordBuilder rb(*player);
  REQUIRE(rb.Set("name", std::string("ann")).ok());
  REQUIRE(rb.Set("health", int64_t{90}).ok());
  std::string rec = rb.Encode();
  std::string frames;
  net::EncodeWriteOp(frames, {net::FrameType::kAssert, 1, 0, player->id, "p-1", rec});
  REQUIRE(w->Send(frames).ok());
  auto f = w->ReadFrame();
  REQUIRE(f.ok());
  CHECK(f->type == static_cast<uint8_t>(net::FrameType::kAck));
  auto r = w->Query(*player, "p-1", true);
  REQUIRE(r.ok());
  CHECK(r->found);
  CHECK(r->record == rec);
  REQUIRE(r->claims.size() == 1);
  CHECK(r->claims[0].source == "writer-1");
}
