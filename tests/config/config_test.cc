#include "proxy/config/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(ConfigTest, ExampleFileInConfigFolderIsValid) {
  absl::StatusOr<Config> config =
      LoadConfigFile(std::string(SALTPROXY_SOURCE_DIR) + "/config/saltproxy.yaml");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->instance_id, "saltproxy-1");
  EXPECT_EQ(config->http.listen.host, "127.0.0.1");
  EXPECT_EQ(config->http.listen.port, 8080);
  EXPECT_EQ(config->http.max_body_bytes, 1048576u);
  EXPECT_EQ(config->http.idle_timeout, absl::Seconds(30));
  EXPECT_EQ(config->upstream.max_queue_delay, absl::Seconds(5));
  EXPECT_EQ(config->upstream.bootstrap_servers, "kafka-1:9092,kafka-2:9092,kafka-3:9092");
  ASSERT_EQ(config->upstream.embedded_topics.size(), 1u);
  EXPECT_EQ(config->upstream.embedded_topics[0].partitions, 8);
  EXPECT_TRUE(config->upstream.librdkafka.empty());  // the file lists defaults only
  ASSERT_TRUE(config->kafka.listen.has_value());
  EXPECT_EQ(config->kafka.listen->port, 9092);
  EXPECT_EQ(config->kafka.max_in_flight_per_connection, 16);
}

TEST(ConfigTest, AnUnknownFieldsHintNamesListenEvenWhenItIsAbsent) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nhttp:\n  treads: 2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("unknown field, expected one of listen, threads")));
}

TEST(ConfigTest, UpstreamMayNotBeTheKafkaListenerItself) {
  for (const char* upstream :
       {"127.0.0.1:9092", "localhost:9092", "[::1]:9092", "kafka-1:9093, 127.0.0.1:9092"}) {
    SCOPED_TRACE(upstream);
    EXPECT_THAT(ParseConfig(absl::StrCat("kafka: {listen: 127.0.0.1:9092}\nupstream: "
                                         "{bootstrap_servers: \"", upstream, "\"}\n")),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("saltproxy's own Kafka listener")));
  }
  EXPECT_THAT(ParseConfig("kafka: {listen: 0.0.0.0:9092}\nupstream: {bootstrap_servers: 127.0.0.1:9092}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseConfig("kafka: {listen: 0.0.0.0:9092}\nupstream: {bootstrap_servers: kafka:9092}\n"),
              IsOk());  // a pod listening on every address, in front of the cluster's service
  EXPECT_THAT(ParseConfig("kafka: {listen: 127.0.0.1:9092}\nupstream: {bootstrap_servers: kafka:9092}\n"),
              IsOk());
  EXPECT_THAT(ParseConfig("kafka: {listen: 127.0.0.1:9093}\nupstream: {bootstrap_servers: 127.0.0.1:9092}\n"),
              IsOk());
}

TEST(ConfigTest, KafkaListenerIsOffUnlessConfigured) {
  absl::StatusOr<Config> config = ParseConfig("upstream: {embedded: true}\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_FALSE(config->kafka.listen.has_value());
}

TEST(ConfigTest, SaltingPolicyDefaultsAndPerTopicOverrides) {
  absl::StatusOr<Config> config = ParseConfig(R"(
upstream: {embedded: true}
salting:
  tick: 50ms
  defaults: {strategy: salt, max_salts: 8}
  topics:
    clicks: {min_salts: 4, max_salts_per_share: 3}
    audit: {strategy: "off"}
)");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->salting.tick, absl::Milliseconds(50));
  EXPECT_EQ(config->salting.defaults.strategy, "salt");
  EXPECT_EQ(config->salting.topics.at("clicks").strategy, "salt");  // inherited
  EXPECT_EQ(config->salting.topics.at("clicks").max_salts, 8);       // inherited
  EXPECT_EQ(config->salting.topics.at("clicks").min_salts, 4);
  EXPECT_EQ(config->salting.topics.at("clicks").max_salts_per_share, 3);
  EXPECT_EQ(config->salting.defaults.max_salts_per_share, 2.5);
  EXPECT_EQ(config->salting.topics.at("audit").strategy, "off");
}

TEST(ConfigTest, BadSaltingPolicyNamesTopicAndField) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  topics:\n    clicks:\n"
                          "      strategy: sprinkle\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("salting.topics.clicks.strategy: expected one of salt, reroute")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  defaults:\n"
                          "    min_salts: 4\n    max_salts: 2\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("salting.defaults.max_salts: expected 0")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  defaults:\n"
                          "    hot_topic_pattern: hot\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("{topic}")));
}

