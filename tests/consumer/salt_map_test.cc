#include "saltproxy/salt_map.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "consumer/map_builder.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::MapJson;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

KeyLayout Salted(std::string key, uint64_t epoch, std::vector<int32_t> partitions,
                 int64_t since_seq = 0, std::vector<CutOverPoint> cutover = {}) {
  KeyLayout l;
  l.instance = "proxy-1";
  l.topic = "clicks";
  l.key = std::move(key);
  l.action = "salted";
  l.destination = "clicks";
  l.partitions = std::move(partitions);
  l.epoch = epoch;
  l.since_seq = since_seq;
  l.cutover = std::move(cutover);
  return l;
}

TEST(SaltMapHistoryTest, KeepsEveryLayoutOfAKeyAcrossMaps) {
  SaltMapHistory history;
  std::string error;
  ASSERT_TRUE(history.Apply(MapJson("proxy-1", 1, {Salted("a", 1, {3, 7}, 0, {{"clicks", 3, 41}})}),
                            &error))
      << error;
  KeyLayout rerouted = Salted("a", 4, {0, 1}, 120, {{"clicks", 3, 90}, {"clicks", 7, 88}});
  rerouted.action = "rerouted";
  rerouted.destination = "clicks.hot";
  ASSERT_TRUE(history.Apply(MapJson("proxy-1", 4, {rerouted, Salted("b", 3, {1, 2})}), &error));

  std::vector<const KeyLayout*> layouts = history.Layouts("clicks", "a");
  ASSERT_EQ(layouts.size(), 2u);
  EXPECT_EQ(layouts[0]->epoch, 1u);
  EXPECT_THAT(layouts[0]->partitions, ElementsAre(3, 7));
  EXPECT_EQ(layouts[1]->destination, "clicks.hot");
  EXPECT_EQ(layouts[1]->since_seq, 120);
  ASSERT_EQ(layouts[1]->cutover.size(), 2u);
  EXPECT_EQ(layouts[1]->cutover[1].partition, 7);
  EXPECT_EQ(layouts[1]->cutover[1].max_offset, 88);

  ASSERT_NE(history.Find("proxy-1", 4), nullptr);
  EXPECT_EQ(history.Find("proxy-1", 4)->key, "a");
  EXPECT_EQ(history.Find("proxy-2", 4), nullptr);
  EXPECT_EQ(history.LayoutAt("clicks", "a", 3)->epoch, 1u);
  EXPECT_EQ(history.LayoutAt("clicks", "a", 9)->epoch, 4u);
  EXPECT_EQ(history.LayoutAt("clicks", "b", 2), nullptr);  // on its default partition then
  EXPECT_EQ(history.LatestEpoch("proxy-1"), 4u);
  EXPECT_EQ(history.size(), 3u);
}

TEST(SaltMapHistoryTest, KeysThatAreNotUtf8ComeInBase64) {
  SaltMapHistory history;
  std::string error;
  ASSERT_TRUE(history.Apply(R"({"epoch":2,"instance":"p","topics":{"t":{"keys":[
      {"key_base64":"/wA=","action":"salted","destination":"t","salts":2,"partitions":[1,2],
       "epoch":2,"since_seq":0,"cutover":[]}]}}})",
                            &error))
      << error;
  ASSERT_EQ(history.Layouts("t", std::string("\xff\0", 2)).size(), 1u);
}

