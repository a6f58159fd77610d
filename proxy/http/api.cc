#include "proxy/http/api.h"

#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/common/log.h"
#include "proxy/common/retry_after.h"
#include "proxy/common/strings.h"
#include "proxy/http/json_text.h"
#include "proxy/http/produce_request.h"
#include "proxy/http/produce_result.h"
#include "proxy/http/streams.h"

namespace saltproxy {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

constexpr absl::string_view kTopicsPrefix = "/topics/";
constexpr char kV2ResponseType[] = "application/vnd.kafka.v2+json";
constexpr absl::string_view kV3Prefix = "/v3/clusters";
constexpr absl::string_view kBulkPrefix = "/bulk/topics/";

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

// The media types each REST endpoint answers in, the server's preference first. v2 as
// Confluent's v2 resources produce them (the versioned type, then the less specific ones).
constexpr absl::string_view kV2Types[] = {kV2ResponseType, "application/vnd.kafka+json",
                                          "application/json"};
constexpr absl::string_view kV3Types[] = {"application/json"};
constexpr absl::string_view kBulkTypes[] = {"application/x-ndjson", "application/jsonl"};

// HTTP content negotiation (RFC 9110, Accept): the offered type the client weighs highest,
// ties going to the server's order; each offered type takes the q of the most specific range
// that matches it (type/subtype over type/* over */*), and q=0 refuses it. No Accept: the
// first. nullopt: nothing offered is acceptable (406).
template <size_t N>
std::optional<absl::string_view> Negotiate(absl::string_view accept,
                                           const absl::string_view (&offered)[N]) {
  if (absl::StripAsciiWhitespace(accept).empty()) return offered[0];
  std::optional<absl::string_view> best;
  double best_q = 0;
  for (absl::string_view type : offered) {
    int specificity = -1;
    double q = 0;
    for (absl::string_view range : absl::StrSplit(accept, ',')) {
      std::vector<absl::string_view> params = absl::StrSplit(range, ';');
      absl::string_view media = absl::StripAsciiWhitespace(params[0]);
      double range_q = 1;
      for (size_t i = 1; i < params.size(); ++i) {
        absl::string_view param = absl::StripAsciiWhitespace(params[i]);
        if (absl::ConsumePrefix(&param, "q=") &&
            !absl::SimpleAtod(absl::StripAsciiWhitespace(param), &range_q)) {
          range_q = 0;
        }
      }
      int s = -1;
      if (media == "*/*") {
        s = 0;
      } else if (absl::EndsWith(media, "/*") &&
                 absl::StartsWithIgnoreCase(type, media.substr(0, media.size() - 1))) {
        s = 1;
      } else if (absl::EqualsIgnoreCase(media, type)) {
        s = 2;
      }
      if (s > specificity) {
        specificity = s;
        q = range_q;
      }
    }
    if (specificity >= 0 && q > best_q) {
      best = type;
      best_q = q;
    }
  }
  return best;
}

template <size_t N>
HttpResponse NotAcceptable(unsigned version, bool keep_alive,
                           const absl::string_view (&offered)[N]) {
  HttpResponse response = JsonError(
      version, 406, 406,
      absl::StrCat("Accept names no type this endpoint answers in; it answers ",
                   absl::StrJoin(offered, ", ")));
  response.keep_alive(keep_alive);
  return response;
}

// ?routing=true or Prefer: saltproxy-routing; strict clients never see the routing fields.
bool WantsRouting(const HttpRequest& request) {
  absl::string_view target = Sv(request.target());
  const size_t q = target.find('?');
  return (q != absl::string_view::npos &&
          absl::StrContains(target.substr(q), "routing=true")) ||
         absl::StrContains(Sv(request["Prefer"]), "saltproxy-routing");
}

bool QueryHas(const HttpRequest& request, absl::string_view param) {
  absl::string_view target = Sv(request.target());
  const size_t q = target.find('?');
  return q != absl::string_view::npos && absl::StrContains(target.substr(q), param);
}

HttpResponse JsonAnswer(unsigned version, bool keep_alive, int status, std::string body) {
  HttpResponse response{static_cast<http::status>(status), version};
  response.set(http::field::content_type, "application/json");
  response.keep_alive(keep_alive);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

// v3 keeps error codes equal to the HTTP status (Confluent's v3 shape).
HttpResponse V3Error(unsigned version, bool keep_alive, int status, absl::string_view message) {
  HttpResponse response = JsonError(version, status, status, message);
  response.keep_alive(keep_alive);
  if (status == 429) response.set(http::field::retry_after, "1");
  return response;
}

// A new request admission refused (RecordSink::Admit): refused whole, at once, before any
// record was sent, so a client's retry writes nothing twice. 503 (v2: 50301) while the upstream
// cluster is unreachable; 429 (v2: 42901) while it is slower than the load, with the refusal's
// own Retry-After.
HttpResponse NotAdmitted(unsigned version, bool keep_alive, bool v3, const absl::Status& refusal) {
  const bool slow = absl::IsResourceExhausted(refusal);
  const int status = slow ? 429 : 503;
  const int error_code = v3 ? status : (slow ? 42901 : 50301);
  HttpResponse response = JsonError(version, status, error_code, refusal.message());
  response.keep_alive(keep_alive);
  response.set(http::field::retry_after, slow ? RetryAfterSeconds(refusal) : "1");
  return response;
}

// One v3 record (or records:batch) request, answered once every record's report is in.
class V3Batch {
 public:
  struct Entry {
    std::string id;  // records:batch only
    V3Payload key, value;
    DeliveryReport report;
    absl::Status invalid;  // set: never submitted
  };
  // `recorded`: the answer is remembered under an Idempotency-Key (kNothingWrittenHeader).
  V3Batch(std::vector<Entry> entries, std::string cluster_id, std::string topic, bool batch,
          bool routing, bool recorded, unsigned version, bool keep_alive, Responder respond)
      : entries_(std::move(entries)), remaining_(static_cast<int>(entries_.size())),
        cluster_id_(std::move(cluster_id)), topic_(std::move(topic)), batch_(batch),
        routing_(routing), recorded_(recorded), version_(version), keep_alive_(keep_alive),
        respond_(std::move(respond)) {}

  std::vector<Entry>& entries() { return entries_; }
  void Abort(HttpResponse&& response) { respond_(std::move(response)); }

  void Complete(size_t index, const DeliveryReport& report) {
    entries_[index].report = report;
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) Answer();
  }

 private:
  void Answer() {
    if (!batch_) {
      const Entry& e = entries_[0];
      if (!e.report.status.ok()) {
        const int status = V3DeliveryErrorCode(e.report.status);
        return respond_(V3Error(version_, keep_alive_, status, e.report.status.message()));
      }
      std::string body;
      AppendV3Result(e.report, V3Echo{cluster_id_, topic_, e.key, e.value}, routing_, "", &body);
      return respond_(JsonAnswer(version_, keep_alive_, 200, std::move(body)));
    }
    std::string successes, failures;
    bool delivery_failed = false;  // a valid record failed upstream
    for (const Entry& e : entries_) {
      if (!e.invalid.ok() || !e.report.status.ok()) {
        delivery_failed |= e.invalid.ok();
        const absl::Status& st = e.invalid.ok() ? e.report.status : e.invalid;
        const int code = e.invalid.ok() ? V3DeliveryErrorCode(st) : V3RecordErrorCode(st);
        absl::StrAppend(&failures, failures.empty() ? "" : ",", "{\"id\":");
        AppendJsonString(e.id, &failures);
        absl::StrAppend(&failures, ",\"error_code\":", code, ",\"message\":");
        AppendJsonString(st.message(), &failures);
        failures.push_back('}');
      } else {
        if (!successes.empty()) successes.push_back(',');
        AppendV3Result(e.report, V3Echo{cluster_id_, topic_, e.key, e.value}, routing_, e.id,
                       &successes);
      }
    }
    HttpResponse answer = JsonAnswer(version_, keep_alive_, 207,
                                     absl::StrCat(R"({"successes":[)", successes,
                                                  R"(],"failures":[)", failures, "]}"));
    if (recorded_ && successes.empty() && delivery_failed) {
      answer.set(kNothingWrittenHeader, "1");
    }
    respond_(std::move(answer));
  }

  std::vector<Entry> entries_;
  std::atomic<int> remaining_;
  const std::string cluster_id_;
  const std::string topic_;
  const bool batch_;
  const bool routing_;
  const bool recorded_;
  const unsigned version_;
  const bool keep_alive_;
  Responder respond_;
};

// Collects the delivery reports of one produce request and answers once the last one is in.
class ProduceBatch {
 public:
  // `recorded`: the answer is remembered under an Idempotency-Key (kNothingWrittenHeader).
  // `answer_type`: one of kV2Types (static storage), as negotiated.
  ProduceBatch(size_t records, unsigned version, bool keep_alive, bool routing, bool recorded,
               absl::string_view answer_type, Responder respond)
      : results_(records), remaining_(static_cast<int>(records)), version_(version),
        keep_alive_(keep_alive), routing_(routing), recorded_(recorded),
        answer_type_(answer_type), respond_(std::move(respond)) {}