TEST(ConfigTest, LayoutsAreResumedAtStartUnlessTurnedOff) {
  absl::StatusOr<Config> config = ParseConfig("upstream: {embedded: true}\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_TRUE(config->salting.resume_layouts);
  EXPECT_EQ(config->salting.resume_timeout, absl::Seconds(10));
  config = ParseConfig(
      "upstream: {embedded: true}\nsalting: {resume_layouts: false, resume_timeout: 2s}\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_FALSE(config->salting.resume_layouts);
  EXPECT_EQ(config->salting.resume_timeout, absl::Seconds(2));
  // Nothing published: the default has nothing to resume, and asking for it is a mistake.
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting: {control_topic: \"\"}\n"), IsOk());
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\n"
                          "salting: {control_topic: \"\", resume_layouts: true}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("salting.resume_layouts: expected false when control_topic")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting: {resume_layouts: maybe}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("salting.resume_layouts")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting: {resume_timeout: 10ms}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("salting.resume_timeout")));
}

TEST(ConfigTest, ATopicCanHaveItsOwnHotAndColdThresholds) {
  absl::StatusOr<Config> config = ParseConfig(R"(
upstream: {embedded: true}
detection: {hot_share: 0.001, hold_down: 10s}
salting:
  topics:
    payments: {hot_rps: 200, cold_ratio: 0.25, hold_down: 1m}
    clicks: {min_salts: 3}
)");
  ASSERT_THAT(config, IsOk());
  const SaltPolicyConfig& payments = config->salting.topics.at("payments");
  EXPECT_EQ(payments.thresholds.hot_rps, 200);
  EXPECT_EQ(payments.thresholds.cold_ratio, 0.25);
  EXPECT_EQ(payments.thresholds.hold_down, absl::Minutes(1));
  EXPECT_FALSE(payments.thresholds.hot_share.has_value());  // detection's, unless set here
  EXPECT_FALSE(config->salting.topics.at("clicks").thresholds.hold_down.has_value());
  // Only per topic: the defaults for every topic are detection's.
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  defaults: {hot_rps: 5}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hot_rps")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  topics:\n"
                          "    payments: {cold_ratio: 3}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("salting.topics.payments.cold_ratio")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  topics:\n"
                          "    payments: {hot_share: 0}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("set one hot threshold")));
}

// detection's thresholds and a topic's are read by the same keys, within the same bounds.
TEST(ConfigTest, DetectionThresholdsAreReadWithinTheBoundsATopicsAre) {
  absl::StatusOr<Config> config = ParseConfig(R"(
upstream: {embedded: true}
detection: {hot_rps: 250, hot_share: 0, hot_min_rps: 7, partition_capacity_rps: 900,
            cold_ratio: 0.3, hold_down: 4s}
)");
  ASSERT_THAT(config, IsOk());
  Thresholds expected;
  expected.hot_rps = 250;
  expected.hot_share = 0;
  expected.hot_min_rps = 7;
  expected.partition_capacity_rps = 900;
  expected.cold_ratio = 0.3;
  expected.hold_down = absl::Seconds(4);
  EXPECT_EQ(config->detection.thresholds, expected);
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\ndetection: {hot_partition_share: 2000}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("detection.hot_partition_share")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nsalting:\n  topics:\n"
                          "    payments: {hot_partition_share: 2000}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("salting.topics.payments.hot_partition_share")));
}

TEST(ConfigTest, DemoFileIsValidAndEmbedded) {
  absl::StatusOr<Config> config =
      LoadConfigFile(std::string(SALTPROXY_SOURCE_DIR) + "/config/demo.yaml");
  ASSERT_THAT(config, IsOk());
  EXPECT_TRUE(config->upstream.embedded);
  EXPECT_EQ(config->http.listen.port, 0);
}

TEST(ConfigTest, DefaultsApplyToAbsentFields) {
  absl::StatusOr<Config> config = ParseConfig("upstream:\n  bootstrap_servers: kafka:9092\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->http.threads, 2);
  EXPECT_EQ(config->http.max_in_flight_requests, 1024);
  EXPECT_EQ(config->upstream.delivery_timeout, absl::Seconds(30));
  EXPECT_EQ(config->upstream.producers, 2);
  EXPECT_EQ(config->log_level, LogLevel::kInfo);
}

TEST(ConfigTest, UpstreamProducersAreReadWithinBounds) {
  absl::StatusOr<Config> one = ParseConfig("upstream: {embedded: true, producers: 1}\n");
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->upstream.producers, 1);
  EXPECT_THAT(ParseConfig("upstream: {embedded: true, producers: 0}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.producers: expected an integer from 1 to 16")));
}

