// A restarted instance resumes its layouts from the last map it published (resume.h): from the
// map's JSON to the layouts the new run installs, publishes and routes under. The old run is a
// real Router whose map is read back; the cluster is a fake that numbers offsets per partition
// and acknowledges on demand.
#include "proxy/salting/resume.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <map>
#include <memory>
#include <mutex>

#include "proxy/salting/router.h"
#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

struct Produced {
  Record record;
  int32_t partition;
  DeliveryCallback done;
};

// The cluster both runs write to: offsets per partition survive the "restart".
class Cluster : public Upstream {
 public:
  absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) override {
    std::lock_guard<std::mutex> lock(mu_);
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
    done(CachedPartitions(topic).value_or(0));
  }
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string& topic, int32_t n,
                           const std::map<std::string, std::string>&) override {
    partitions.emplace(topic, n);
    return absl::OkStatus();
  }
  void DeliverAll() {
    for (; delivered < produced.size(); ++delivered) {
      Produced& p = produced[delivered];
      DeliveryReport r;
      r.topic = p.record.topic;
      r.partition = p.partition;
      r.offset = end[{p.record.topic, p.partition}]++;
      p.done(r);
    }
  }
  // The process died: what it had not been told about is gone with it.
  void Crash() {
    produced.resize(delivered);
  }
  std::vector<const Produced*> To(const std::string& topic, size_t from = 0) const {
    std::vector<const Produced*> out;
    for (size_t i = from; i < produced.size(); ++i) {
      if (produced[i].record.topic == topic) out.push_back(&produced[i]);
    }
    return out;
  }
  Watermarks HighWatermarks(const std::vector<TopicPartition>& needed) {
    Watermarks hw;
    for (const TopicPartition& tp : needed) hw[tp] = end[tp];
    return hw;
  }

  std::mutex mu_;
  std::map<std::string, int32_t> partitions;
  std::vector<Produced> produced;
  size_t delivered = 0;
  std::map<TopicPartition, int64_t> end;  // the next offset of each partition
};

class ScriptedHeat : public HeatTracker {
 public:
  void Observe(std::string_view, std::string_view, size_t) override {}
  std::vector<TopicHeat> Tick(absl::Time) override { return heat; }
  std::vector<TopicHeat> heat;
};

std::optional<std::string> Header(const Record& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.key == name) return h.value;
  }
  return std::nullopt;
}

class ResumeTest : public ::testing::Test {
 protected:
  ResumeTest() {
    cluster.partitions["clicks"] = 16;
    options.instance_id = "proxy-1";
    options.control_topic = "_saltmap";
    options.default_policy.partition_target_rps = 1750;
    options.default_policy.headroom = 1.5;  // 4,000/s of 16,000/s: 6 salts
    options.first_epoch = 1000;
  }
  void Send(Router& router, const std::string& key, int n) {
    for (int i = 0; i < n; ++i) {
      Record r;
      r.topic = "clicks";
      r.key = key;
      r.value = absl::StrCat(key, "#", sent[key]++);
      ASSERT_TRUE(router.Submit(std::move(r), [](const DeliveryReport&) {}).ok());
    }
  }
  void Settle(Router& router) {
    for (int i = 0; i < 4; ++i) {
      router.Tick(now += absl::Milliseconds(100));
      cluster.DeliverAll();
    }
  }
  // The old run: nike salted and written to, then killed; returns the map it published last.
  std::string OldRun() {
    Router old(cluster, &heat, options);
    Send(old, "nike", 5);
    heat.heat = {TopicHeat{"clicks", 16000, {{"nike", 4000}}}};
    Settle(old);
    Send(old, "nike", 40);
    cluster.DeliverAll();
    Send(old, "nike", 3);  // in flight at the crash
    cluster.Crash();
    heat.heat.clear();
    old_entry = old.Entries().at(0);
    return *cluster.To("_saltmap").back()->record.value;
  }
  ResumePlan Plan(const std::string& map_json) {
    absl::StatusOr<LastMap> last = ReadLastMap(map_json, "proxy-1");
    EXPECT_THAT(last, IsOk());
    if (!last.ok()) return {};
    return PlanResume(*last, cluster.HighWatermarks(WatermarksNeeded(*last)), now,
                      options.cooled_retention);
  }

  Cluster cluster;
  ScriptedHeat heat;
  RouterOptions options;
  SaltMapEntry old_entry;
  std::map<std::string, int> sent;
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
};

