// The owner record of a cluster name (src/repl/ownership.h, docs/replication.md,
// "Ownership"): its value, and compare-and-set claims against a three-node NATS
// cluster on loopback (test cases named "cluster: ..." are labelled `cluster`).

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "repl/ownership.h"
#include "support/nats_cluster.h"
#include "support/process.h"

using namespace conv;
using namespace std::chrono_literals;

TEST_CASE("repl: the owner record's value is read back, and a malformed one is refused") {
  auto r = repl::ParseOwnerValue(repl::EncodeOwnerValue("127.0.0.1:3727", 0), 41);
  REQUIRE(r.ok());
  CHECK(r->address == "127.0.0.1:3727");
  CHECK(r->epoch == 41);  // the claim write: its own revision
  CHECK(r->revision == 41);
  r = repl::ParseOwnerValue(repl::EncodeOwnerValue("h:1", 41), 45);
  REQUIRE(r.ok());
  CHECK(r->epoch == 41);  // a refresh repeats the claim's revision
  CHECK(r->revision == 45);
  auto bad = repl::ParseOwnerValue("address h:1\nepoch x1\n", 7);
  CHECK(bad.message() ==
        "owner record revision 7: epoch 'x1' at offset 18 is not a positive number");
  bad = repl::ParseOwnerValue("address h:1\nowner me\n", 7);
  CHECK(bad.message() == "owner record revision 7: unknown line 'owner me' at offset 12");
  bad = repl::ParseOwnerValue("epoch 3\n", 7);
  CHECK(bad.message() == "owner record revision 7: no address line");
  CHECK(repl::OwnerBucket("players") == "CONV_OWNER_players");
}

TEST_CASE(
    "cluster: the owner record is claimed with compare-and-set, a takeover raises the epoch") {
  testing::TempDir dir("conv-owner");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("record");
  auto first = repl::Ownership::Claim(o, "127.0.0.1:1001", nullptr, 100ms);
  REQUIRE_MESSAGE(first.ok(), first.message());
  uint64_t e1 = (*first)->epoch();
  CHECK(e1 > 0);
  auto reader = repl::OwnerReader::Open(o);
  REQUIRE(reader.ok());
  // Refreshes keep the epoch and raise the revision.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((*first)->refreshes() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  REQUIRE((*first)->refreshes() >= 2);
  auto rec = (*reader)->Read();
  REQUIRE(rec.ok());
  REQUIRE(rec->has_value());
  CHECK((*rec)->address == "127.0.0.1:1001");
  CHECK((*rec)->epoch == e1);
  CHECK((*rec)->revision > e1);

  // Another claimant replaces the record: a larger epoch; the first one's next
  // refresh is refused and it stops holding the name.
  auto second = repl::Ownership::Claim(o, "127.0.0.1:1002", nullptr, 100ms);
  REQUIRE_MESSAGE(second.ok(), second.message());
  CHECK((*second)->epoch() > (*rec)->revision);
  deadline = std::chrono::steady_clock::now() + 10s;
  while ((*first)->held() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  CHECK_FALSE((*first)->held());
  CHECK((*second)->held());
  rec = (*reader)->Read();
  REQUIRE(rec.ok());
  REQUIRE(rec->has_value());
  CHECK((*rec)->address == "127.0.0.1:1002");
  CHECK((*rec)->epoch == (*second)->epoch());
}

TEST_CASE("cluster: a reader of a cluster name nobody claimed finds no owner record") {
  testing::TempDir dir("conv-owner");
  testing::NatsCluster nats(dir.path());
  repl::ReplicationOptions o = nats.Options("unclaimed");
  auto reader = repl::OwnerReader::Open(o);
  REQUIRE_MESSAGE(reader.ok(), reader.message());
  auto rec = (*reader)->Read();
  REQUIRE_MESSAGE(rec.ok(), rec.message());
  CHECK_FALSE(rec->has_value());
}
