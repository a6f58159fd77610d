// The router against a fake upstream (which records what it was asked to produce and delivers
// on demand) and a scripted heat tracker, so that every decision is visible and deterministic.
#include "proxy/salting/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"

namespace saltproxy {
namespace {

using ::testing::ElementsAre;

struct Produced {
  Record record;
  int32_t partition;
  DeliveryCallback done;
  int64_t offset = -1;
};

class FakeUpstream : public Upstream {
 public:
  absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) override {
    if (refuse) return absl::ResourceExhaustedError("the upstream queue is full");
    // Widens the window between the router's choice and the queue, by a varying amount, for
    // the threaded tests.
    if (produce_delay > absl::ZeroDuration()) {
      thread_local std::minstd_rand random(
          static_cast<uint32_t>(std::hash<std::thread::id>()(std::this_thread::get_id())));
      absl::SleepFor(produce_delay * (random() % 4));
    }
    std::lock_guard<std::mutex> lock(mu);
    produced.push_back(Produced{std::move(record), partition, std::move(done)});
    return absl::OkStatus();
  }
  std::optional<int32_t> CachedPartitions(const std::string& topic) const override {
    auto it = partitions.find(topic);
    if (it == partitions.end()) return std::nullopt;
    return it->second;
  }
  void LookupTopic(const std::string& topic,
                   absl::AnyInvocable<void(absl::StatusOr<int32_t>)> done) override {
    auto p = CachedPartitions(topic);
    if (p) {
      done(*p);
    } else {
      done(absl::NotFoundError(topic));
    }
  }
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string& topic, int32_t n,
                           const std::map<std::string, std::string>&) override {
    created.push_back(topic);
    partitions[topic] = n;
    return absl::OkStatus();
  }
  // Delivers everything not yet delivered, in produce order, with per-partition offsets.
  void DeliverAll() {
    for (; delivered < produced.size(); ++delivered) {
      Produced& p = produced[delivered];
      DeliveryReport r;
      r.topic = p.record.topic;
      r.partition = p.partition;
      r.offset = next_offset[{p.record.topic, p.partition}]++;
      p.offset = r.offset;
      p.done(r);
    }
  }
  // Fails everything not yet delivered, as a cluster that never answered.
  void FailAll() {
    for (; delivered < produced.size(); ++delivered) {
      DeliveryReport r;
      r.topic = produced[delivered].record.topic;
      r.status = absl::DeadlineExceededError("message timed out");
      produced[delivered].done(r);
    }
  }
  std::vector<const Produced*> To(const std::string& topic) const {
    std::vector<const Produced*> out;
    for (const Produced& p : produced) {
      if (p.record.topic == topic) out.push_back(&p);
    }
    return out;
  }

  bool refuse = false;
  absl::Duration produce_delay;
  std::mutex mu;
  std::map<std::string, int32_t> partitions;
  std::vector<Produced> produced;
  size_t delivered = 0;
  std::map<std::pair<std::string, int32_t>, int64_t> next_offset;
  std::vector<std::string> created;
};

class ScriptedHeat : public HeatTracker {
 public:
  void Observe(std::string_view, std::string_view, size_t) override { ++observed; }
  std::vector<TopicHeat> Tick(absl::Time) override { return heat; }
  std::vector<TopicHeat> heat;
  int observed = 0;
};

std::optional<std::string> Header(const Record& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.key == name) return h.value;
  }
  return std::nullopt;
}

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() {
    upstream.partitions["clicks"] = 16;
    options.instance_id = "test-1";
    options.control_topic = "";
    // With 16,000/s on 16 partitions and 1,750/s per partition targeted, a hot key of 4,000/s
    // finds 1,750 - 12,000/16 = 1,000/s free per partition: 1.5 × 4000 / 1000 = 6 salts.
    options.default_policy.partition_target_rps = 1750;
    options.default_policy.headroom = 1.5;
  }
  Router& router() {
    if (!router_) router_ = std::make_unique<Router>(upstream, &heat, options);
    return *router_;
  }
  void Send(const std::string& key, int n = 1, std::vector<DeliveryReport>* reports = nullptr) {
    for (int i = 0; i < n; ++i) {
      Record r;
      r.topic = "clicks";
      r.key = key;
      r.value = std::to_string(i);
      ASSERT_TRUE(router()
                      .Submit(std::move(r),
                              [reports](const DeliveryReport& rep) {
                                if (reports) reports->push_back(rep);
                              })
                      .ok());
    }
  }
  // As a Kafka client whose partitioner put `key` on `partition` sends it.
  void SendToClientPartition(const std::string& key, int32_t partition, int n = 1,
                             std::vector<DeliveryReport>* reports = nullptr) {
    for (int i = 0; i < n; ++i) {
      Record r;
      r.topic = "clicks";
      r.key = key;
      r.value = std::to_string(i);
      r.cold_partition = partition;
      ASSERT_TRUE(router()
                      .Submit(std::move(r),
                              [reports](const DeliveryReport& rep) {
                                if (reports) reports->push_back(rep);
                              })
                      .ok());
    }
  }
  void SetHot(std::vector<KeyRate> hot, double total = 16000) {
    heat.heat = {TopicHeat{"clicks", total, std::move(hot)}};
  }
  // Ticks until no transition is pending: hold, sample, drain.
  void Settle() {
    for (int i = 0; i < 4; ++i) {
      router().Tick(now += absl::Milliseconds(100));
      upstream.DeliverAll();
    }
  }

  FakeUpstream upstream;
  ScriptedHeat heat;
  RouterOptions options;
  std::unique_ptr<Router> router_;
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
};

