// Real clients, pointed at saltproxy's Kafka listener in front of a real broker, used for what a
// produce-only gateway does not serve: a transactional producer, a consumer group, a plain fetch
// (and a consumer's first question, the partition's offsets) and an admin call (createTopics).
// Each client must raise an error its user sees, naming the reason where its API shows a
// broker's message, well within a generous deadline (clients that retry a retriable answer wait
// 45 s and more), and saltproxy must count the refusal.
//
// Clients: the Java kafka-clients (Maven Central, compiled by the test), confluent-kafka
// (librdkafka, from PyPI into .cache/python), kcat (librdkafka, Debian), kafkajs (npm, into
// .cache/node) and kafka-go (the Go module proxy, built into .cache/go). kafkajs has no consumer
// without a group, so it has no plain fetch; kafka-go asks no ApiVersions first.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <regex>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "testing/http_client.h"
#include "testing/process.h"
#include "testing/real_kafka.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::IsOk;
using ::saltproxy::testing::RealKafka;
using ::saltproxy::testing::Shell;

// Generous on purpose: the clients answer in about a second; a client that retries instead
// waits for its own timeout (the scripts' limit is 45 s), which this catches without timing
// anything finely on a loaded machine.
constexpr int64_t kDeadlineMs = 30'000;

const std::string kSource = SALTPROXY_SOURCE_DIR;

// The clients, installed once per binary as the other e2e tests install theirs.
struct Clients {
  std::string java_classpath;  // kafka-clients' jars and the compiled UnservedUse
  std::string python;          // a venv's python with confluent-kafka
  std::string node_path;       // kafkajs' node_modules
  std::string kafka_go;        // the built tests/e2e/go program
  std::string error;           // why setting them up failed, if it did
};

const Clients& SetUpClients() {
  static const Clients clients = [] {
    Clients c;
    auto [rc, classpath] =
        Shell(absl::StrCat("bash ", kSource, "/tests/kafka/broker.sh classpath"));
    if (rc != 0) return c.error = classpath, c;
    while (!classpath.empty() && classpath.back() == '\n') classpath.pop_back();
    classpath = classpath.substr(classpath.find_last_of('\n') + 1);
    const std::string classes = ::testing::TempDir() + "/saltproxy-java-unserved";
    auto [javac_rc, javac_out] =
        Shell(absl::StrCat("mkdir -p ", classes, " && javac -cp '", classpath, "' -d ", classes,
                           " ", kSource, "/tests/e2e/java/UnservedUse.java"));
    if (javac_rc != 0) return c.error = javac_out, c;
    c.java_classpath = absl::StrCat(classpath, ":", classes);

    const std::string venv = kSource + "/.cache/python";
    auto [pip_rc, pip_out] = Shell(absl::StrCat(
        "test -f ", venv, "/.complete || { python3 -m venv ", venv, " && ", venv,
        "/bin/pip install -q --disable-pip-version-check confluent-kafka==2.16.2 && touch ", venv,
        "/.complete; }"));
    if (pip_rc != 0) return c.error = pip_out, c;
    c.python = venv + "/bin/python";

    const std::string modules = kSource + "/.cache/node";
    auto [npm_rc, npm_out] = Shell(absl::StrCat("test -d ", modules,
                                                "/node_modules/kafkajs || npm install --prefix ",
                                                modules, " --no-audit --no-fund kafkajs@2.2.4"));
    if (npm_rc != 0) return c.error = npm_out, c;
    c.node_path = modules + "/node_modules";

    // Go from PATH, else where this kind of machine keeps it; never a toolchain download.
    c.kafka_go = kSource + "/.cache/go/kafka-go-unserved";
    auto [go_rc, go_out] = Shell(absl::StrCat(
        "cd ", kSource, "/tests/e2e/go && GOTOOLCHAIN=local \"$(command -v go || echo ",
        "/usr/local/go/bin/go)\" build -o ", c.kafka_go, " ."));
    if (go_rc != 0) return c.error = go_out, c;
    return c;
  }();
  return clients;
}

enum class Client { kJava, kConfluentKafka, kKcat, kKafkajs, kKafkaGo };

struct Case {
  Client client;
  std::string use;                    // transactions, group, fetch, offsets, admin
  std::vector<std::string> expected;  // what the error the user sees must contain
  std::string counted_api;            // saltproxy_kafka_unserved_requests_total's api label
  std::string name;
};