TEST(ConfigTest, UpstreamStatisticsIntervalIsReadAndZeroTurnsThemOff) {
  absl::StatusOr<Config> defaults = ParseConfig("upstream: {embedded: true}\n");
  ASSERT_THAT(defaults, IsOk());
  EXPECT_EQ(defaults->upstream.statistics_interval, absl::Seconds(10));
  absl::StatusOr<Config> off = ParseConfig("upstream: {embedded: true, statistics_interval: 0s}\n");
  ASSERT_THAT(off, IsOk());
  EXPECT_EQ(off->upstream.statistics_interval, absl::ZeroDuration());
  EXPECT_THAT(ParseConfig("upstream: {embedded: true, statistics_interval: -1s}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("upstream.statistics_interval")));
}

TEST(ConfigTest, UpstreamMaxQueueDelayIsReadAndValidated) {
  absl::StatusOr<Config> defaults = ParseConfig("upstream: {embedded: true}\n");
  ASSERT_THAT(defaults, IsOk());
  EXPECT_EQ(defaults->upstream.max_queue_delay, absl::Seconds(5));
  absl::StatusOr<Config> set = ParseConfig("upstream: {embedded: true, max_queue_delay: 2s}\n");
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->upstream.max_queue_delay, absl::Seconds(2));
  absl::StatusOr<Config> off = ParseConfig("upstream: {embedded: true, max_queue_delay: 0s}\n");
  ASSERT_THAT(off, IsOk());
  EXPECT_EQ(off->upstream.max_queue_delay, absl::ZeroDuration());
  // Unset, it stays below a short delivery_timeout.
  absl::StatusOr<Config> short_timeout =
      ParseConfig("upstream: {embedded: true, delivery_timeout: 4s}\n");
  ASSERT_THAT(short_timeout, IsOk());
  EXPECT_EQ(short_timeout->upstream.max_queue_delay, absl::Seconds(2));

  EXPECT_THAT(ParseConfig("upstream: {embedded: true, max_queue_delay: 100ms}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.max_queue_delay: expected 0s (no bound) or at least "
                                 "500ms, got 100ms")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true, delivery_timeout: 10s, "
                          "max_queue_delay: 10s}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.max_queue_delay: must be below delivery_timeout (10s), "
                                 "got 10s")));
  EXPECT_THAT(ParseConfig("upstream: {embedded: true, max_queue_delay: 5}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.max_queue_delay: expected a duration such as 250ms")));
}

TEST(ConfigTest, HttpStreamingAndMemoryLimitsAreRead) {
  absl::StatusOr<Config> defaults = ParseConfig("upstream: {embedded: true}\n");
  ASSERT_THAT(defaults, IsOk());
  EXPECT_EQ(defaults->http.max_in_flight_bytes, 256ull << 20);
  EXPECT_EQ(defaults->http.stream_credit, 1000);
  absl::StatusOr<Config> config = ParseConfig(
      "upstream: {embedded: true}\nhttp: {max_in_flight_bytes: 1048576, stream_credit: 64}\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->http.max_in_flight_bytes, 1048576u);
  EXPECT_EQ(config->http.stream_credit, 64);
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nhttp: {stream_credit: 0}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("http.stream_credit")));
}

TEST(ConfigTest, UnknownFieldIsReportedWithPathLineAndKnownFields) {
  absl::StatusOr<Config> config = ParseConfig(
      "upstream:\n  bootstrap_servers: k:9092\nhttp:\n  listen: 127.0.0.1:1\n  max_body: 5\n",
      "bad.yaml");
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr("bad.yaml:5: http.max_body: unknown field"),
                                     HasSubstr("max_body_bytes"))));
}

TEST(ConfigTest, UnknownTopLevelSectionIsReported) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nhtttp:\n  threads: 2\n", "f.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f.yaml:2: htttp: unknown field")));
}

TEST(ConfigTest, WrongTypeNamesFieldLineExpectedAndGot) {
  absl::StatusOr<Config> config = ParseConfig(
      "upstream:\n  embedded: true\nhttp:\n  max_body_bytes: lots\n", "bad.yaml");
  EXPECT_THAT(config,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad.yaml:4: http.max_body_bytes: expected an integer"),
                             HasSubstr("got \"lots\""))));
}