TEST_F(RouterTest, ColdKeyGoesToTheJavaDefaultPartitionUntouched) {
  Send("user-1");
  ASSERT_EQ(upstream.produced.size(), 1u);
  const Produced& p = upstream.produced[0];
  EXPECT_EQ(p.partition, DefaultPartition("user-1", 16));
  EXPECT_EQ(p.record.key, "user-1");
  EXPECT_TRUE(p.record.headers.empty());
  EXPECT_EQ(heat.observed, 1);
}

TEST_F(RouterTest, KeysFollowTheJavaPartitionerWhenPartitionsAreAdded) {
  Send("user-1");
  EXPECT_EQ(upstream.produced.back().partition, DefaultPartition("user-1", 16));
  upstream.partitions["clicks"] = 48;
  router().Tick(now += absl::Milliseconds(100));
  Send("user-1");
  EXPECT_EQ(upstream.produced.back().partition, DefaultPartition("user-1", 48));
}

TEST_F(RouterTest, ClientPartitionIsKept) {
  Record r;
  r.topic = "clicks";
  r.key = "k";
  r.partition = 5;
  DeliveryReport seen;
  ASSERT_TRUE(router().Submit(std::move(r), [&](const DeliveryReport& d) { seen = d; }).ok());
  upstream.DeliverAll();
  EXPECT_EQ(upstream.produced[0].partition, 5);
  EXPECT_EQ(seen.action, RouteAction::kClientPartition);
}

// librdkafka's default partitioner (CRC32), Sarama's (FNV-1a) and round-robin balancers put a
// key elsewhere than murmur2: the client was told that partition, and a topic written both
// through saltproxy and directly must not hold one cold key on two partitions.
TEST_F(RouterTest, AKafkaClientsColdKeyStaysOnThePartitionItsClientChose) {
  const int32_t chosen = (DefaultPartition("user-1", 16) + 5) % 16;
  std::vector<DeliveryReport> reports;
  SendToClientPartition("user-1", chosen, 3, &reports);
  upstream.DeliverAll();
  ASSERT_EQ(upstream.produced.size(), 3u);
  for (const Produced& p : upstream.produced) {
    EXPECT_EQ(p.partition, chosen);
    EXPECT_EQ(p.record.key, "user-1");
    EXPECT_TRUE(p.record.headers.empty());
  }
  ASSERT_EQ(reports.size(), 3u);
  EXPECT_EQ(reports[0].action, RouteAction::kClientPartition);
  // "Without saltproxy" is where the client would have put them.
  EXPECT_EQ(router().Stats()[0].plain_out[chosen], 3u);
}

TEST_F(RouterTest, AKafkaClientsHotKeyMovesToItsSaltsWhateverItsClientChose) {
  SetHot({{"nike", 4000}});
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  const std::vector<int32_t> salts = router().Entries()[0].partitions;
  const int32_t chosen = (DefaultPartition("nike", 16) + 1) % 16;
  SendToClientPartition("nike", chosen, 60);
  std::set<int32_t> used;
  for (const Produced& p : upstream.produced) {
    EXPECT_NE(std::find(salts.begin(), salts.end(), p.partition), salts.end()) << p.partition;
    EXPECT_EQ(Header(p.record, kHeaderOriginalKey), "nike");
    used.insert(p.partition);
  }
  EXPECT_EQ(used.size(), salts.size());
}

