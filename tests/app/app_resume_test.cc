// What App::Start does when the control topic cannot be read to resume the layouts of a last
// run: it gives up at salting.resume_timeout, says so in the log and in a metric, and serves
// with an empty salt map, as a first start does.
#include "proxy/app.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "testing/http_client.h"
#include "testing/status_matchers.h"

namespace saltproxy {
namespace {

using ::saltproxy::testing::HttpClient;
using ::saltproxy::testing::HttpResult;
using ::saltproxy::testing::IsOk;

TEST(AppResumeTest, AnUnreachableControlTopicIsCountedAndTheProxyStartsWithAnEmptyMap) {
  // Nothing listens on port 1: every connection is refused.
  absl::StatusOr<Config> config = ParseConfig(R"(
instance_id: resume-test
http: {listen: 127.0.0.1:0}
upstream: {bootstrap_servers: 127.0.0.1:1}
salting: {resume_timeout: 1s}
)");
  ASSERT_THAT(config, IsOk());
  absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
  ASSERT_THAT(app, IsOk());
  HttpClient client((*app)->http_port());
  HttpResult metrics = client.Get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find(
                "saltproxy_salt_map_resume_failures_total{reason=\"unreachable\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("saltproxy_salt_map_layouts_resumed_total 0"), std::string::npos);
  HttpResult map = client.Get("/saltmap");
  ASSERT_EQ(map.status, 200);
  EXPECT_NE(map.body.find(R"("topics":{})"), std::string::npos) << map.body;
  (void)(*app)->Shutdown();
}

}  // namespace
}  // namespace saltproxy
