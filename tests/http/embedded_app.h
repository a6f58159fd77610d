// Starts the whole proxy in-process in front of librdkafka's mock cluster, for the HTTP tests:
// topic "orders" (4 partitions), and `http_yaml` added to the http section.
//
//   std::unique_ptr<App> app = StartEmbeddedApp("max_in_flight_requests: 1");
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "testing/http_client.h"

namespace saltproxy::testing {

inline std::unique_ptr<App> StartEmbeddedApp(const std::string& http_yaml = "") {
  absl::StatusOr<Config> config = ParseConfig(absl::StrCat(R"(
instance_id: http-test
log_level: error
http:
  listen: 127.0.0.1:0
)", http_yaml.empty() ? "" : absl::StrCat("  ", http_yaml, "\n"), R"(
upstream:
  embedded: true
  embedded_topics:
    - {name: orders, partitions: 4}
)"));
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return nullptr;
  absl::StatusOr<std::unique_ptr<App>> app = App::Start(*config);
  EXPECT_TRUE(app.ok()) << app.status();
  if (!app.ok()) return nullptr;
  // Readiness follows the first metadata answer; wait on it with a deadline.
  HttpClient client((*app)->http_port());
  for (int i = 0; i < 200 && client.Get("/readyz").status != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return std::move(*app);
}

}  // namespace saltproxy::testing