// The reader releases a key's first hot record once every cut-over point is passed: one missing
// for the partition the client's partitioner chose would let it release hot records before the
// key's cold ones still unread there.
TEST_F(RouterTest, AKeyTurningHotCutsOverFromThePartitionsItsClientsChose) {
  const int32_t home = DefaultPartition("nike", 16);
  const int32_t chosen = (home + 3) % 16;
  SendToClientPartition("nike", chosen, 4);  // a librdkafka producer: offsets 0..3 there
  Send("nike", 2);                           // an HTTP producer: offsets 0..1 on murmur2's
  Send("other", 1);
  upstream.DeliverAll();
  SetHot({{"nike", 4000}});
  Settle();
  std::vector<SaltMapEntry> entries = router().Entries();
  ASSERT_EQ(entries.size(), 1u);
  std::map<int32_t, int64_t> cutover;
  for (const CutOver& c : entries[0].cutover) {
    EXPECT_EQ(c.topic, "clicks");
    cutover[c.partition] = c.max_offset;
  }
  ASSERT_TRUE(cutover.contains(chosen)) << "the client's partition is not a cut-over point";
  ASSERT_TRUE(cutover.contains(home));
  const int64_t other_on_chosen = DefaultPartition("other", 16) == chosen ? 1 : 0;
  EXPECT_EQ(cutover[chosen], 3 + other_on_chosen);
  const int64_t other_on_home = DefaultPartition("other", 16) == home ? 1 : 0;
  EXPECT_EQ(cutover[home], 1 + other_on_home);
  // Salt 0 is still the key's default partition: the salt map's contract.
  EXPECT_EQ(entries[0].partitions[0], home);
}

TEST_F(RouterTest, AKafkaClientsCooledKeyReturnsToItsClientsPartitionStillStamped) {
  options.cooled_retention = absl::Seconds(5);
  const int32_t chosen = (DefaultPartition("nike", 16) + 7) % 16;
  SetHot({{"nike", 4000}});
  Settle();
  SetHot({});
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  SendToClientPartition("nike", chosen, 2);
  upstream.DeliverAll();
  ASSERT_EQ(upstream.produced.size(), 2u);
  for (const Produced& p : upstream.produced) {
    EXPECT_EQ(p.partition, chosen);
    EXPECT_EQ(p.record.key, "nike");
    EXPECT_TRUE(Header(p.record, kHeaderSequence).has_value());
  }
  // Hot again while cooled: the cut-over names where the cooled records went.
  SetHot({{"nike", 4000}});
  Settle();
  std::vector<SaltMapEntry> entries = router().Entries();
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_EQ(entries[0].action, RouteAction::kSalted);
  bool named = false;
  for (const CutOver& c : entries[0].cutover) {
    if (c.partition == chosen) {
      named = true;
      EXPECT_EQ(c.max_offset, upstream.produced[1].offset);
    }
  }
  EXPECT_TRUE(named);
}

TEST_F(RouterTest, AKeyTurningHotCutsOverFromItsDefaultPartitionBeforePartitionsWereAdded) {
  Send("nike", 3);
  upstream.DeliverAll();
  const int32_t before = DefaultPartition("nike", 16);
  upstream.partitions["clicks"] = 48;
  router().Tick(now += absl::Milliseconds(100));
  SetHot({{"nike", 4000}});
  Settle();
  std::vector<SaltMapEntry> entries = router().Entries();
  ASSERT_EQ(entries.size(), 1u);
  std::set<int32_t> named;
  for (const CutOver& c : entries[0].cutover) named.insert(c.partition);
  EXPECT_TRUE(named.contains(before));
  EXPECT_TRUE(named.contains(DefaultPartition("nike", 48)));
}

TEST_F(RouterTest, APartitionTheTopicDoesNotHaveIsNotFound) {
  // Not InvalidArgument: Kafka clients are told UNKNOWN_TOPIC_OR_PARTITION (they refresh their
  // metadata and retry; a partition count can grow), HTTP clients 404.
  Record r;
  r.topic = "clicks";
  r.partition = 16;
  EXPECT_TRUE(absl::IsNotFound(router().Submit(std::move(r), nullptr)));
  EXPECT_TRUE(upstream.produced.empty());
}

TEST_F(RouterTest, SaltproxysOwnHeadersAreDroppedFromWhatClientsSend) {
  SetHot({{"nike", 4000}});
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  for (const std::string key : {"user-1", "nike"}) {
    Record r;
    r.topic = "clicks";
    r.key = key;
    r.headers = {{std::string(kHeaderSequence), "0"},
                 {"trace", "t-1"},
                 {std::string(kHeaderEpoch), "999999"},
                 {std::string(kHeaderOriginalKey), "someone-else"},
                 {std::string(kHeaderInstance), "elsewhere"}};
    ASSERT_TRUE(router().Submit(std::move(r), nullptr).ok());
  }
  ASSERT_EQ(upstream.produced.size(), 2u);
  const Record& cold = upstream.produced[0].record;
  ASSERT_EQ(cold.headers.size(), 1u);  // only the client's own
  EXPECT_EQ(cold.headers[0].key, "trace");
  const Record& hot = upstream.produced[1].record;
  EXPECT_EQ(hot.headers.size(), 5u);  // the client's own and saltproxy's four
  EXPECT_EQ(Header(hot, kHeaderOriginalKey), "nike");
  EXPECT_EQ(Header(hot, kHeaderInstance), "test-1");
  EXPECT_EQ(Header(hot, kHeaderEpoch), "1");
  EXPECT_EQ(Header(hot, kHeaderSequence), "0");
  ASSERT_EQ(router().Stats().size(), 1u);
  EXPECT_EQ(router().Stats()[0].stamps_dropped, 2u);
}