  // Answers `response` instead of the offsets; only before any record was queued.
  void Abort(HttpResponse&& response) { respond_(std::move(response)); }

  void Complete(size_t index, DeliveryReport report) {
    results_[index] = std::move(report);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) Answer();
  }

 private:
  void Answer() {
    std::string body = R"({"key_schema_id":null,"value_schema_id":null,"offsets":[)";
    body.reserve(body.size() + results_.size() * 64);
    for (size_t i = 0; i < results_.size(); ++i) {
      if (i) body.push_back(',');
      AppendV2Offset(results_[i], routing_, &body);
    }
    body.append("]}");
    HttpResponse response{http::status::ok, version_};
    response.set(http::field::content_type, std::string(answer_type_));
    response.keep_alive(keep_alive_);
    response.body() = std::move(body);
    response.prepare_payload();
    if (recorded_ && std::none_of(results_.begin(), results_.end(),
                     [](const DeliveryReport& r) { return r.status.ok(); })) {
      response.set(kNothingWrittenHeader, "1");
    }
    respond_(std::move(response));
  }

  std::vector<DeliveryReport> results_;
  std::atomic<int> remaining_;
  unsigned version_;
  bool keep_alive_;
  bool routing_;
  bool recorded_;
  absl::string_view answer_type_;
  Responder respond_;
};

}  // namespace