TEST(ConfigTest, OutOfRangeValueIsRejected) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nhttp: {threads: 0}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("http.threads: expected an integer from 1 to 64, got \"0\"")));
}

TEST(ConfigTest, ListenerBoundsOnPeersAreReadAndTheBudgetFitsAFrame) {
  absl::StatusOr<Config> c = ParseConfig(
      "upstream: {embedded: true}\n"
      "kafka: {max_in_flight_bytes: 2097152, max_frame_bytes: 1048576, frame_timeout: 5s,\n"
      "        max_connections: 10, max_connections_per_address: 0}\n"
      "http: {max_connections: 7, max_connections_per_address: 3}\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kafka.max_in_flight_bytes, 2097152u);
  EXPECT_EQ(c->kafka.frame_timeout, absl::Seconds(5));
  EXPECT_EQ(c->kafka.max_connections, 10);
  EXPECT_EQ(c->kafka.max_connections_per_address, 0);
  EXPECT_EQ(c->http.max_connections, 7);
  EXPECT_EQ(c->http.max_connections_per_address, 3);
  // A budget smaller than a frame could never read a frame of the largest size.
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\n"
                          "kafka: {max_in_flight_bytes: 1048576, max_frame_bytes: 2097152}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("kafka.max_in_flight_bytes: must be at least max_frame_bytes")));
}

TEST(ConfigTest, BadDurationSaysWhatADurationLooksLike) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true, delivery_timeout: 30}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.delivery_timeout: expected a duration such as 250ms")));
}

TEST(ConfigTest, BadBoolAndBadEnumAreRejected) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: yes please}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.embedded: expected true or false")));
  EXPECT_THAT(ParseConfig("log_level: loud\nupstream: {embedded: true}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("log_level: expected one of debug, info, warn, error")));
}

TEST(ConfigTest, MissingBootstrapServersIsRequiredUnlessEmbedded) {
  EXPECT_THAT(ParseConfig("http:\n  threads: 2\n", "f.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.bootstrap_servers: required")));
  EXPECT_THAT(ParseConfig("upstream:\n  embedded: true\n"), IsOk());
}

TEST(ConfigTest, TopicWithoutNameIsRequired) {
  EXPECT_THAT(ParseConfig("upstream:\n  embedded: true\n  embedded_topics:\n    - partitions: 3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstream.embedded_topics[0].name: required")));
}

TEST(ConfigTest, BadListenAddressIsRejected) {
  EXPECT_THAT(ParseConfig("upstream: {embedded: true}\nhttp: {listen: nowhere}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("http.listen: expected host:port, got \"nowhere\"")));
}

TEST(ConfigTest, AllErrorsAreReportedAtOnce) {
  absl::StatusOr<Config> config =
      ParseConfig("http:\n  threads: many\n  colour: blue\nupstream: {}\n", "f.yaml");
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument,
                               AllOf(HasSubstr("http.threads"), HasSubstr("http.colour"),
                                     HasSubstr("upstream.bootstrap_servers"))));
}

TEST(ConfigTest, InvalidYamlSyntaxGivesLine) {
  EXPECT_THAT(ParseConfig("http:\n  threads: [1,\n", "f.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid YAML")));
}

TEST(ConfigTest, TopLevelScalarIsRejected) {
  EXPECT_THAT(ParseConfig("just a string\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a mapping")));
}

TEST(ConfigTest, MissingFileIsReportedWithPathAndReason) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/saltproxy.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("/nonexistent/saltproxy.yaml"),
                             HasSubstr("No such file or directory"))));
}

TEST(ConfigTest, DirectoryIsNotAConfigFile) {
  EXPECT_THAT(LoadConfigFile(::testing::TempDir()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("it is a directory")));
}

TEST(ConfigTest, FileErrorsNameTheFile) {
  std::string path = ::testing::TempDir() + "/saltproxy_config_test.yaml";
  std::ofstream(path) << "upstream:\n  embedded: true\nhttp:\n  threads: -1\n";
  EXPECT_THAT(LoadConfigFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(path + ":4: http.threads: expected an integer")));
  std::filesystem::remove(path);
}

TEST(ConfigTest, LibrdkafkaPropertiesPassThroughAsStrings) {
  absl::StatusOr<Config> config = ParseConfig(
      "upstream:\n  embedded: true\n  librdkafka:\n    linger.ms: 5\n    batch.size: '1000'\n");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->upstream.librdkafka.at("linger.ms"), "5");
  EXPECT_EQ(config->upstream.librdkafka.at("batch.size"), "1000");
}

}  // namespace
}  // namespace saltproxy