TEST_F(RouterTest, HotKeyIsSaltedOverDistinctPartitionsWithHeaders) {
  SetHot({{"nike", 4000}});  // 6 salts (see the fixture)
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  std::vector<DeliveryReport> reports;
  Send("nike", 60, &reports);
  upstream.DeliverAll();
  ASSERT_EQ(router().Entries().size(), 1u);
  std::vector<int32_t> expected = router().Entries()[0].partitions;
  ASSERT_EQ(expected.size(), 6u);
  EXPECT_EQ(expected[0], DefaultPartition("nike", 16));
  std::set<int32_t> used;
  for (size_t i = 0; i < upstream.produced.size(); ++i) {
    const Produced& p = upstream.produced[i];
    used.insert(p.partition);
    auto salt_index = std::find(expected.begin(), expected.end(), p.partition) - expected.begin();
    ASSERT_LT(salt_index, 6) << "partition " << p.partition << " is not one of nike's salts";
    // The salted key names its partition (the key itself on its default partition).
    EXPECT_EQ(p.record.key, salt_index == 0 ? std::string("nike")
                                            : SaltedKey("nike", p.partition));
    EXPECT_EQ(Header(p.record, kHeaderOriginalKey), "nike");
    EXPECT_EQ(Header(p.record, kHeaderInstance), "test-1");
    EXPECT_EQ(Header(p.record, kHeaderSequence), std::to_string(i));
    EXPECT_EQ(Header(p.record, kHeaderEpoch), "1");
    EXPECT_EQ(reports[i].action, RouteAction::kSalted);
    EXPECT_EQ(reports[i].epoch, 1u);
  }
  EXPECT_EQ(used.size(), 6u);
}

TEST_F(RouterTest, HotKeysTakeThePartitionsOtherHotKeysLeave) {
  // Two keys of 4,000/s: 16,000 - 8,000 cold leaves 1,250/s free per partition, so each gets
  // ceil(1.5 × 4000 / 1250) = 5 salts, 10 of the 16 partitions. Placed where the other's load
  // is not, they share no partition but their own default ones; placed by hashing the salted
  // keys (murmur2 of SaltedKey(key, i), probing past the key's own collisions) both would have
  // partition 15, neither key's default.
  SetHot({{"nike", 4000}, {"adidas", 4000}});
  Settle();
  std::map<std::string, std::vector<int32_t>> parts;
  for (const SaltMapEntry& e : router().Entries()) parts[e.key] = e.partitions;
  ASSERT_EQ(parts["nike"].size(), 5u);
  ASSERT_EQ(parts["adidas"].size(), 5u);
  for (const auto& [key, list] : parts) {
    EXPECT_EQ(list[0], DefaultPartition(key, 16)) << key;
    EXPECT_EQ(std::set<int32_t>(list.begin(), list.end()).size(), list.size()) << key;
  }
  const std::set<int32_t> defaults = {DefaultPartition("nike", 16),
                                      DefaultPartition("adidas", 16)};
  for (int32_t p : parts["nike"]) {
    if (std::find(parts["adidas"].begin(), parts["adidas"].end(), p) != parts["adidas"].end()) {
      EXPECT_TRUE(defaults.contains(p)) << "both keys salted onto partition " << p;
    }
  }
}

TEST_F(RouterTest, AKeyWhoseSaltCountGrowsKeepsItsPartitions) {
  SetHot({{"nike", 4000}});  // 6 salts
  Settle();
  ASSERT_EQ(router().Entries().size(), 1u);
  const std::vector<int32_t> before = router().Entries()[0].partitions;
  ASSERT_EQ(before.size(), 6u);
  // 8,000/s: 16,000 - 8,000 cold leaves 1,250/s free: ceil(1.5 × 8000 / 1250) = 10 salts.
  SetHot({{"nike", 8000}});
  Settle();
  ASSERT_EQ(router().Entries().size(), 1u);
  const std::vector<int32_t> after = router().Entries()[0].partitions;
  ASSERT_EQ(after.size(), 10u);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), after.begin()));
  EXPECT_EQ(std::set<int32_t>(after.begin(), after.end()).size(), after.size());
}

