// The HTTP API: health and readiness probes, Prometheus metrics, and the produce endpoints
// (Confluent REST Proxy's v2 and v3 shapes, and NDJSON bulk), in front of the router.
//
//   GET  /healthz                 200 while the process runs
//   GET  /readyz                  200 unless the upstream cluster is unreachable (not merely
//                                 slow; proxy/forward/reachability.h), else 503
//   GET  /metrics                 Prometheus text format
//   POST /topics/{topic}          v2: {"records":[{"key":…,"value":…,"partition":…}]}
//   POST /topics/{topic}/partitions/{partition}   the same, every record to that partition
//   GET  /v3/clusters[/{cluster_id}]              the upstream cluster, with its id (503 with
//                                                 Retry-After until the cluster first answered)
//   POST /v3/clusters/{id}/topics/{topic}/records one v3 record; chunked: a stream of them
//   POST /v3/clusters/{id}/topics/{topic}/records:batch   {"entries":[…]} → 207
//   POST /bulk/topics/{topic}     NDJSON: one record a line in, one result a line out
//
// Idempotency-Key (whole requests): a retry within http.idempotency_window gets the first
// answer. ?routing=true or Prefer: saltproxy-routing adds to each result what the router did
// with the key.
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
  // The upstream cluster's id (empty while unknown), for v3's cluster resources.
  using ClusterId = std::function<std::string()>;

  ApiHandler(const HttpConfig& config, RecordSink& sink, Metrics& metrics, ReadyCheck ready,
             ClusterId cluster_id = nullptr);

  // Adds a GET (or POST) endpoint (e.g. /hotkeys, /saltmap, /admin/reload) served by another
  // module. Call before the server starts: the table is read without a lock afterwards.
  void AddGetRoute(std::string path, std::string route_name, GetRoute route);
  void AddPostRoute(std::string path, std::string route_name, GetRoute route);

  absl::string_view Route(const HttpRequest& request) const override;
  void Handle(HttpRequest&& request, Responder respond) override;
  bool IsStream(const HttpRequest& header) const override;
  void OpenStream(const HttpRequest& header,
                  absl::AnyInvocable<void(StreamOpening)> done) override;

 private:
  // /v3/clusters/{cluster_id}/topics/{topic}/records[:batch], split.
  struct V3Target {
    std::string cluster_id;
    std::string topic;
    bool batch = false;
  };
  static std::optional<V3Target> ParseV3Records(absl::string_view path);
  std::string CurrentClusterId() const;
  // A whole-request error when `request` cannot go to `target` (unknown cluster, bad name).
  std::optional<HttpResponse> CheckV3Target(const HttpRequest& request,
                                            const V3Target& target) const;
  void V3Clusters(const HttpRequest& request, absl::string_view path, Responder respond);
  void ProduceV3(HttpRequest&& request, V3Target target, bool routing, Responder respond);
  // The request carries an Idempotency-Key: its answer is remembered.
  static bool Recorded(const HttpRequest& request);
  // Idempotency-Key: true when the cache answers (a replay, a wait, a conflict); otherwise
  // `respond` now records its answer for the key.
  bool ClaimIdempotency(const HttpRequest& request, Responder& respond);

  // `partition`: from /topics/{topic}/partitions/{partition}; `routing`: the client asked to be
  // told what the router did (?routing=true or Prefer: saltproxy-routing).
  // `answer_type`: the negotiated Content-Type of the answer (static storage).
  void Produce(HttpRequest&& request, std::string topic, std::optional<int32_t> partition,
               bool routing, absl::string_view answer_type, Responder respond);

  const HttpConfig config_;
  RecordSink& sink_;
  Metrics& metrics_;
  ReadyCheck ready_;
  ClusterId cluster_id_;
  IdempotencyCache idempotency_;
  struct Extra {
    std::string route_name;
    GetRoute route;
    bool post = false;
  };
  std::map<std::string, Extra, std::less<>> extra_routes_;
};

}  // namespace saltproxy
