// The assembled proxy: forwarder (and the embedded cluster when configured), router, HTTP API.
// main.cc parses flags and signals; tests start an App in-process the same way.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<App> app, App::Start(config));
//   app->http_port();      // the bound port (config port 0 picks a free one)
//   app->Shutdown();       // stop accepting, finish in-flight requests, flush upstream
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "proxy/config/config.h"

namespace saltproxy {

class App {
 public:
  static absl::StatusOr<std::unique_ptr<App>> Start(const Config& config);
  ~App();

  uint16_t http_port() const;
  // The Kafka listener's bound port, 0 when it is off.
  uint16_t kafka_port() const;
  // The upstream bootstrap servers in use (the embedded cluster's when embedded).
  const std::string& upstream_bootstrap() const;
  // Applies a new configuration without dropping connections: log level and salting policies.
  // A configuration that changes what needs a restart (listen addresses, threads, upstream,
  // instance id, control topic) is refused whole, with the fields named; the running one stays.
  absl::Status Reload(const Config& next);
  // Reloads the file the configuration came from (SIGHUP, POST /admin/reload). An unreadable or
  // invalid file is InvalidArgument/NotFound; what needs a restart is FailedPrecondition.
  absl::Status ReloadFromFile();
  Config config() const;

  // Idempotent. Returns a non-OK status when records were still undelivered at the deadline.
  absl::Status Shutdown();

 public:
  struct Parts;  // The assembled pieces; defined in app.cc.

 private:
  App() = default;
  std::unique_ptr<Parts> parts_;
};

}  // namespace saltproxy
