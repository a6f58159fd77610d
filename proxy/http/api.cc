#include "proxy/http/api.h"

#include <boost/json.hpp>

#include <atomic>
#include <mutex>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "proxy/common/log.h"
#include "proxy/common/strings.h"
#include "proxy/http/produce_request.h"

namespace saltproxy {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

constexpr absl::string_view kTopicsPrefix = "/topics/";
constexpr absl::string_view kV2ResponseType = "application/vnd.kafka.v2+json";

absl::string_view PathOf(const HttpRequest& request) {
  absl::string_view target = Sv(request.target());
  return target.substr(0, target.find('?'));
}

// Topic names are [a-zA-Z0-9._-]{1,249} (Kafka's own rule); anything else cannot exist.
bool ValidTopicName(absl::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

HttpResponse Error(const HttpRequest& request, int status, int code, absl::string_view message) {
  HttpResponse response = JsonError(request.version(), status, code, message);
  response.keep_alive(request.keep_alive());
  return response;
}

HttpResponse MethodNotAllowed(const HttpRequest& request, absl::string_view allow) {
  HttpResponse response =
      Error(request, 405, 405,
            absl::StrCat("method ", Sv(request.method_string()), " is not allowed on ",
                         PathOf(request), "; allowed: ", allow));
  response.set(http::field::allow, std::string(allow));
  return response;
}

// Collects the delivery reports of one produce request and answers once the last one is in.
class ProduceBatch {
 public:
  ProduceBatch(size_t records, unsigned version, bool keep_alive, bool routing,
               Responder respond)
      : results_(records), remaining_(static_cast<int>(records)), version_(version),
        keep_alive_(keep_alive), routing_(routing), respond_(std::move(respond)) {}

  // Answers `response` instead of the offsets; only before any record was queued.
  void Abort(HttpResponse&& response) { respond_(std::move(response)); }

  void Complete(size_t index, DeliveryReport report) {
    results_[index] = std::move(report);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) Answer();
  }

 private:
  void Answer() {
    json::array offsets;
    offsets.reserve(results_.size());
    for (const DeliveryReport& r : results_) {
      json::object entry;
      if (r.status.ok()) {
        entry["partition"] = r.partition;
        entry["offset"] = r.offset;
        entry["error_code"] = nullptr;
        entry["error"] = nullptr;
      } else {
        entry["partition"] = nullptr;
        entry["offset"] = nullptr;
        // Confluent's codes: 50003 when a retry may succeed, 50002 when it will not.
        bool retriable = absl::IsResourceExhausted(r.status) || absl::IsUnavailable(r.status) ||
                         absl::IsDeadlineExceeded(r.status);
        entry["error_code"] = retriable ? 50003 : 50002;
        entry["error"] = std::string(r.status.message());
      }
      if (routing_ && r.status.ok()) {
        static constexpr const char* kActions[] = {"passed", "client_partition", "salted",
                                                   "rerouted"};
        json::object route{{"action", kActions[static_cast<int>(r.action)]},
                           {"topic", r.topic},
                           {"partition", r.partition}};
        if (r.salt >= 0) route["salt"] = r.salt;
        if (r.epoch > 0) route["epoch"] = r.epoch;
        entry["routing"] = std::move(route);
      }
      offsets.push_back(std::move(entry));
    }
    json::object body;
    body["key_schema_id"] = nullptr;
    body["value_schema_id"] = nullptr;
    body["offsets"] = std::move(offsets);
    HttpResponse response{http::status::ok, version_};
    response.set(http::field::content_type, std::string(kV2ResponseType));
    response.keep_alive(keep_alive_);
    response.body() = json::serialize(body);
    response.prepare_payload();
    respond_(std::move(response));
  }

  std::vector<DeliveryReport> results_;
  std::atomic<int> remaining_;
  unsigned version_;
  bool keep_alive_;
  bool routing_;
  Responder respond_;
};

}  // namespace

ApiHandler::ApiHandler(const HttpConfig& config, RecordSink& sink, Metrics& metrics,
                       ReadyCheck ready)
    : config_(config),
      sink_(sink),
      metrics_(metrics),
      ready_(std::move(ready)),
      idempotency_(config.idempotency_window, static_cast<size_t>(config.idempotency_keys)) {}

void ApiHandler::AddGetRoute(std::string path, std::string route_name, GetRoute route) {
  extra_routes_[std::move(path)] = Extra{std::move(route_name), std::move(route), false};
}

void ApiHandler::AddPostRoute(std::string path, std::string route_name, GetRoute route) {
  extra_routes_[std::move(path)] = Extra{std::move(route_name), std::move(route), true};
}

absl::string_view ApiHandler::Route(const HttpRequest& request) const {
  absl::string_view path = PathOf(request);
  if (absl::StartsWith(path, kTopicsPrefix)) return "produce";
  if (path == "/healthz") return "healthz";
  if (path == "/readyz") return "readyz";
  if (path == "/metrics") return "metrics";
  if (auto it = extra_routes_.find(path); it != extra_routes_.end()) return it->second.route_name;
  return "other";
}