ApiHandler::ApiHandler(const HttpConfig& config, RecordSink& sink, Metrics& metrics,
                       ReadyCheck ready, ClusterId cluster_id)
    : config_(config),
      sink_(sink),
      metrics_(metrics),
      ready_(std::move(ready)),
      cluster_id_(std::move(cluster_id)),
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
  if (absl::StartsWith(path, kV3Prefix)) return "produce_v3";
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
    std::optional<absl::string_view> answer_type =
        Negotiate(Sv(request[http::field::accept]), kV2Types);
    if (!answer_type) {
      return respond(NotAcceptable(request.version(), request.keep_alive(), kV2Types));
    }
    const bool routing = WantsRouting(request);
    if (ClaimIdempotency(request, respond)) return;
    return Produce(std::move(request), std::string(topic), partition, routing, *answer_type,
                   std::move(respond));
  }
  if (absl::StartsWith(path, kV3Prefix)) {
    if (!Negotiate(Sv(request[http::field::accept]), kV3Types)) {
      return respond(NotAcceptable(request.version(), request.keep_alive(), kV3Types));
    }
    if (std::optional<V3Target> target = ParseV3Records(path)) {
      if (request.method() != http::verb::post) return respond(MethodNotAllowed(request, "POST"));
      if (std::optional<HttpResponse> refused = CheckV3Target(request, *target)) {
        return respond(std::move(*refused));
      }
      const bool routing = WantsRouting(request);
      if (ClaimIdempotency(request, respond)) return;
      return ProduceV3(std::move(request), std::move(*target), routing, std::move(respond));
    }
    if (!is_get) return respond(MethodNotAllowed(request, "GET"));
    return V3Clusters(request, path, std::move(respond));
  }
  if (absl::StartsWith(path, kBulkPrefix)) {
    return respond(MethodNotAllowed(request, "POST"));  // a POST is a stream (IsStream)
  }
  respond(Error(request, 404, 404, absl::StrCat("no such endpoint: ", path)));
}