// What a restarted proxy reads back from the control topic: the map as it is, with the fields
// people read (when the key turned hot, when the layout took effect, whether it was resumed).
TEST(ParseSaltMapTest, GivesTheMapAsPublished) {
  PublishedSaltMap map;
  std::string error;
  ASSERT_TRUE(ParseSaltMap(R"({"epoch":9,"instance":"p","topics":{"t":{"keys":[
      {"key":"a","action":"rerouted","destination":"t.hot","salts":2,"partitions":[1,0],
       "epoch":7,"since_seq":12,"cutover":[{"topic":"t","partition":3,"max_offset":40}],
       "rate_rps":50.5,"hot_since":"2026-11-24T22:09:17.351Z",
       "changed_at":"2026-11-24T22:10:00Z","resumed":true},
      {"key":"b","action":"cooled","destination":"t","salts":1,"partitions":[5],
       "epoch":9,"since_seq":3,"cutover":[]}]}}})",
                           &map, &error))
      << error;
  EXPECT_EQ(map.instance, "p");
  EXPECT_EQ(map.epoch, 9u);
  ASSERT_EQ(map.layouts.size(), 2u);
  const KeyLayout& a = map.layouts[0];
  EXPECT_EQ(a.topic, "t");
  EXPECT_EQ(a.action, "rerouted");
  EXPECT_THAT(a.partitions, ElementsAre(1, 0));
  EXPECT_EQ(a.since_seq, 12);
  ASSERT_EQ(a.cutover.size(), 1u);
  EXPECT_EQ(a.cutover[0].max_offset, 40);
  EXPECT_EQ(a.hot_since, "2026-11-24T22:09:17.351Z");
  EXPECT_EQ(a.changed_at, "2026-11-24T22:10:00Z");
  EXPECT_TRUE(a.resumed);
  EXPECT_EQ(map.layouts[1].changed_at, "");
  EXPECT_FALSE(map.layouts[1].resumed);
  EXPECT_FALSE(ParseSaltMap(R"({"epoch":1})", &map, &error));
  EXPECT_THAT(error, HasSubstr("instance"));
  EXPECT_EQ(map.instance, "p") << "a failed parse changed the map";
}

TEST(SaltMapHistoryTest, WhatIsNotAMapIsRefusedAndChangesNothing) {
  SaltMapHistory history;
  std::string error;
  EXPECT_FALSE(history.Apply("{not json", &error));
  EXPECT_THAT(error, HasSubstr("not a salt map"));
  EXPECT_FALSE(history.Apply(R"({"epoch":1,"instance":"p","topics":{"t":{"keys":[
      {"key":"a","action":"salted","destination":"t","partitions":[1],"epoch":1,"since_seq":0},
      {"key":"b","action":"salted","destination":"t","epoch":1,"since_seq":0}]}}})",
                             &error));
  EXPECT_THAT(error, HasSubstr("partitions"));
  EXPECT_EQ(history.size(), 0u);
  EXPECT_EQ(history.updates(), 0u);
}

TEST(SaltMapHistoryTest, ALayoutOnceKnownDoesNotChange) {
  SaltMapHistory history;
  std::string error;
  ASSERT_TRUE(history.Apply(MapJson("p", 1, {Salted("a", 1, {3, 7})}), &error));
  ASSERT_TRUE(history.Apply(MapJson("p", 1, {Salted("a", 1, {5, 6})}), &error));
  EXPECT_THAT(history.Find("p", 1)->partitions, ElementsAre(3, 7));
}

TEST(SaltMapHistoryTest, MemoryIsBoundedByForgettingTheOldestEpochs) {
  SaltMapHistory history(/*max_layouts=*/3);
  std::string error;
  for (uint64_t e = 1; e <= 5; ++e) {
    ASSERT_TRUE(history.Apply(MapJson("p", e, {Salted("k" + std::to_string(e), e, {1})}), &error));
  }
  EXPECT_EQ(history.size(), 3u);
  EXPECT_EQ(history.Find("p", 2), nullptr);
  EXPECT_NE(history.Find("p", 3), nullptr);
  EXPECT_TRUE(history.Layouts("clicks", "k1").empty());
}

TEST(SaltMapHistoryTest, ForgettingACooledLayoutForgetsThatTheKeyCooled) {
  SaltMapHistory history(/*max_layouts=*/2);
  std::string error;
  KeyLayout cooled = Salted("a", 1, {3});
  cooled.action = "cooled";
  ASSERT_TRUE(history.Apply(MapJson("p", 1, {cooled}), &error));
  const std::string id = std::string("clicks") + '\0' + "a";
  EXPECT_TRUE(history.HasCooled(id));
  ASSERT_TRUE(history.Apply(MapJson("p", 3, {Salted("b", 2, {1}), Salted("c", 3, {1})}), &error));
  EXPECT_FALSE(history.HasCooled(id));
}

}  // namespace
}  // namespace saltproxy
