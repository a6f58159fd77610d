// The HTTP API: health and readiness probes, Prometheus metrics, and the produce endpoint
// (Confluent REST Proxy's v2 shape), in front of the router.
//
//   GET  /healthz                 200 while the process runs
//   GET  /readyz                  200 while the upstream cluster answers, else 503
//   GET  /metrics                 Prometheus text format
//   POST /topics/{topic}          {"records":[{"key":…,"value":…,"partition":…}]}
//   POST /topics/{topic}/partitions/{partition}   the same, every record to that partition
//
// Idempotency-Key: a retry within http.idempotency_window gets the first answer. ?routing=true
// or Prefer: saltproxy-routing adds to each offset what the router did with the key.
//
// A produce request is answered after every record's delivery report, with one entry per
// record in record order: {"offsets":[{"partition":3,"offset":42,"error_code":null,…}]}.
// Whole-request errors use Confluent's codes: {"error_code":40401,"message":"…"}.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "proxy/common/record.h"
#include "proxy/config/config.h"
#include "proxy/http/idempotency.h"
#include "proxy/http/server.h"
#include "proxy/metrics/metrics.h"

namespace saltproxy {

class ApiHandler : public HttpHandler {
 public:
  using ReadyCheck = std::function<bool()>;
  using GetRoute = std::function<HttpResponse(const HttpRequest&)>;

  ApiHandler(const HttpConfig& config, RecordSink& sink, Metrics& metrics, ReadyCheck ready);

  // Adds a GET (or POST) endpoint (e.g. /hotkeys, /saltmap, /admin/reload) served by another
  // module. Call before the server starts: the table is read without a lock afterwards.
  void AddGetRoute(std::string path, std::string route_name, GetRoute route);
  void AddPostRoute(std::string path, std::string route_name, GetRoute route);

  absl::string_view Route(const HttpRequest& request) const override;
  void Handle(HttpRequest&& request, Responder respond) override;

 private:
  // `partition`: from /topics/{topic}/partitions/{partition}; `routing`: the client asked to be
  // told what the router did (?routing=true or Prefer: saltproxy-routing).
  void Produce(HttpRequest&& request, std::string topic, std::optional<int32_t> partition,
               bool routing, Responder respond);

  const HttpConfig config_;
  RecordSink& sink_;
  Metrics& metrics_;
  ReadyCheck ready_;
  IdempotencyCache idempotency_;
  struct Extra {
    std::string route_name;
    GetRoute route;
    bool post = false;
  };
  std::map<std::string, Extra, std::less<>> extra_routes_;
};

}  // namespace saltproxy
