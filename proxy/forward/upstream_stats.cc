#include "proxy/forward/upstream_stats.h"

#include <vector>

#include <boost/json.hpp>

#include "absl/strings/str_cat.h"

namespace saltproxy {
namespace {

namespace json = boost::json;

int64_t IntField(const json::object& o, std::string_view name) {
  const json::value* v = o.if_contains(name);
  if (!v) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->as_double());
  return 0;
}

// A rolling window's sum (µs) and count, or zeros when absent.
std::pair<int64_t, int64_t> WindowOf(const json::object& broker, std::string_view name) {
  const json::value* w = broker.if_contains(name);
  if (!w || !w->is_object()) return {0, 0};
  return {IntField(w->as_object(), "sum"), IntField(w->as_object(), "cnt")};
}

}  // namespace

UpstreamStats::UpstreamStats(prometheus::Registry& registry)
    : produce_requests_(prometheus::BuildCounter()
                            .Name("saltproxy_upstream_produce_requests_total")
                            .Help("Produce requests the upstream producers sent to the cluster "
                                  "(librdkafka puts one partition in each)")
                            .Register(registry)
                            .Add({})),
      sent_bytes_(prometheus::BuildCounter()
                      .Name("saltproxy_upstream_sent_bytes_total")
                      .Help("Bytes the upstream producers sent to the cluster, all requests")
                      .Register(registry)
                      .Add({})),
      rtt_(prometheus::BuildGauge()
               .Name("saltproxy_upstream_rtt_seconds")
               .Help("Mean round trip of upstream requests over the last statistics interval")
               .Register(registry)
               .Add({})),
      queue_(prometheus::BuildGauge()
                 .Name("saltproxy_upstream_queue_seconds")
                 .Help("Mean time records waited in the upstream producer before their request "
                       "was sent, over the last statistics interval")
                 .Register(registry)
                 .Add({})) {}

absl::Status UpstreamStats::Apply(int producer, std::string_view text) {
  boost::system::error_code ec;
  json::value doc = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !doc.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("librdkafka statistics are not a JSON object: ", ec.message()));
  }
  const json::value* brokers = doc.as_object().if_contains("brokers");
  if (!brokers || !brokers->is_object()) {
    return absl::InvalidArgumentError("librdkafka statistics without a \"brokers\" object");
  }
  struct Now {
    std::string name;
    int64_t produce_requests, sent_bytes;
    Window window;
  };
  std::vector<Now> now;
  for (const auto& [name, value] : brokers->as_object()) {
    if (!value.is_object()) continue;
    const json::object& b = value.as_object();
    Now n{std::string(name), 0, IntField(b, "txbytes"), {}};
    if (const json::value* req = b.if_contains("req"); req && req->is_object()) {
      n.produce_requests = IntField(req->as_object(), "Produce");
    }
    std::tie(n.window.rtt_us_sum, n.window.rtt_count) = WindowOf(b, "rtt");
    std::tie(n.window.queue_us_sum, n.window.queue_count) = WindowOf(b, "int_latency");
    now.push_back(std::move(n));
  }

  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [key, seen] : seen_) {  // a connection gone from the document has no window now
    if (key.first == producer) seen.window = Window{};
  }
  int64_t requests = 0, bytes = 0;
  for (Now& n : now) {
    Seen& seen = seen_[{producer, n.name}];
    // librdkafka's counters only grow, unless it made the broker object anew: then they start
    // again from zero, and all of the new value is new.
    auto grown = [](int64_t now, int64_t before) { return now >= before ? now - before : now; };
    requests += grown(n.produce_requests, seen.produce_requests);
    bytes += grown(n.sent_bytes, seen.sent_bytes);
    seen.produce_requests = n.produce_requests;
    seen.sent_bytes = n.sent_bytes;
    seen.window = n.window;
  }
  produce_requests_.Increment(static_cast<double>(requests));
  sent_bytes_.Increment(static_cast<double>(bytes));
  Window all;
  for (const auto& [key, seen] : seen_) {
    all.rtt_us_sum += seen.window.rtt_us_sum;
    all.rtt_count += seen.window.rtt_count;
    all.queue_us_sum += seen.window.queue_us_sum;
    all.queue_count += seen.window.queue_count;
  }
  // An interval with no requests keeps the last mean rather than reading as zero latency.
  if (all.rtt_count > 0) rtt_.Set(static_cast<double>(all.rtt_us_sum) / all.rtt_count / 1e6);
  if (all.queue_count > 0) {
    queue_.Set(static_cast<double>(all.queue_us_sum) / all.queue_count / 1e6);
  }
  return absl::OkStatus();
}

}  // namespace saltproxy