bool ApiHandler::Recorded(const HttpRequest& request) {
  return !request["Idempotency-Key"].empty();
}

bool ApiHandler::ClaimIdempotency(const HttpRequest& request, Responder& respond) {
  std::string key(Sv(request["Idempotency-Key"]));
  if (key.empty()) return false;
  const uint64_t hash =
      absl::HashOf(std::string_view(request.target()), std::string_view(request.body()));
  if (idempotency_.Claim(key, hash, respond, absl::Now(), request.version())) return true;
  respond = idempotency_.Recording(key, std::move(respond));
  return false;
}

std::optional<ApiHandler::V3Target> ApiHandler::ParseV3Records(absl::string_view path) {
  // /v3/clusters/{cluster_id}/topics/{topic}/records[:batch]
  std::vector<absl::string_view> parts = absl::StrSplit(path.substr(1), '/');
  if (parts.size() != 6 || parts[0] != "v3" || parts[1] != "clusters" || parts[3] != "topics") {
    return std::nullopt;
  }
  V3Target target{std::string(parts[2]), std::string(parts[4]), false};
  if (parts[5] == "records:batch") {
    target.batch = true;
  } else if (parts[5] != "records") {
    return std::nullopt;
  }
  return target;
}

std::string ApiHandler::CurrentClusterId() const { return cluster_id_ ? cluster_id_() : ""; }

std::optional<HttpResponse> ApiHandler::CheckV3Target(const HttpRequest& request,
                                                      const V3Target& target) const {
  const std::string id = CurrentClusterId();
  if (target.cluster_id.empty() || (!id.empty() && target.cluster_id != id)) {
    return V3Error(request.version(), request.keep_alive(), 404,
                   absl::StrCat("cluster not found: ", target.cluster_id,
                                "; GET /v3/clusters names the one cluster here"));
  }
  if (!ValidTopicName(target.topic)) {
    return V3Error(request.version(), request.keep_alive(), 404,
                   absl::StrCat("topic not found: ", target.topic, " is not a valid topic name"));
  }
  absl::string_view type = Sv(request[http::field::content_type]);
  type = absl::StripAsciiWhitespace(type.substr(0, type.find(';')));
  if (!type.empty() && !absl::EqualsIgnoreCase(type, "application/json")) {
    return V3Error(request.version(), request.keep_alive(), 415,
                   absl::StrCat("unsupported content type \"", type,
                                "\": v3 records are application/json"));
  }
  return std::nullopt;
}

void ApiHandler::V3Clusters(const HttpRequest& request, absl::string_view path,
                            Responder respond) {
  const std::string id = CurrentClusterId();
  if (id.empty()) {
    // Before the cluster's first metadata answer: a cluster with an empty id would send the
    // client to POST /v3/clusters//topics/…, which is a 404.
    HttpResponse response =
        V3Error(request.version(), request.keep_alive(), 503,
                "the upstream cluster's id is not known yet (no metadata answer from it so far); "
                "retry");
    response.set(http::field::retry_after, "1");
    return respond(std::move(response));
  }
  std::string host(Sv(request[http::field::host]));
  if (host.empty()) host = "localhost";
  const std::string base = absl::StrCat("http://", host, "/v3/clusters");
  auto cluster = [&] {
    std::string self = absl::StrCat(base, "/", id);
    return json::object{
        {"kind", "KafkaCluster"},
        {"metadata", json::object{{"self", self}, {"resource_name", absl::StrCat("crn:///kafka=", id)}}},
        {"cluster_id", id},
        {"topics", json::object{{"related", absl::StrCat(self, "/topics")}}},
    };
  };
  if (path == kV3Prefix || path == "/v3/clusters/") {
    json::object list{{"kind", "KafkaClusterList"},
                      {"metadata", json::object{{"self", base}, {"next", nullptr}}},
                      {"data", json::array{cluster()}}};
    return respond(JsonAnswer(request.version(), request.keep_alive(), 200, json::serialize(list)));
  }
  absl::string_view rest = path.substr(kV3Prefix.size());
  if (absl::StartsWith(rest, "/") && rest.substr(1) == id && !id.empty()) {
    return respond(
        JsonAnswer(request.version(), request.keep_alive(), 200, json::serialize(cluster())));
  }
  respond(V3Error(request.version(), request.keep_alive(), 404,
                  absl::StrCat("not found: ", path, " (this proxy serves /v3/clusters, "
                               "/v3/clusters/{id} and POST …/topics/{topic}/records[:batch])")));
}