TEST_F(ResumeTest, ASaltedKeyKeepsItsPartitionsFromSequenceZeroWithCutOversAtTheEnds) {
  const std::string map_json = OldRun();
  ResumePlan plan = Plan(map_json);
  ASSERT_EQ(plan.layouts.size(), 1u);
  const SaltMapEntry& r = plan.layouts[0];
  EXPECT_EQ(r.key, "nike");
  EXPECT_EQ(r.action, RouteAction::kSalted);
  EXPECT_EQ(r.destination, "clicks");
  EXPECT_EQ(r.partitions, old_entry.partitions);
  EXPECT_EQ(r.since_seq, 0);
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(r.changed_at, now);
  EXPECT_EQ(r.hot_since, absl::FromUnixMillis(absl::ToUnixMillis(old_entry.hot_since)));
  // One point per old partition, at its end: everything the old run wrote is below it. The
  // old layout's own point (its default partition, where it was cold) is one of them.
  ASSERT_EQ(r.cutover.size(), old_entry.partitions.size());
  for (size_t i = 0; i < r.cutover.size(); ++i) {
    const CutOver& c = r.cutover[i];
    EXPECT_EQ(c.topic, "clicks");
    EXPECT_EQ(c.partition, old_entry.partitions[i]);
    EXPECT_EQ(c.max_offset, cluster.end[TopicPartition("clicks", c.partition)] - 1) << c.partition;
  }
  EXPECT_EQ(plan.expired, 0);
  EXPECT_EQ(plan.unresumable, 0);
}

TEST_F(ResumeTest, TheRestartedRouterPublishesTheResumedMapBeforeAnyRecordUnderIt) {
  const std::string map_json = OldRun();
  options.first_epoch = 5000;
  Router next(cluster, &heat, options);
  ResumePlan plan = Plan(map_json);
  const size_t before = cluster.produced.size();
  ASSERT_EQ(next.Resume(plan.layouts, now), 1);
  EXPECT_EQ(next.epoch(), 5001u);

  // The map is published at once, with the resumed layout and its cut-over points.
  std::vector<const Produced*> maps = cluster.To("_saltmap", before);
  ASSERT_EQ(maps.size(), 1u);
  EXPECT_EQ(maps[0]->record.key, "saltmap/proxy-1");
  boost::json::value map = boost::json::parse(*maps[0]->record.value);
  EXPECT_EQ(map.at("epoch").to_number<uint64_t>(), 5001u);
  const boost::json::value& key = map.at("topics").at("clicks").at("keys").at(0);
  EXPECT_EQ(key.at("key").as_string(), "nike");
  EXPECT_EQ(key.at("action").as_string(), "salted");
  EXPECT_EQ(key.at("epoch").to_number<uint64_t>(), 5001u);
  EXPECT_EQ(key.at("since_seq").to_number<int64_t>(), 0);
  EXPECT_TRUE(key.at("resumed").as_bool());
  EXPECT_EQ(key.at("cutover").as_array().size(), old_entry.partitions.size());

  // The key's records wait for that map.
  Send(next, "nike", 12);
  EXPECT_TRUE(cluster.To("clicks", before).empty());
  next.Tick(now += absl::Milliseconds(100));
  EXPECT_TRUE(cluster.To("clicks", before).empty());
  cluster.DeliverAll();  // the map is acknowledged
  EXPECT_TRUE(next.WantsTickNow());
  next.Tick(now += absl::Milliseconds(20));
  std::vector<const Produced*> records = cluster.To("clicks", before);
  ASSERT_EQ(records.size(), 12u);
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& rec = records[i]->record;
    EXPECT_EQ(Header(rec, kHeaderSequence), std::to_string(i));
    EXPECT_EQ(Header(rec, kHeaderEpoch), "5001");
    EXPECT_EQ(Header(rec, kHeaderInstance), "proxy-1");
    EXPECT_EQ(rec.value, absl::StrCat("nike#", 48 + i));
    // On the partitions of the layout before the restart, under the key that names each.
    EXPECT_NE(std::find(old_entry.partitions.begin(), old_entry.partitions.end(),
                        records[i]->partition),
              old_entry.partitions.end())
        << records[i]->partition;
    EXPECT_EQ(rec.key, SaltedKeyFor("nike", records[i]->partition, 16));
  }
}

TEST_F(ResumeTest, AResumedKeyIsNotCooledBeforeTheDetectorCouldCountIt) {
  options.default_policy.resumed_hold = absl::Seconds(10);
  const std::string map_json = OldRun();
  options.first_epoch = 5000;
  Router next(cluster, &heat, options);
  ASSERT_EQ(next.Resume(Plan(map_json).layouts, now), 1);
  cluster.DeliverAll();
  // The detector knows the topic, not the key yet: within the hold the layout stays.
  heat.heat = {TopicHeat{"clicks", 100, {}}};
  for (int i = 0; i < 20; ++i) {
    next.Tick(now += absl::Milliseconds(400));
    cluster.DeliverAll();
  }
  ASSERT_EQ(next.Entries().size(), 1u);
  EXPECT_EQ(next.Entries()[0].action, RouteAction::kSalted);
  EXPECT_EQ(next.epoch(), 5001u);
  // Past it, a key the detector does not hold hot cools as any key does.
  for (int i = 0; i < 30; ++i) {
    next.Tick(now += absl::Milliseconds(100));
    cluster.DeliverAll();
  }
  ASSERT_EQ(next.Entries().size(), 1u);
  EXPECT_EQ(next.Entries()[0].action, RouteAction::kPassed);
  EXPECT_FALSE(next.Entries()[0].resumed);
}