TEST_F(RouterTest, LoadAwareSpreadingFillsTheLeastLoadedSalt) {
  SetHot({{"nike", 4000}});
  Settle();
  ASSERT_EQ(router().Entries().size(), 1u);
  std::vector<int32_t> salts = router().Entries()[0].partitions;
  ASSERT_EQ(salts.size(), 6u);
  // Load one of nike's partitions with cold traffic: nike's records must avoid it.
  int loaded = salts[2];
  for (int i = 0; i < 10000 && static_cast<int>(router().PartitionCounts("clicks")[loaded]) < 300; ++i) {
    std::string k = "cold-" + std::to_string(i);
    if (DefaultPartition(k, 16) == loaded) Send(k);
  }
  std::vector<uint64_t> before = router().PartitionCounts("clicks");
  Send("nike", 600);
  std::vector<uint64_t> after = router().PartitionCounts("clicks");
  uint64_t max_load = 0, min_load = UINT64_MAX;
  for (int32_t p : salts) {
    max_load = std::max(max_load, after[p]);
    min_load = std::min(min_load, after[p]);
  }
  EXPECT_EQ(after[loaded], before[loaded]) << "the loaded partition got nike's records";
  // The other five are filled evenly, to within one record.
  std::vector<uint64_t> others;
  for (int32_t p : salts) if (p != loaded) others.push_back(after[p]);
  EXPECT_LE(*std::max_element(others.begin(), others.end()) -
                *std::min_element(others.begin(), others.end()),
            1u);
}

TEST_F(RouterTest, RecordsSentDuringAChangeAreHeldUntilTheOldLayoutIsDelivered) {
  Send("nike", 3);  // cold: on its default partition, not yet delivered
  SetHot({{"nike", 4000}});
  router().Tick(now += absl::Milliseconds(100));  // holding starts
  Send("nike", 2);                                 // held
  EXPECT_EQ(upstream.produced.size(), 3u);
  router().Tick(now += absl::Milliseconds(100));  // targets sampled; old records undelivered
  EXPECT_EQ(upstream.produced.size(), 3u);
  EXPECT_EQ(router().epoch(), 0u);
  upstream.DeliverAll();
  router().Tick(now += absl::Milliseconds(100));  // drained: the change takes effect
  EXPECT_EQ(router().epoch(), 1u);
  ASSERT_EQ(upstream.produced.size(), 5u);
  // The held records went out first, in order, salted, sequence 0 and 1.
  EXPECT_EQ(Header(upstream.produced[3].record, kHeaderSequence), "0");
  EXPECT_EQ(upstream.produced[3].record.value, "0");
  EXPECT_EQ(Header(upstream.produced[4].record, kHeaderSequence), "1");
  EXPECT_EQ(upstream.produced[4].record.value, "1");
}

// A change samples what was sent to the old layout only transition_grace after its key began to
// be held, in time, however soon the next step comes (steps may come early): a record routed
// under the snapshot before the hold reaches the producer by then.
TEST_F(RouterTest, AChangeSamplesTheOldLayoutOnlyAfterItsGrace) {
  options.transition_grace = absl::Milliseconds(50);
  Send("nike", 3);
  upstream.DeliverAll();  // the old layout has nothing in flight
  SetHot({{"nike", 4000}});
  router().Tick(now += absl::Milliseconds(100));  // holding starts
  router().Tick(now += absl::Milliseconds(1));    // an early step: too soon to sample
  EXPECT_EQ(router().epoch(), 0u);
  router().Tick(now += absl::Milliseconds(49));   // the grace has passed: sampled, drained
  EXPECT_EQ(router().epoch(), 1u);
}

TEST_F(RouterTest, AtShutdownHeldRecordsAreFailedAndLaterOnesRefused) {
  Send("nike", 3);  // undelivered: the change cannot finish
  SetHot({{"nike", 4000}});
  router().Tick(now += absl::Milliseconds(100));
  std::vector<DeliveryReport> reports;
  Send("nike", 2, &reports);  // held
  ASSERT_TRUE(reports.empty());
  router().FailHeld(absl::UnavailableError("saltproxy is shutting down"));
  ASSERT_EQ(reports.size(), 2u);
  for (const DeliveryReport& r : reports) EXPECT_TRUE(absl::IsUnavailable(r.status)) << r.status;
  Record late;
  late.topic = "clicks";
  late.key = "nike";
  EXPECT_TRUE(absl::IsUnavailable(router().Submit(std::move(late), nullptr)));
  EXPECT_EQ(upstream.produced.size(), 3u);
}

TEST_F(RouterTest, SaltMapCarriesCutOverPointsOfThePreviousLayout) {
  Send("nike", 3);
  upstream.DeliverAll();
  SetHot({{"nike", 4000}});
  Settle();
  std::vector<SaltMapEntry> entries = router().Entries();
  ASSERT_EQ(entries.size(), 1u);
  const SaltMapEntry& e = entries[0];
  EXPECT_EQ(e.key, "nike");
  EXPECT_EQ(e.action, RouteAction::kSalted);
  EXPECT_EQ(e.salts, 6);
  ASSERT_EQ(e.partitions.size(), 6u);
  EXPECT_EQ(e.partitions[0], DefaultPartition("nike", 16));
  EXPECT_EQ(e.since_seq, 0);
  ASSERT_EQ(e.cutover.size(), 1u);
  EXPECT_EQ(e.cutover[0].topic, "clicks");
  EXPECT_EQ(e.cutover[0].partition, DefaultPartition("nike", 16));
  EXPECT_EQ(e.cutover[0].max_offset, 2);  // the key's three cold records: offsets 0..2
}