void ApiHandler::Handle(HttpRequest&& request, Responder respond) {
  absl::string_view path = PathOf(request);
  const bool is_get = request.method() == http::verb::get || request.method() == http::verb::head;
  if (path == "/healthz") {
    if (!is_get) return respond(MethodNotAllowed(request, "GET"));
    return respond(MakeResponse(request, 200, "application/json", R"({"status":"ok"})"));
  }
  if (path == "/readyz") {
    if (!is_get) return respond(MethodNotAllowed(request, "GET"));
    if (ready_()) {
      return respond(MakeResponse(request, 200, "application/json", R"({"status":"ready"})"));
    }
    return respond(Error(request, 503, 503, "the upstream Kafka cluster is not answering"));
  }
  if (path == "/metrics") {
    if (!is_get) return respond(MethodNotAllowed(request, "GET"));
    return respond(MakeResponse(request, 200, "text/plain; version=0.0.4; charset=utf-8",
                                metrics_.Serialize()));
  }
  if (auto it = extra_routes_.find(path); it != extra_routes_.end()) {
    if (it->second.post && request.method() != http::verb::post) {
      return respond(MethodNotAllowed(request, "POST"));
    }
    if (!it->second.post && !is_get) return respond(MethodNotAllowed(request, "GET"));
    HttpResponse response = it->second.route(request);
    response.keep_alive(request.keep_alive());
    return respond(std::move(response));
  }
  if (absl::StartsWith(path, kTopicsPrefix)) {
    absl::string_view rest = path.substr(kTopicsPrefix.size());
    absl::string_view topic = rest.substr(0, rest.find('/'));
    std::optional<int32_t> partition;
    if (topic.size() < rest.size()) {
      absl::string_view tail = rest.substr(topic.size());
      int32_t p = -1;
      if (!absl::StartsWith(tail, "/partitions/") ||
          !absl::SimpleAtoi(tail.substr(12), &p) || p < 0) {
        return respond(Error(request, 404, 404, absl::StrCat("no such endpoint: ", path)));
      }
      partition = p;
    }
    if (request.method() != http::verb::post) return respond(MethodNotAllowed(request, "POST"));
    if (!ValidTopicName(topic)) {
      return respond(Error(request, 404, 40401, absl::StrCat("topic not found: ", topic,
                                                             " is not a valid topic name")));
    }
    absl::string_view target = Sv(request.target());
    const bool routing =
        absl::StrContains(target.substr(std::min(target.size(), target.find('?'))),
                          "routing=true") ||
        absl::StrContains(Sv(request["Prefer"]), "saltproxy-routing");
    std::string key(Sv(request["Idempotency-Key"]));
    if (!key.empty()) {
      const uint64_t hash = absl::HashOf(std::string_view(request.target()),
                                         std::string_view(request.body()));
      if (idempotency_.Claim(key, hash, respond, absl::Now(), request.version())) return;
      respond = idempotency_.Recording(key, std::move(respond));
    }
    return Produce(std::move(request), std::string(topic), partition, routing,
                   std::move(respond));
  }
  respond(Error(request, 404, 404, absl::StrCat("no such endpoint: ", path)));
}

void ApiHandler::Produce(HttpRequest&& request, std::string topic,
                         std::optional<int32_t> partition, bool routing, Responder respond) {
  absl::StatusOr<EmbeddedFormat> format =
      FormatFromContentType(Sv(request[http::field::content_type]));
  if (!format.ok()) {
    ProduceError e = ToProduceError(format.status());
    return respond(Error(request, e.http_status, e.error_code, format.status().message()));
  }
  absl::StatusOr<std::vector<Record>> records =
      ParseProduceBody(request.body(), *format, topic, config_.max_records_per_request);
  if (!records.ok()) {
    ProduceError e = ToProduceError(records.status());
    return respond(Error(request, e.http_status, e.error_code, records.status().message()));
  }
  if (partition) {
    for (Record& r : *records) r.partition = *partition;
  }
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  auto shared_records = std::make_shared<std::vector<Record>>(std::move(*records));
  auto shared_respond = std::make_shared<Responder>(std::move(respond));
  // The lookup answers from cached metadata when it can; an unknown topic gets a 404 at once.
  sink_.LookupTopic(topic, [this, topic, version, keep_alive, routing, shared_records,
                            shared_respond](absl::StatusOr<int32_t> partitions) {
    Responder respond = std::move(*shared_respond);
    auto error = [&](int status, int code, absl::string_view message) {
      HttpResponse response = JsonError(version, status, code, message);
      response.keep_alive(keep_alive);
      respond(std::move(response));
    };
    if (!partitions.ok()) {
      if (absl::IsNotFound(partitions.status())) {
        return error(404, 40401, absl::StrCat("topic not found: ", topic));
      }
      return error(503, 50301, partitions.status().message());
    }
    std::vector<Record>& batch = *shared_records;
    for (const Record& r : batch) {
      if (r.partition >= *partitions) {
        return error(404, 40402, absl::StrCat("partition not found: topic ", topic, " has ",
                                              *partitions, " partitions, not ", r.partition + 1));
      }
    }
    auto collector = std::make_shared<ProduceBatch>(batch.size(), version, keep_alive, routing,
                                                    std::move(respond));
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::Status queued = sink_.Submit(
          std::move(batch[i]),
          [collector, i](const DeliveryReport& report) { collector->Complete(i, report); });
      if (!queued.ok() && i == 0 && absl::IsResourceExhausted(queued)) {
        // Nothing of this request is queued: push back on the whole of it.
        HttpResponse response = JsonError(version, 429, 429, queued.message());
        response.set(http::field::retry_after, "1");
        response.keep_alive(keep_alive);
        return collector->Abort(std::move(response));
      }
      if (!queued.ok()) {
        DeliveryReport failed;
        failed.status = queued;
        collector->Complete(i, std::move(failed));
      }
    }
  });
}

}  // namespace saltproxy