std::ostream& operator<<(std::ostream& out, const Case& c) { return out << c.name; }

// What a client did: whether it raised an error, after how long, and the error's text.
struct Outcome {
  bool error = false;
  int64_t ms = -1;
  std::string text;
};

// The scripts print "error after N ms: TEXT" or "no error after N ms".
Outcome ParseScript(int rc, const std::string& output) {
  Outcome o;
  std::smatch m;
  static const std::regex kLine("(no error|error) after ([0-9]+) ms(: (.*))?");
  if (std::regex_search(output, m, kLine)) {
    o.error = rc == 0 && m[1] == "error";
    o.ms = std::stoll(m[2]);
    o.text = m[4];
  }
  return o;
}

class UnservedApisRealKafkaTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    kafka_ = &RealKafka::Get();
    ASSERT_FALSE(kafka_->bootstrap().empty());
    absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
log_level: warn
http: {listen: 127.0.0.1:0}
kafka: {listen: 127.0.0.1:0}
salting: {control_topic: "", defaults: {strategy: "off"}}
upstream:
  bootstrap_servers: )", kafka_->bootstrap(), "\n"));
    ASSERT_THAT(config, IsOk());
    absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
    ASSERT_THAT(app, IsOk());
    app_ = std::move(*app);
    proxy_ = absl::StrCat("127.0.0.1:", app_->kafka_port());
  }
  void TearDown() override {
    if (app_) app_->Shutdown().IgnoreError();
  }

  Outcome Run(const Case& c, const std::string& topic) {
    const Clients& clients = SetUpClients();
    switch (c.client) {
      case Client::kJava: {
        auto [rc, out] = Shell(absl::StrCat("java -Xmx256m -cp '", clients.java_classpath,
                                            "' UnservedUse ", proxy_, " ", c.use, " ", topic));
        output_ = out;
        return ParseScript(rc, out);
      }
      case Client::kConfluentKafka: {
        auto [rc, out] = Shell(absl::StrCat(clients.python, " ", kSource,
                                            "/tests/e2e/python/unserved_use.py ", proxy_, " ",
                                            c.use, " ", topic));
        output_ = out;
        return ParseScript(rc, out);
      }
      case Client::kKafkajs: {
        auto [rc, out] = Shell(absl::StrCat("NODE_PATH=", clients.node_path, " node ", kSource,
                                            "/tests/e2e/node/unserved_use.js ", proxy_, " ",
                                            c.use, " ", topic));
        output_ = out;
        return ParseScript(rc, out);
      }
      case Client::kKafkaGo: {
        auto [rc, out] = Shell(absl::StrCat(clients.kafka_go, " ", proxy_, " ", c.use, " ", topic));
        output_ = out;
        return ParseScript(rc, out);
      }
      case Client::kKcat: {
        // kcat exits 1 on a consumer error; `timeout` ends one that waits (exit 124). Without
        // -o it starts from the end, which it asks ListOffsets for.
        const std::string args =
            c.use == "group"   ? absl::StrCat("-G saltproxy-e2e-", topic, " ", topic)
            : c.use == "fetch" ? absl::StrCat("-C -t ", topic, " -p 0 -o 0")
                               : absl::StrCat("-C -t ", topic, " -p 0");
        const auto start = std::chrono::steady_clock::now();
        auto [rc, out] = Shell(absl::StrCat("timeout 45 kcat -b ", proxy_, " ", args));
        output_ = out;
        Outcome o;
        o.ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count();
        o.error = rc == 1 && out.find("% ERROR: ") != std::string::npos;
        if (o.error) o.text = out.substr(out.find("% ERROR: ") + 9);
        while (!o.text.empty() && o.text.back() == '\n') o.text.pop_back();
        return o;
      }
    }
    return {};
  }

  double Unserved(const std::string& api) {
    const std::string series = absl::StrCat("saltproxy_kafka_unserved_requests_total{api=\"", api,
                                            "\",outcome=\"refused\"} ");
    const std::string text = HttpClient(app_->http_port()).Get("/metrics").body;
    size_t at = text.find(series);
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size()));
  }

  RealKafka* kafka_ = nullptr;
  std::unique_ptr<App> app_;
  std::string proxy_;
  std::string output_;
};