TEST_F(RouterTest, EveryChangeIsANewEpochAndSequenceContinues) {
  SetHot({{"nike", 4000}});
  Settle();
  EXPECT_EQ(router().epoch(), 1u);
  Send("nike", 5);
  SetHot({{"nike", 8000}}, 16000);  // 1750 - 8000/16 = 1250 free: ceil(1.5 × 8000 / 1250) = 10
  Settle();
  EXPECT_EQ(router().epoch(), 2u);
  std::vector<SaltMapEntry> entries = router().Entries();
  EXPECT_EQ(entries[0].salts, 10);
  EXPECT_EQ(entries[0].since_seq, 5);
  EXPECT_EQ(entries[0].cutover.size(), 6u);  // the six partitions of the previous layout
}

TEST_F(RouterTest, ARecordRefusedOnTheSpotGivesItsSequenceNumberBack) {
  SetHot({{"nike", 4000}});
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  Send("nike", 2);
  upstream.refuse = true;
  Record refused;
  refused.topic = "clicks";
  refused.key = "nike";
  EXPECT_TRUE(absl::IsResourceExhausted(router().Submit(std::move(refused), nullptr)));
  upstream.refuse = false;
  Send("nike", 1);
  // Readers wait for every number of an episode: a number lost with a refused record would
  // stall the key at every reader until its wait ran out.
  ASSERT_EQ(upstream.produced.size(), 3u);
  EXPECT_EQ(Header(upstream.produced[2].record, kHeaderSequence), "2");
}