void ApiHandler::ProduceV3(HttpRequest&& request, V3Target target, bool routing,
                           Responder respond) {
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  const absl::string_view body = Sv(request.body());
  if (absl::StripAsciiWhitespace(body).empty()) {
    // The doc's produce_record_empty_request_body: 422 rather than "malformed JSON".
    return respond(V3Error(version, keep_alive, 422,
                           "Payload error. Request body is empty. Data is required."));
  }
  boost::system::error_code ec;
  json::value root = json::parse(json::string_view(body.data(), body.size()), ec);
  if (ec) {
    return respond(V3Error(version, keep_alive, 400, absl::StrCat("malformed JSON: ", ec.message())));
  }
  std::vector<V3Batch::Entry> entries;
  std::vector<Record> records;
  if (!target.batch) {
    Record record;
    record.topic = target.topic;
    V3Batch::Entry entry;
    absl::Status read = ReadV3Record(root, body, &record, &entry.key, &entry.value);
    if (!read.ok() && AnsweredInRecord(read)) {
      return respond(JsonAnswer(version, keep_alive, 200,
                                JsonErrorLine(V3RecordErrorCode(read), read.message())));
    }
    if (!read.ok()) return respond(V3Error(version, keep_alive, 400, read.message()));
    entries.push_back(std::move(entry));
    records.push_back(std::move(record));
  } else {
    const json::object* o = root.if_object();
    const json::value* list = o ? o->if_contains("entries") : nullptr;
    if (!list || !list->is_array() || o->size() != 1) {
      return respond(V3Error(version, keep_alive, 400,
                             R"(expected {"entries":[{"id":…,"key":…,"value":…},…]})"));
    }
    const json::array& array = list->get_array();
    if (array.empty()) return respond(V3Error(version, keep_alive, 400, "\"entries\" is empty"));
    if (array.size() > static_cast<size_t>(config_.max_records_per_request)) {
      return respond(V3Error(version, keep_alive, 413,
                             absl::StrCat(array.size(), " entries is more than the limit of ",
                                          config_.max_records_per_request,
                                          " per request (http.max_records_per_request)")));
    }
    absl::StatusOr<absl::string_view> list_text = MemberText(body, "entries");
    absl::StatusOr<std::vector<absl::string_view>> texts =
        list_text.ok() ? ElementTexts(*list_text) : list_text.status();
    if (!texts.ok() || texts->size() != array.size()) {
      return respond(
          V3Error(version, keep_alive, 400, "malformed JSON: \"entries\" could not be read"));
    }
    absl::flat_hash_map<std::string, size_t> ids;
    for (size_t i = 0; i < array.size(); ++i) {
      Record record;
      record.topic = target.topic;
      V3Batch::Entry entry;
      entry.invalid = ReadV3Record(array[i], (*texts)[i], &record, &entry.key, &entry.value,
                                   /*allow_id=*/true, &entry.id);
      if (entry.id.empty()) {
        return respond(V3Error(version, keep_alive, 400,
                               absl::StrCat("entries[", i, "]: each entry needs an \"id\"")));
      }
      if (!ids.emplace(entry.id, i).second) {
        return respond(V3Error(version, keep_alive, 400,
                               absl::StrCat("entries[", i, "]: id \"", entry.id,
                                            "\" is used twice")));
      }
      entries.push_back(std::move(entry));
      records.push_back(std::move(record));
    }
  }
  if (absl::Status admitted = sink_.Admit(static_cast<int64_t>(records.size()));
      !admitted.ok()) {
    return respond(NotAdmitted(version, keep_alive, /*v3=*/true, admitted));
  }
  auto batch = std::make_shared<V3Batch>(std::move(entries), CurrentClusterId(), target.topic,
                                         target.batch, routing, Recorded(request), version,
                                         keep_alive, std::move(respond));
  auto shared_records = std::make_shared<std::vector<Record>>(std::move(records));
  sink_.LookupTopic(target.topic, [this, batch, shared_records, version, keep_alive,
                                   topic = target.topic](absl::StatusOr<int32_t> partitions) {
    if (!partitions.ok()) {
      if (absl::IsNotFound(partitions.status())) {
        return batch->Abort(V3Error(version, keep_alive, 404,
                                    absl::StrCat("topic not found: ", topic)));
      }
      return batch->Abort(V3Error(version, keep_alive, 503, partitions.status().message()));
    }
    std::vector<V3Batch::Entry>& entries = batch->entries();
    std::vector<Record>& records = *shared_records;
    for (size_t i = 0; i < records.size(); ++i) {
      if (entries[i].invalid.ok() && records[i].partition >= *partitions) {
        entries[i].invalid = absl::NotFoundError(absl::StrCat(
            "partition not found: topic ", topic, " has ", *partitions, " partitions"));
      }
    }
    if (entries.size() == 1 && !entries[0].invalid.ok()) {
      const int status = absl::IsNotFound(entries[0].invalid) ? 404 : 400;
      return batch->Abort(V3Error(version, keep_alive, status, entries[0].invalid.message()));
    }
    for (size_t i = 0; i < records.size(); ++i) {
      if (!entries[i].invalid.ok()) {
        batch->Complete(i, DeliveryReport{});
        continue;
      }
      absl::Status queued = sink_.Submit(
          std::move(records[i]),
          [batch, i](const DeliveryReport& report) { batch->Complete(i, report); });
      if (!queued.ok() && i == 0 && absl::IsResourceExhausted(queued)) {
        return batch->Abort(V3Error(version, keep_alive, 429, queued.message()));
      }
      if (!queued.ok()) {
        DeliveryReport failed;
        failed.status = queued;
        batch->Complete(i, failed);
      }
    }
  });
}

