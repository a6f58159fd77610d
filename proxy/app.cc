#include "proxy/app.h"

#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/forward/embedded_cluster.h"
#include "proxy/forward/forwarder.h"
#include "proxy/http/api.h"
#include "proxy/http/server.h"
#include "proxy/metrics/metrics.h"
#include "proxy/salting/router.h"

namespace saltproxy {

// Members are declared in start-up order and so destroyed in the reverse: the HTTP server
// goes before the router and the forwarder it calls, the forwarder before the cluster it uses.
struct App::Parts {
  Config config;
  Metrics metrics;
  std::unique_ptr<EmbeddedCluster> embedded;
  std::unique_ptr<Forwarder> forwarder;
  std::unique_ptr<Router> router;
  std::unique_ptr<ApiHandler> api;
  std::unique_ptr<HttpServer> http;
  bool shut_down = false;
};

absl::StatusOr<std::unique_ptr<App>> App::Start(const Config& config) {
  std::unique_ptr<App> app(new App());
  app->parts_ = std::make_unique<Parts>();
  Parts& p = *app->parts_;
  p.config = config;
  SetLogLevel(config.log_level);

  UpstreamConfig upstream = config.upstream;
  if (upstream.embedded) {
    absl::StatusOr<std::unique_ptr<EmbeddedCluster>> cluster =
        EmbeddedCluster::Start(upstream.embedded_brokers, upstream.embedded_topics);
    if (!cluster.ok()) return cluster.status();
    p.embedded = std::move(*cluster);
    upstream.bootstrap_servers = p.embedded->bootstrap_servers();
  }
  absl::StatusOr<std::unique_ptr<Forwarder>> forwarder = Forwarder::Create(upstream, p.metrics, /*cache_only_lookups=*/upstream.embedded);
  if (!forwarder.ok()) return forwarder.status();
  p.forwarder = std::move(*forwarder);
  RouterOptions router_options;
  router_options.instance_id = config.instance_id;
  p.router = std::make_unique<Router>(*p.forwarder, nullptr, router_options);
  Forwarder* fw = p.forwarder.get();
  p.api = std::make_unique<ApiHandler>(config.http, *p.router, p.metrics,
                                       [fw] { return fw->Ready(); });
  p.http = std::make_unique<HttpServer>(config.http, *p.api, p.metrics);
  if (absl::Status s = p.http->Start(); !s.ok()) return s;
  LogEvent(LogLevel::kInfo, "saltproxy_started",
           {{"instance", config.instance_id},
            {"http_port", absl::StrCat(p.http->port())},
            {"upstream", upstream.bootstrap_servers},
            {"embedded", upstream.embedded ? "true" : "false"}});
  return app;
}

App::~App() {
  if (parts_) Shutdown().IgnoreError();
}

uint16_t App::http_port() const { return parts_->http->port(); }

const std::string& App::upstream_bootstrap() const {
  return parts_->forwarder->bootstrap_servers();
}

absl::Status App::Shutdown() {
  Parts& p = *parts_;
  if (p.shut_down) return absl::OkStatus();
  p.shut_down = true;
  absl::Time deadline = absl::Now() + p.config.shutdown_timeout;
  LogEvent(LogLevel::kInfo, "shutdown_started");
  // 1. Stop accepting; requests in flight are answered once their records are delivered.
  p.http->Shutdown(p.config.shutdown_timeout);
  // 2. Flush what is still queued upstream (records of requests that were not waited for).
  absl::Status flushed = p.forwarder->Flush(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  p.forwarder.reset();
  LogEvent(LogLevel::kInfo, "shutdown_finished", {{"flushed", flushed.ok() ? "true" : "false"}});
  return flushed;
}

}  // namespace saltproxy