TEST_F(RouterTest, AHotKeysSequenceNumbersReachEachPartitionInOrderFromManyThreads) {
  SetHot({{"nike", 4000}});
  Settle();
  upstream.produced.clear();
  upstream.delivered = 0;
  upstream.produce_delay = absl::Microseconds(20);
  constexpr int kThreads = 4;
  constexpr int kEach = 150;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this] {
      for (int i = 0; i < kEach; ++i) {
        Record r;
        r.topic = "clicks";
        r.key = "nike";
        EXPECT_TRUE(router().Submit(std::move(r), nullptr).ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(upstream.produced.size(), static_cast<size_t>(kThreads * kEach));
  // A reader of a partition sees its records in the order they were queued: a number behind
  // a later one waits there until the reader gives up on it.
  std::map<int32_t, int64_t> last;  // by partition
  std::set<int64_t> seen;
  for (const Produced& p : upstream.produced) {
    const int64_t seq = std::stoll(*Header(p.record, kHeaderSequence));
    auto it = last.find(p.partition);
    if (it != last.end()) {
      EXPECT_GT(seq, it->second) << "partition " << p.partition;
    }
    last[p.partition] = seq;
    seen.insert(seq);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(*seen.rbegin(), kThreads * kEach - 1);
}

TEST_F(RouterTest, CooledKeyReturnsToItsDefaultPartitionStillStampedThenLeavesTheMap) {
  options.cooled_retention = absl::Seconds(5);
  SetHot({{"nike", 4000}});
  Settle();
  SetHot({});
  Settle();
  EXPECT_EQ(router().epoch(), 2u);
  upstream.produced.clear();
  upstream.delivered = 0;
  Send("nike");
  EXPECT_EQ(upstream.produced[0].partition, DefaultPartition("nike", 16));
  EXPECT_EQ(upstream.produced[0].record.key, "nike");
  EXPECT_EQ(Header(upstream.produced[0].record, kHeaderSequence), "0");
  ASSERT_EQ(router().Entries().size(), 1u);
  EXPECT_EQ(router().Entries()[0].action, RouteAction::kPassed);
  now += absl::Seconds(6);
  Settle();
  EXPECT_TRUE(router().Entries().empty());
  EXPECT_EQ(router().epoch(), 3u);
  upstream.produced.clear();
  upstream.delivered = 0;
  Send("nike");
  EXPECT_TRUE(upstream.produced[0].record.headers.empty());
}

TEST_F(RouterTest, KeyTooHotIsReroutedToACreatedHotTopicAndSaltedThere) {
  options.default_policy.max_salts = 4;
  options.default_policy.hot_topic_partitions = 8;
  SetHot({{"nike", 12000}});  // alone it needs ceil(12000 / 1750) = 7 partitions > 4
  Settle();
  EXPECT_THAT(upstream.created, ElementsAre("clicks.hot"));
  upstream.produced.clear();
  upstream.delivered = 0;
  std::vector<DeliveryReport> reports;
  Send("nike", 20, &reports);
  upstream.DeliverAll();
  std::set<int32_t> used;
  for (const Produced& p : upstream.produced) {
    EXPECT_EQ(p.record.topic, "clicks.hot");
    used.insert(p.partition);
  }
  EXPECT_EQ(used.size(), 8u);  // all eight partitions of the hot topic
  EXPECT_EQ(reports[0].action, RouteAction::kRerouted);
  EXPECT_EQ(reports[0].topic, "clicks.hot");
}

TEST_F(RouterTest, ReconfiguredPolicyAppliesAtTheNextControlStep) {
  SetHot({{"nike", 4000}});
  Settle();
  ASSERT_EQ(router().Entries()[0].action, RouteAction::kSalted);
  RouterOptions off = options;
  off.default_policy.strategy = Strategy::kOff;
  router().Reconfigure(off);
  Settle();
  EXPECT_EQ(router().Entries()[0].action, RouteAction::kPassed);  // cooled back
}

TEST_F(RouterTest, SaltMapJsonListsKeysWithEpochAndCutOver) {
  SetHot({{"nike", 4000}});
  Settle();
  boost::json::value map = boost::json::parse(router().SaltMapJson());
  EXPECT_EQ(map.at("epoch").to_number<uint64_t>(), 1u);
  EXPECT_EQ(map.at("instance").as_string(), "test-1");
  const auto& key = map.at("topics").at("clicks").at("keys").at(0);
  EXPECT_EQ(key.at("key").as_string(), "nike");
  EXPECT_EQ(key.at("action").as_string(), "salted");
  EXPECT_EQ(key.at("salts").as_int64(), 6);
  EXPECT_EQ(key.at("cutover").as_array().size(), 1u);
}

TEST_F(RouterTest, SaltMapIsPublishedToTheCompactedControlTopic) {
  options.control_topic = "_saltmap";
  SetHot({{"nike", 4000}});
  Settle();
  EXPECT_THAT(upstream.created, ElementsAre("_saltmap"));
  std::vector<const Produced*> published = upstream.To("_saltmap");
  ASSERT_FALSE(published.empty());
  EXPECT_EQ(published.back()->record.key, "saltmap/test-1");
  EXPECT_EQ(published.back()->record.value, router().SaltMapJson());
}

// A stamped record the cluster fails after it was queued leaves a gap in its key's numbers,
// which a reader would wait out: the key starts a new episode under the same layout (numbers
// from 0, a new epoch, cut-over points where the old numbering's records ended).
TEST_F(RouterTest, AFailedStampedRecordRenumbersItsKeyUnderTheSameLayout) {
  SetHot({{"nike", 4000}});
  Settle();
  ASSERT_EQ(router().Entries().size(), 1u);
  const SaltMapEntry before = router().Entries()[0];
  Send("nike", 10);
  upstream.DeliverAll();
  Send("nike", 5);
  upstream.FailAll();  // numbers 10..14 never written
  Settle();
  ASSERT_EQ(router().Entries().size(), 1u);
  const SaltMapEntry after = router().Entries()[0];
  EXPECT_GT(after.epoch, before.epoch);
  EXPECT_EQ(after.since_seq, 0);
  EXPECT_EQ(after.partitions, before.partitions);
  EXPECT_EQ(after.action, before.action);
  ASSERT_EQ(after.cutover.size(), before.partitions.size());
  size_t first = upstream.produced.size();
  Send("nike", 3);
  upstream.DeliverAll();
  ASSERT_EQ(upstream.produced.size(), first + 3);
  for (int i = 0; i < 3; ++i) {
    const Record& r = upstream.produced[first + i].record;
    EXPECT_EQ(Header(r, kHeaderSequence), std::to_string(i));
    EXPECT_EQ(Header(r, kHeaderEpoch), std::to_string(after.epoch));
  }
  // Nothing failed since: no further renumbering.
  Settle();
  EXPECT_EQ(router().Entries()[0].epoch, after.epoch);
}

TEST_F(RouterTest, ASaltMapTheClusterFailedIsPublishedAgainAtTheNextTick) {
  options.control_topic = "_saltmap";
  SetHot({{"nike", 4000}});
  Settle();
  const size_t settled = upstream.To("_saltmap").size();
  router().Tick(now += absl::Milliseconds(100));
  EXPECT_EQ(upstream.To("_saltmap").size(), settled) << "published again with nothing new";
  SetHot({{"nike", 8000}});  // a new salt count: a new epoch
  for (int i = 0; i < 4; ++i) {
    router().Tick(now += absl::Milliseconds(100));
    upstream.FailAll();
  }
  const size_t failed = upstream.To("_saltmap").size();
  ASSERT_GT(failed, settled);
  router().Tick(now += absl::Milliseconds(100));
  std::vector<const Produced*> published = upstream.To("_saltmap");
  ASSERT_EQ(published.size(), failed + 1);
  EXPECT_EQ(published.back()->record.value, router().SaltMapJson());
  upstream.DeliverAll();
  router().Tick(now += absl::Milliseconds(100));
  EXPECT_EQ(upstream.To("_saltmap").size(), failed + 1);
}

// A record stamped with an epoch goes out only once the map that names the epoch is on the
// control topic: had the proxy crashed between the change and the publication, readers would
// wait for ever for a layout nobody can tell them.
TEST_F(RouterTest, HeldRecordsGoOutOnlyOnceTheMapOfTheirEpochIsAcknowledged) {
  options.control_topic = "_saltmap";
  Send("nike", 3);
  upstream.DeliverAll();
  SetHot({{"nike", 4000}});
  router().Tick(now += absl::Milliseconds(100));  // holding starts
  Send("nike", 2);                                 // held
  router().Tick(now += absl::Milliseconds(100));  // drained: epoch 1, its map published
  EXPECT_EQ(router().epoch(), 1u);
  EXPECT_EQ(upstream.To("clicks").size(), 3u) << "held records went out before their map";
  std::vector<const Produced*> published = upstream.To("_saltmap");
  ASSERT_EQ(published.size(), 1u);
  boost::json::value map = boost::json::parse(*published[0]->record.value);
  EXPECT_EQ(map.at("topics").at("clicks").at("keys").at(0).at("epoch").to_number<uint64_t>(), 1u);
  EXPECT_FALSE(router().WantsTickNow());
  router().Tick(now += absl::Milliseconds(100));  // the map is not acknowledged yet
  EXPECT_EQ(upstream.To("clicks").size(), 3u);
  upstream.DeliverAll();                           // the cluster acknowledges the map
  EXPECT_TRUE(router().WantsTickNow());
  router().Tick(now += absl::Milliseconds(20));
  std::vector<const Produced*> clicks = upstream.To("clicks");
  ASSERT_EQ(clicks.size(), 5u);
  EXPECT_EQ(Header(clicks[3]->record, kHeaderEpoch), "1");
  EXPECT_EQ(Header(clicks[3]->record, kHeaderSequence), "0");
  EXPECT_EQ(clicks[3]->record.value, "0");
  EXPECT_EQ(Header(clicks[4]->record, kHeaderSequence), "1");
  EXPECT_FALSE(router().WantsTickNow());
}

TEST_F(RouterTest, AKeyWhoseMapFailedStaysHeldUntilTheMapIsPublishedAgain) {
  options.control_topic = "_saltmap";
  options.max_held_records_per_key = 3;
  Send("nike", 3);
  upstream.DeliverAll();
  SetHot({{"nike", 4000}});
  router().Tick(now += absl::Milliseconds(100));
  Send("nike", 2);
  router().Tick(now += absl::Milliseconds(100));  // epoch 1's map published...
  upstream.FailAll();                              // ...and failed by the cluster
  EXPECT_FALSE(router().WantsTickNow());
  router().Tick(now += absl::Milliseconds(100));  // published again
  EXPECT_EQ(upstream.To("_saltmap").size(), 2u);
  EXPECT_EQ(upstream.To("clicks").size(), 3u);
  // Still held, within the bound: beyond it, producers are pushed back.
  Send("nike");
  Record over;
  over.topic = "clicks";
  over.key = "nike";
  EXPECT_TRUE(absl::IsResourceExhausted(router().Submit(std::move(over), nullptr)));
  upstream.DeliverAll();
  router().Tick(now += absl::Milliseconds(20));
  std::vector<const Produced*> clicks = upstream.To("clicks");
  ASSERT_EQ(clicks.size(), 6u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Header(clicks[3 + i]->record, kHeaderSequence), std::to_string(i));
  }
}

TEST_F(RouterTest, EpochsCountOnFromTheFirstEpochAndNothingIsPublishedBeforeAChange) {
  options.control_topic = "_saltmap";
  options.first_epoch = 1'700'000'000'000'000;  // a restarted proxy's, from the clock
  router().Tick(now += absl::Milliseconds(100));
  EXPECT_TRUE(upstream.To("_saltmap").empty());
  SetHot({{"nike", 4000}});
  Settle();
  EXPECT_EQ(router().epoch(), 1'700'000'000'000'001u);
  upstream.produced.clear();
  upstream.delivered = 0;
  Send("nike");
  EXPECT_EQ(Header(upstream.produced[0].record, kHeaderEpoch), "1700000000000001");
}

}  // namespace
}  // namespace saltproxy