bool ApiHandler::IsStream(const HttpRequest& header) const {
  if (header.method() != http::verb::post) return false;
  absl::string_view path = PathOf(header);
  if (absl::StartsWith(path, kBulkPrefix)) return true;
  // Confluent's streaming mode: a chunked request to the v3 records endpoint.
  if (!header.chunked() || !absl::StartsWith(path, kV3Prefix)) return false;
  std::optional<V3Target> target = ParseV3Records(path);
  return target && !target->batch;
}

void ApiHandler::OpenStream(const HttpRequest& header,
                            absl::AnyInvocable<void(StreamOpening)> done) {
  absl::string_view path = PathOf(header);
  const unsigned version = header.version();
  StreamTarget target;
  target.sink = &sink_;
  target.routing = WantsRouting(header);
  std::string cluster_id;
  EmbeddedFormat format = EmbeddedFormat::kJson;
  bool v3 = false;
  absl::string_view accept = Sv(header[http::field::accept]);
  if (absl::StartsWith(path, kBulkPrefix) ? !Negotiate(accept, kBulkTypes)
                                          : !Negotiate(accept, kV3Types)) {
    return done(absl::StartsWith(path, kBulkPrefix)
                    ? NotAcceptable(version, false, kBulkTypes)
                    : NotAcceptable(version, false, kV3Types));
  }
  if (absl::StartsWith(path, kBulkPrefix)) {
    target.topic = std::string(path.substr(kBulkPrefix.size()));
    if (!ValidTopicName(target.topic)) {
      return done(JsonError(version, 404, 40401,
                            absl::StrCat("topic not found: ", target.topic,
                                         " is not a valid topic name")));
    }
    absl::string_view type = Sv(header[http::field::content_type]);
    type = absl::StripAsciiWhitespace(type.substr(0, type.find(';')));
    if (!type.empty() && !absl::EqualsIgnoreCase(type, "application/x-ndjson") &&
        !absl::EqualsIgnoreCase(type, "application/jsonl") &&
        !absl::EqualsIgnoreCase(type, "application/json")) {
      return done(JsonError(version, 415, 415,
                            absl::StrCat("unsupported content type \"", type,
                                         "\": bulk bodies are application/x-ndjson")));
    }
    if (QueryHas(header, "format=binary")) format = EmbeddedFormat::kBinary;
  } else {
    std::optional<V3Target> v3_target = ParseV3Records(path);
    if (std::optional<HttpResponse> refused = CheckV3Target(header, *v3_target)) {
      return done(std::move(*refused));
    }
    target.topic = v3_target->topic;
    cluster_id = CurrentClusterId();
    v3 = true;
  }
  // A stream's records are not known yet: the refusal counts none.
  if (absl::Status admitted = sink_.Admit(0); !admitted.ok()) {
    return done(NotAdmitted(version, false, v3, admitted));
  }
  auto shared_done = std::make_shared<absl::AnyInvocable<void(StreamOpening)>>(std::move(done));
  std::string topic = target.topic;
  sink_.LookupTopic(topic, [shared_done, target = std::move(target), format, v3, version,
                            cluster_id = std::move(cluster_id)](
                               absl::StatusOr<int32_t> partitions) mutable {
    if (!partitions.ok()) {
      const bool missing = absl::IsNotFound(partitions.status());
      const int status = missing ? 404 : 503;
      const int code = v3 ? status : (missing ? 40401 : 50301);
      return (*shared_done)(JsonError(
          version, status, code,
          missing ? absl::StrCat("topic not found: ", target.topic)
                  : std::string(partitions.status().message())));
    }
    target.partitions = *partitions;
    if (v3) return (*shared_done)(MakeV3Stream(std::move(target), std::move(cluster_id)));
    (*shared_done)(MakeBulkStream(std::move(target), format));
  });
}