TEST_P(UnservedApisRealKafkaTest, TheClientRaisesTheRefusalAtOnce) {
  const Case& c = GetParam();
  const Clients& clients = SetUpClients();
  ASSERT_TRUE(clients.error.empty()) << clients.error;
  const std::string topic = absl::StrCat("unserved-", c.name);
  ASSERT_THAT(kafka_->CreateTopic(topic, 1), IsOk());
  const Outcome o = Run(c, topic);
  std::printf("%s: %s after %lld ms: %s\n", c.name.c_str(), o.error ? "error" : "no error",
              static_cast<long long>(o.ms), o.text.c_str());
  ASSERT_TRUE(o.error) << "the client raised no error (it waits or retries):\n" << output_;
  EXPECT_LT(o.ms, kDeadlineMs) << output_;
  for (const std::string& expected : c.expected) {
    EXPECT_NE(o.text.find(expected), std::string::npos)
        << "expected \"" << expected << "\" in the client's error:\n" << output_;
  }
  EXPECT_GE(Unserved(c.counted_api), 1) << "saltproxy did not count the refusal";
}

const char kProduceOnly[] = "saltproxy is a produce-only gateway";

INSTANTIATE_TEST_SUITE_P(
    RealClients, UnservedApisRealKafkaTest,
    ::testing::Values(
        // Java: its exceptions carry saltproxy's message where the client passes it on.
        Case{Client::kJava, "transactions", {"KafkaException", kProduceOnly}, "find_coordinator",
             "java_transactions"},
        Case{Client::kJava, "group", {"GroupAuthorizationException"}, "find_coordinator",
             "java_group"},
        Case{Client::kJava, "fetch", {"TopicAuthorizationException"}, "fetch", "java_fetch"},
        Case{Client::kJava, "offsets", {"TopicAuthorizationException"}, "list_offsets",
             "java_offsets"},
        Case{Client::kJava, "admin", {"ClusterAuthorizationException", kProduceOnly},
             "create_topics", "java_admin"},
        // librdkafka through confluent-kafka: a fetch needs a group.id there, so it meets the
        // group's refusal.
        Case{Client::kConfluentKafka, "transactions", {kProduceOnly, "transactional.id"},
             "find_coordinator", "confluent_kafka_transactions"},
        Case{Client::kConfluentKafka, "group", {"FindCoordinator", kProduceOnly},
             "find_coordinator", "confluent_kafka_group"},
        Case{Client::kConfluentKafka, "fetch", {"FindCoordinator", kProduceOnly},
             "find_coordinator", "confluent_kafka_fetch"},
        Case{Client::kConfluentKafka, "admin", {kProduceOnly}, "create_topics",
             "confluent_kafka_admin"},
        // librdkafka through kcat: a group, a plain fetch from offset 0, one from the end.
        Case{Client::kKcat, "group", {"FindCoordinator", kProduceOnly}, "find_coordinator",
             "kcat_group"},
        Case{Client::kKcat, "fetch", {"Topic authorization failed"}, "fetch", "kcat_fetch"},
        Case{Client::kKcat, "offsets", {"query logical offset", "Topic authorization failed"},
             "list_offsets", "kcat_offsets"},
        // kafkajs shows its own words for a coordinator it cannot find, and the code's name.
        Case{Client::kKafkajs, "transactions", {"KafkaJSGroupCoordinatorNotFound"},
             "find_coordinator", "kafkajs_transactions"},
        Case{Client::kKafkajs, "group", {"KafkaJSGroupCoordinatorNotFound"}, "find_coordinator",
             "kafkajs_group"},
        Case{Client::kKafkajs, "offsets", {"KafkaJSProtocolError", "Not authorized"},
             "list_offsets", "kafkajs_offsets"},
        Case{Client::kKafkajs, "admin", {"Cluster authorization failed"}, "create_topics",
             "kafkajs_admin"},
        // kafka-go: its Reader asks ListOffsets before it fetches; it has no transactional
        // writer, so its transactional step is Client.InitProducerID, which is refused there.
        Case{Client::kKafkaGo, "transactions", {"Transactional ID Authorization Failed"},
             "init_producer_id", "kafka_go_transactions"},
        Case{Client::kKafkaGo, "group", {"Group Authorization Failed"}, "find_coordinator",
             "kafka_go_group"},
        Case{Client::kKafkaGo, "fetch", {"Topic Authorization Failed"}, "list_offsets",
             "kafka_go_fetch"},
        Case{Client::kKafkaGo, "admin", {"Cluster Authorization Failed", kProduceOnly},
             "create_topics", "kafka_go_admin"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
}  // namespace saltproxy