// A later change of a resumed key cuts over above the old run's records, although the new run
// wrote nothing to those partitions: its first number would otherwise be released by readers
// before the old run's last records there.
TEST_F(ResumeTest, ALaterChangeOfAResumedKeyCutsOverAboveTheOldRunsRecords) {
  const std::string map_json = OldRun();
  options.first_epoch = 5000;
  Router next(cluster, &heat, options);
  ASSERT_EQ(next.Resume(Plan(map_json).layouts, now), 1);
  cluster.DeliverAll();
  next.Tick(now += absl::Milliseconds(100));
  heat.heat = {TopicHeat{"clicks", 16000, {{"nike", 8000}}}};  // 10 salts
  Settle(next);
  std::vector<SaltMapEntry> entries = next.Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].salts, 10);
  EXPECT_EQ(entries[0].since_seq, 0);  // nothing was sent under the resumed layout
  ASSERT_EQ(entries[0].cutover.size(), old_entry.partitions.size());
  for (const CutOver& c : entries[0].cutover) {
    EXPECT_EQ(c.max_offset, cluster.end[TopicPartition("clicks", c.partition)] - 1) << c.partition;
  }
}

TEST_F(ResumeTest, ACooledKeyIsResumedAsCooledForTheRestOfItsRetention) {
  const std::string map_json = R"({"epoch":9,"instance":"proxy-1","topics":{"clicks":{"keys":[
      {"key":"adidas","action":"cooled","destination":"clicks","salts":1,"partitions":[4],
       "epoch":8,"since_seq":300,"cutover":[{"topic":"clicks","partition":4,"max_offset":70},
       {"topic":"clicks","partition":9,"max_offset":55},{"topic":"clicks","partition":2,
       "max_offset":-1}],"rate_rps":0,"hot_since":"2023-11-14T22:00:00.000Z",
       "changed_at":"2023-11-14T22:13:00.000Z"},
      {"key":"puma","action":"cooled","destination":"clicks","salts":1,"partitions":[6],
       "epoch":5,"since_seq":10,"cutover":[],"rate_rps":0,
       "hot_since":"2023-11-14T22:00:00.000Z","changed_at":"2023-11-14T22:11:00.000Z"}]}}})";
  now = absl::FromUnixSeconds(1'700'000'000);  // 2023-11-14T22:13:20Z
  cluster.end[{"clicks", 4}] = 90;
  cluster.end[{"clicks", 6}] = 12;
  ResumePlan plan = Plan(map_json);
  EXPECT_EQ(plan.expired, 1);  // puma cooled 2 min 20 s ago, past the 1 min retention
  ASSERT_EQ(plan.layouts.size(), 1u);
  const SaltMapEntry& r = plan.layouts[0];
  EXPECT_EQ(r.key, "adidas");
  EXPECT_EQ(r.action, RouteAction::kPassed);
  EXPECT_THAT(r.partitions, ElementsAre(4));
  EXPECT_EQ(r.since_seq, 0);
  EXPECT_EQ(r.changed_at, absl::FromUnixSeconds(1'700'000'000 - 20));
  std::vector<std::pair<int32_t, int64_t>> cutover;
  for (const CutOver& c : r.cutover) cutover.emplace_back(c.partition, c.max_offset);
  // Its default partition up to the end, and where its salts ended when it cooled.
  EXPECT_THAT(cutover, UnorderedElementsAre(std::pair<int32_t, int64_t>{4, 89},
                                            std::pair<int32_t, int64_t>{9, 55}));

  options.first_epoch = 5000;
  options.cooled_retention = absl::Minutes(1);
  Router next(cluster, &heat, options);
  ASSERT_EQ(next.Resume(plan.layouts, now), 1);
  cluster.DeliverAll();
  next.Tick(now += absl::Milliseconds(100));
  const size_t before = cluster.produced.size();
  Send(next, "adidas", 2);
  std::vector<const Produced*> records = cluster.To("clicks", before);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]->partition, 4);
  EXPECT_EQ(records[0]->record.key, "adidas");
  EXPECT_EQ(Header(records[1]->record, kHeaderSequence), "1");
  // It leaves the map when its retention, counted from when it cooled, has passed.
  next.Tick(now += absl::Seconds(39));
  EXPECT_EQ(next.Entries().size(), 1u);
  next.Tick(now += absl::Seconds(2));
  EXPECT_TRUE(next.Entries().empty());
}

TEST_F(ResumeTest, AKeyWhosePartitionsHaveNoKnownEndIsNotResumed) {
  const std::string map_json = OldRun();
  absl::StatusOr<LastMap> last = ReadLastMap(map_json, "proxy-1");
  ASSERT_THAT(last, IsOk());
  Watermarks hw = cluster.HighWatermarks(WatermarksNeeded(*last));
  hw.erase(hw.begin());
  ResumePlan plan = PlanResume(*last, hw, now, options.cooled_retention);
  EXPECT_TRUE(plan.layouts.empty());
  EXPECT_EQ(plan.unresumable, 1);
}

TEST_F(ResumeTest, AnotherInstancesMapOrNoMapIsRefused) {
  const std::string map_json = OldRun();
  EXPECT_THAT(ReadLastMap(map_json, "proxy-2"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ReadLastMap("{}", "proxy-1"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace saltproxy