void ApiHandler::Produce(HttpRequest&& request, std::string topic,
                         std::optional<int32_t> partition, bool routing,
                         absl::string_view answer_type, Responder respond) {
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
  const bool from_path = partition.has_value();
  if (partition) {
    for (Record& r : *records) r.partition = *partition;
  }
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  if (absl::Status admitted = sink_.Admit(static_cast<int64_t>(records->size()));
      !admitted.ok()) {
    return respond(NotAdmitted(version, keep_alive, /*v3=*/false, admitted));
  }
  const bool recorded = Recorded(request);
  auto shared_records = std::make_shared<std::vector<Record>>(std::move(*records));
  auto shared_respond = std::make_shared<Responder>(std::move(respond));
  // The lookup answers from cached metadata when it can; an unknown topic gets a 404 at once.
  sink_.LookupTopic(topic, [this, topic, version, keep_alive, routing, recorded, shared_records,
                            shared_respond, answer_type,
                            from_path](absl::StatusOr<int32_t> partitions) {
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
    // /topics/{topic}/partitions/{p} names a partition that is not there: the whole request
    // is a 404. A record's own "partition" is that record's error (40402); the rest go on.
    if (from_path && !batch.empty() && batch[0].partition >= *partitions) {
      return error(404, 40402, absl::StrCat("partition not found: topic ", topic, " has ",
                                            *partitions, " partitions, not ",
                                            batch[0].partition + 1));
    }
    auto collector = std::make_shared<ProduceBatch>(batch.size(), version, keep_alive, routing,
                                                    recorded, answer_type, std::move(respond));
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].partition >= *partitions) {
        DeliveryReport missing;
        missing.status = absl::NotFoundError(absl::StrCat(
            "partition not found: topic ", topic, " has ", *partitions, " partitions, not ",
            batch[i].partition + 1));
        collector->Complete(i, std::move(missing));
        continue;
      }
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
