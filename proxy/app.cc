#include "proxy/app.h"

#include <boost/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proxy/common/log.h"
#include "proxy/forward/control_topic_reader.h"
#include "proxy/forward/embedded_cluster.h"
#include "proxy/forward/forwarder.h"
#include "proxy/http/api.h"
#include "proxy/http/live_page.h"
#include "proxy/http/server.h"
#include "proxy/kafka_server/kafka_handler.h"
#include "proxy/kafka_server/producer_state.h"
#include "proxy/kafka_server/server.h"
#include "proxy/metrics/metrics.h"
#include "proxy/detect/detector_metrics.h"
#include "proxy/detect/hot_key_detector.h"
#include "proxy/salting/detector_heat.h"
#include "proxy/salting/resume.h"
#include "proxy/salting/router.h"
#include "proxy/salting/router_metrics.h"

namespace saltproxy {

// Members are declared in start-up order. Shutdown stops them in its own explicit order (see
// App::Shutdown); destruction in the reverse order then only frees what has stopped.
struct App::Parts {
  mutable std::mutex config_mu;
  Config config;  // guarded by config_mu after start-up
  std::string upstream_bootstrap;
  Metrics metrics;
  std::unique_ptr<EmbeddedCluster> embedded;
  std::unique_ptr<Forwarder> forwarder;
  std::unique_ptr<HotKeyDetector> detector;
  std::unique_ptr<DetectorHeat> heat;
  std::unique_ptr<DetectorMetrics> detector_metrics;
  std::unique_ptr<Router> router;
  std::unique_ptr<RouterMetrics> router_metrics;
  std::unique_ptr<ApiHandler> api;
  std::unique_ptr<HttpServer> http;
  std::unique_ptr<TopicIdCache> topic_ids;  // outlives the handler that reads it
  std::unique_ptr<KafkaHandler> kafka_handler;
  std::unique_ptr<KafkaServer> kafka;
  // Made before the handler, but destroyed before the server: the answers it still holds (of
  // batches waiting for earlier ones) post to the server's connections as they go. Nothing
  // uses it by then: the server's threads and the forwarder have stopped (Shutdown).
  std::unique_ptr<ProducerRegistry> producers;
  // The control step (detection, policy, layout changes, publication), every salting.tick.
  std::thread control;
  std::mutex control_mu;
  std::condition_variable control_cv;
  bool stopping = false;  // guarded by control_mu
  bool shut_down = false;
};

namespace {

absl::StatusOr<TopicPolicy> PolicyFrom(const SaltPolicyConfig& c) {
  TopicPolicy p;
  if (c.strategy == "salt") {
    p.strategy = Strategy::kSalt;
  } else if (c.strategy == "reroute") {
    p.strategy = Strategy::kReroute;
  } else if (c.strategy == "off") {
    p.strategy = Strategy::kOff;
  } else {
    p.strategy = Strategy::kSaltThenReroute;
  }
  p.partition_target_rps = c.partition_target_rps;
  p.min_salts = c.min_salts;
  p.max_salts = c.max_salts;
  p.headroom = c.headroom;
  p.max_salts_per_share = c.max_salts_per_share;
  p.hot_topic_pattern = c.hot_topic_pattern;
  p.hot_topic_partitions = c.hot_topic_partitions;
  if (absl::Status s = p.Validate(); !s.ok()) return s;
  return p;
}

DetectorConfig DetectorConfigFrom(const Config& config) {
  const DetectionConfig& c = config.detection;
  DetectorConfig d;
  d.epsilon = c.epsilon;
  d.delta = c.delta;
  d.max_sketch_bytes = c.max_sketch_bytes;
  d.conservative_update = c.conservative_update;
  d.half_life = c.half_life;
  d.top_k = c.top_k;
  d.thresholds = c.thresholds;
  d.max_topics = c.max_topics;
  for (const auto& [topic, policy] : config.salting.topics) {
    if (!(policy.thresholds == TopicThresholds())) d.topic_thresholds[topic] = policy.thresholds;
  }
  return d;
}

absl::StatusOr<RouterOptions> RouterOptionsFrom(const Config& config) {
  RouterOptions o;
  o.instance_id = config.instance_id;
  o.control_topic = config.salting.control_topic;
  o.cooled_retention = config.salting.cooled_retention;
  o.max_held_records_per_key = static_cast<size_t>(config.salting.max_held_records_per_key);
  o.load_half_life = config.salting.load_half_life;
  o.transition_grace = config.salting.tick / 2;
  absl::StatusOr<TopicPolicy> defaults = PolicyFrom(config.salting.defaults);
  if (!defaults.ok()) return defaults.status();
  o.default_policy = *defaults;
  // A layout resumed at a restart is kept for as long as a hot key may stay below the cold
  // threshold before it cools: the detector starts from zero, and needs that long to say.
  const absl::Duration hold_down = config.detection.thresholds.hold_down;
  o.default_policy.resumed_hold = hold_down;
  for (const auto& [topic, c] : config.salting.topics) {
    absl::StatusOr<TopicPolicy> policy = PolicyFrom(c);
    if (!policy.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("salting.topics.", topic, ": ",
                                                     policy.status().message()));
    }
    policy->resumed_hold = c.thresholds.hold_down.value_or(hold_down);
    o.topic_policies[topic] = *policy;
  }
  return o;
}

void ControlLoop(App::Parts& p);

// Waits, until `deadline`, for the metadata cache to know `topics` (the router routes by it).
void LookUpTopics(Forwarder& forwarder, const std::set<std::string>& topics, absl::Time deadline) {
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    size_t count = 0;
  };
  auto answers = std::make_shared<Answers>();  // a late answer outlives this call
  for (const std::string& topic : topics) {
    forwarder.LookupTopic(topic, [answers](absl::StatusOr<int32_t>) {
      std::lock_guard<std::mutex> lock(answers->mu);
      ++answers->count;
      answers->cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(answers->mu);
  answers->cv.wait_for(lock,
                       std::chrono::microseconds(std::max<int64_t>(
                           0, absl::ToInt64Microseconds(deadline - absl::Now()))),
                       [&] { return answers->count == topics.size(); });
}

// A restart takes over the layouts this instance published last (proxy/salting/resume.h), before
// the listeners take any record. Bounded by salting.resume_timeout: when the control topic
// cannot be read by then, the proxy starts with an empty map, as a first start does.
void ResumeLayouts(App::Parts& p, const Config& config, const UpstreamConfig& upstream) {
  prometheus::Registry& registry = p.metrics.registry();
  prometheus::Counter& resumed_total =
      prometheus::BuildCounter()
          .Name("saltproxy_salt_map_layouts_resumed_total")
          .Help("Layouts taken over at start from the last salt map this instance published")
          .Register(registry)
          .Add({});
  auto& failures = prometheus::BuildCounter()
                       .Name("saltproxy_salt_map_resume_failures_total")
                       .Help("Starts that could not read the last salt map this instance "
                             "published, and began with an empty one")
                       .Register(registry);
  prometheus::Counter& unreachable = failures.Add({{"reason", "unreachable"}});
  prometheus::Counter& invalid = failures.Add({{"reason", "invalid_map"}});

  const absl::Time started = absl::Now();
  const absl::Time deadline = started + config.salting.resume_timeout;
  const std::string& topic = config.salting.control_topic;
  auto failed = [&](prometheus::Counter& counter, const absl::Status& why) {
    counter.Increment();
    LogEvent(LogLevel::kWarn, "saltmap_resume_failed",
             {{"control_topic", topic},
              {"reason", why.message()},
              {"elapsed", absl::FormatDuration(absl::Now() - started)},
              {"then", "starting with an empty salt map"}});
  };
  absl::StatusOr<std::unique_ptr<ControlTopicReader>> reader =
      ControlTopicReader::Create(upstream, deadline);
  if (!reader.ok()) return failed(unreachable, reader.status());
  // The router publishes to partition 0 (Router::PublishSaltMap).
  absl::StatusOr<std::optional<std::string>> value =
      (*reader)->LastValue(topic, 0, absl::StrCat("saltmap/", config.instance_id));
  if (!value.ok()) return failed(unreachable, value.status());
  if (!value->has_value()) {
    LogEvent(LogLevel::kInfo, "saltmap_resumed",
             {{"layouts", "0"}, {"map_epoch", "none"}, {"control_topic", topic},
              {"elapsed", absl::FormatDuration(absl::Now() - started)}});
    return;
  }
  absl::StatusOr<LastMap> last = ReadLastMap(**value, config.instance_id);
  if (!last.ok()) return failed(invalid, last.status());
  Watermarks watermarks;
  for (const TopicPartition& tp : WatermarksNeeded(*last)) {
    absl::StatusOr<int64_t> end = (*reader)->HighWatermark(tp.first, tp.second);
    if (absl::IsNotFound(end.status())) continue;  // gone: that key is not resumed
    if (!end.ok()) return failed(unreachable, end.status());
    watermarks[tp] = *end;
  }
  ResumePlan plan = PlanResume(*last, watermarks, absl::Now(), config.salting.cooled_retention);
  std::set<std::string> topics;
  for (const SaltMapEntry& e : plan.layouts) {
    topics.insert(e.topic);
    topics.insert(e.destination);
  }
  LookUpTopics(*p.forwarder, topics, deadline);
  const int planned = static_cast<int>(plan.layouts.size());
  const int resumed = p.router->Resume(std::move(plan.layouts), absl::Now());
  resumed_total.Increment(resumed);
  LogEvent(LogLevel::kInfo, "saltmap_resumed",
           {{"layouts", absl::StrCat(resumed)},
            {"map_epoch", absl::StrCat(last->epoch)},
            {"epoch", absl::StrCat(p.router->epoch())},
            {"cooled_expired", absl::StrCat(plan.expired)},
            {"not_resumed", absl::StrCat(plan.unresumable + planned - resumed)},
            {"control_topic", topic},
            {"elapsed", absl::FormatDuration(absl::Now() - started)}});
}

}  // namespace

namespace {

// Every salting.tick; and early, looked for every kPoll, when a new key is already hot (the
// router says), at most once every kMinSpacing, so that a key that turns hot in a burst is held
// and salted within milliseconds rather than at the next step.
void ControlLoop(App::Parts& p) {
  constexpr absl::Duration kPoll = absl::Milliseconds(10);
  constexpr absl::Duration kMinSpacing = absl::Milliseconds(20);
  const absl::Duration tick = p.config.salting.tick;
  absl::Time last = absl::Now();
  std::unique_lock<std::mutex> lock(p.control_mu);
  while (!p.stopping) {
    const absl::Duration wait = std::min(kPoll, std::max(absl::ZeroDuration(),
                                                         last + tick - absl::Now()));
    p.control_cv.wait_for(lock, std::chrono::microseconds(absl::ToInt64Microseconds(wait)),
                          [&] { return p.stopping; });
    if (p.stopping) break;
    lock.unlock();
    const absl::Time now = absl::Now();
    if (now - last >= tick || (now - last >= kMinSpacing && p.router->WantsTickNow())) {
      p.router->Tick(now);
      p.router_metrics->Update(*p.router);
      p.detector_metrics->Update(*p.detector);
      last = now;
    }
    lock.lock();
  }
}

}  // namespace

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
  p.upstream_bootstrap = upstream.bootstrap_servers;
  if (upstream.embedded) {
    EmbeddedCluster* cluster = p.embedded.get();
    p.forwarder->SetTopicCreator([cluster](const std::string& topic, int32_t partitions) {
      return cluster->CreateTopic(topic, partitions);
    });
  }
  DetectorConfig detection = DetectorConfigFrom(config);
  if (absl::Status s = detection.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("detection: ", s.message()));
  }
  Forwarder* upstream_cache = p.forwarder.get();
  p.detector = std::make_unique<HotKeyDetector>(detection, [upstream_cache](const std::string& t) {
    return upstream_cache->CachedPartitions(t).value_or(1);
  });
  p.heat = std::make_unique<DetectorHeat>(*p.detector);
  p.detector_metrics = std::make_unique<DetectorMetrics>(p.metrics.registry());
  absl::StatusOr<RouterOptions> router_options = RouterOptionsFrom(config);
  if (!router_options.ok()) return router_options.status();
  router_options->first_epoch = static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  p.router = std::make_unique<Router>(*p.forwarder, p.heat.get(), *std::move(router_options));
  // A fresh embedded cluster holds nothing of an earlier run.
  if (config.salting.resume_layouts && !config.salting.control_topic.empty() &&
      !upstream.embedded) {
    ResumeLayouts(p, config, upstream);
  }
  Forwarder* fw = p.forwarder.get();
  p.api = std::make_unique<ApiHandler>(config.http, *p.router, p.metrics,
                                       [fw] { return fw->Ready(); },
                                       [fw] { return fw->metadata()->cluster_id; });
  p.router_metrics = std::make_unique<RouterMetrics>(p.metrics.registry());
  Router* router = p.router.get();
  p.api->AddGetRoute("/saltmap", "saltmap", [router](const HttpRequest& request) {
    return MakeResponse(request, 200, "application/json", router->SaltMapJson());
  });
  HotKeyDetector* detector = p.detector.get();
  p.api->AddGetRoute("/hotkeys", "hotkeys", [detector](const HttpRequest& request) {
    return MakeResponse(request, 200, "application/json", detector->HotKeysJson());
  });
  p.api->AddGetRoute("/", "ui", [](const HttpRequest& request) {
    return MakeResponse(request, 200, "text/html; charset=utf-8", std::string(kLivePage));
  });
  p.api->AddGetRoute("/api/overview", "ui", [router](const HttpRequest& request) {
    boost::json::array topics;
    for (const Router::TopicStats& t : router->Stats()) {
      boost::json::array plain, through;
      for (uint64_t v : t.plain_out) plain.push_back(v);
      for (uint64_t v : t.records_out) through.push_back(v);
      topics.push_back(boost::json::object{{"topic", t.topic},
                                           {"records_in", t.records_in},
                                           {"skew", t.skew},
                                           {"hot_keys", t.hot_keys},
                                           {"plain", std::move(plain)},
                                           {"through", std::move(through)}});
    }
    return MakeResponse(request, 200, "application/json",
                        boost::json::serialize(boost::json::object{
                            {"epoch", router->epoch()}, {"topics", std::move(topics)}}));
  });
  App* self = app.get();
  p.api->AddPostRoute("/admin/reload", "admin", [self](const HttpRequest& request) {
    absl::Status applied = self->ReloadFromFile();
    if (applied.ok()) return MakeResponse(request, 200, "application/json", R"({"status":"applied"})");
    int status = absl::IsFailedPrecondition(applied) ? 409 : 422;
    return JsonError(request.version(), status, status, applied.message());
  });
  p.http = std::make_unique<HttpServer>(config.http, *p.api, p.metrics);
  if (absl::Status s = p.http->Start(); !s.ok()) return s;
  if (config.kafka.listen) {
    p.producers = std::make_unique<ProducerRegistry>(config.kafka.max_producers);
    KafkaHandlerOptions handler_options;
    handler_options.advertised_host = config.kafka.advertised_host.empty()
                                          ? config.kafka.listen->host
                                          : config.kafka.advertised_host;
    handler_options.max_decompressed_bytes = config.kafka.max_decompressed_bytes;
    // Topic ids are asked of the cluster over plaintext only (metadata_client.h); the embedded
    // mock cluster has none to give.
    auto security = upstream.librdkafka.find("security.protocol");
    if (!upstream.embedded &&
        (security == upstream.librdkafka.end() || absl::AsciiStrToLower(security->second) ==
                                                      "plaintext")) {
      p.topic_ids =
          std::make_unique<TopicIdCache>(upstream.bootstrap_servers, upstream.metadata_refresh);
      handler_options.topic_ids = p.topic_ids.get();
    }
    p.kafka_handler = std::make_unique<KafkaHandler>(handler_options, *p.router, *p.forwarder,
                                                     *p.producers, p.metrics);
    KafkaServerOptions server_options;
    server_options.listen = *config.kafka.listen;
    server_options.threads = config.kafka.threads;
    server_options.max_frame_bytes = config.kafka.max_frame_bytes;
    server_options.max_in_flight_per_connection = config.kafka.max_in_flight_per_connection;
    server_options.idle_timeout = config.kafka.idle_timeout;
    server_options.max_in_flight_bytes = config.kafka.max_in_flight_bytes;
    server_options.frame_timeout = config.kafka.frame_timeout;
    server_options.max_connections = config.kafka.max_connections;
    server_options.max_connections_per_address = config.kafka.max_connections_per_address;
    p.kafka = std::make_unique<KafkaServer>(server_options, *p.kafka_handler, p.metrics);
    if (absl::Status s = p.kafka->Start(); !s.ok()) return s;
    p.kafka_handler->SetAdvertisedPort(p.kafka->port());
  }
  p.control = std::thread([&p] { ControlLoop(p); });
  LogEvent(LogLevel::kInfo, "saltproxy_started",
           {{"instance", config.instance_id},
            {"http_port", absl::StrCat(p.http->port())},
            {"kafka_port", absl::StrCat(p.kafka ? p.kafka->port() : 0)},
            {"upstream", upstream.bootstrap_servers},
            {"embedded", upstream.embedded ? "true" : "false"}});
  return app;
}

App::~App() {
  if (parts_) Shutdown().IgnoreError();
}

uint16_t App::http_port() const { return parts_->http->port(); }
uint16_t App::kafka_port() const { return parts_->kafka ? parts_->kafka->port() : 0; }

const std::string& App::upstream_bootstrap() const {
  return parts_->upstream_bootstrap;
}

Config App::config() const {
  std::lock_guard<std::mutex> lock(parts_->config_mu);
  return parts_->config;
}

namespace {

// The fields a running proxy cannot take over: the listeners, the HTTP and Kafka servers, the
// upstream producer and the detector take theirs when they start. What a reload applies is
// only what Reload passes on: the log level, the shutdown timeout and the router's policies,
// cooled retention and load half-life.
std::vector<std::string> NeedsRestart(const Config& a, const Config& b) {
  std::vector<std::string> fields;
  auto differs = [&](bool changed, const std::string& name) {
    if (changed) fields.push_back(name);
  };
  differs(a.instance_id != b.instance_id, "instance_id");
  const HttpConfig& h = a.http;
  const HttpConfig& i = b.http;
  differs(h.listen != i.listen, "http.listen");
  differs(h.threads != i.threads, "http.threads");
  differs(h.max_body_bytes != i.max_body_bytes, "http.max_body_bytes");
  differs(h.max_header_bytes != i.max_header_bytes, "http.max_header_bytes");
  differs(h.max_in_flight_requests != i.max_in_flight_requests, "http.max_in_flight_requests");
  differs(h.max_records_per_request != i.max_records_per_request,
          "http.max_records_per_request");
  differs(h.idle_timeout != i.idle_timeout, "http.idle_timeout");
  differs(h.request_timeout != i.request_timeout, "http.request_timeout");
  differs(h.idempotency_window != i.idempotency_window, "http.idempotency_window");
  differs(h.idempotency_keys != i.idempotency_keys, "http.idempotency_keys");
  differs(h.max_in_flight_bytes != i.max_in_flight_bytes, "http.max_in_flight_bytes");
  differs(h.stream_credit != i.stream_credit, "http.stream_credit");
  differs(h.max_connections != i.max_connections, "http.max_connections");
  differs(h.max_connections_per_address != i.max_connections_per_address,
          "http.max_connections_per_address");
  const KafkaListenerConfig& k = a.kafka;
  const KafkaListenerConfig& l = b.kafka;
  differs(k.listen != l.listen, "kafka.listen");
  differs(k.advertised_host != l.advertised_host, "kafka.advertised_host");
  differs(k.threads != l.threads, "kafka.threads");
  differs(k.max_frame_bytes != l.max_frame_bytes, "kafka.max_frame_bytes");
  differs(k.max_in_flight_per_connection != l.max_in_flight_per_connection,
          "kafka.max_in_flight_per_connection");
  differs(k.idle_timeout != l.idle_timeout, "kafka.idle_timeout");
  differs(k.max_in_flight_bytes != l.max_in_flight_bytes, "kafka.max_in_flight_bytes");
  differs(k.frame_timeout != l.frame_timeout, "kafka.frame_timeout");
  differs(k.max_connections != l.max_connections, "kafka.max_connections");
  differs(k.max_connections_per_address != l.max_connections_per_address,
          "kafka.max_connections_per_address");
  differs(k.max_decompressed_bytes != l.max_decompressed_bytes, "kafka.max_decompressed_bytes");
  differs(k.max_producers != l.max_producers, "kafka.max_producers");
  const UpstreamConfig& u = a.upstream;
  const UpstreamConfig& v = b.upstream;
  differs(u.bootstrap_servers != v.bootstrap_servers, "upstream.bootstrap_servers");
  differs(u.embedded != v.embedded, "upstream.embedded");
  differs(u.embedded_brokers != v.embedded_brokers, "upstream.embedded_brokers");
  differs(u.embedded_topics != v.embedded_topics, "upstream.embedded_topics");
  differs(u.librdkafka != v.librdkafka, "upstream.librdkafka");
  differs(u.delivery_timeout != v.delivery_timeout, "upstream.delivery_timeout");
  differs(u.metadata_refresh != v.metadata_refresh, "upstream.metadata_refresh");
  differs(u.max_queue_delay != v.max_queue_delay, "upstream.max_queue_delay");
  differs(u.producers != v.producers, "upstream.producers");
  differs(u.statistics_interval != v.statistics_interval, "upstream.statistics_interval");
  differs(u.max_queued_records != v.max_queued_records || u.max_queued_bytes != v.max_queued_bytes,
          "upstream.max_queued_records/bytes");
  differs(a.salting.control_topic != b.salting.control_topic, "salting.control_topic");
  differs(!(a.detection == b.detection), "detection");
  differs(DetectorConfigFrom(a).topic_thresholds != DetectorConfigFrom(b).topic_thresholds,
          "the hot and cold thresholds of salting.topics");
  differs(a.salting.tick != b.salting.tick, "salting.tick");
  differs(a.salting.max_held_records_per_key != b.salting.max_held_records_per_key,
          "salting.max_held_records_per_key");
  return fields;
}

}  // namespace

absl::Status App::ReloadFromFile() {
  std::string path;
  {
    std::lock_guard<std::mutex> lock(parts_->config_mu);
    path = parts_->config.source_path;
  }
  absl::StatusOr<Config> next =
      path.empty() ? absl::FailedPreconditionError(
                         "saltproxy was started without --config: nothing to reload")
                   : LoadConfigFile(path);
  absl::Status applied = next.status();
  if (next.ok()) {
    next->upstream.embedded = config().upstream.embedded;  // --embedded holds across reloads
    applied = Reload(*next);
  }
  if (applied.ok()) {
    LogEvent(LogLevel::kInfo, "reload_applied", {{"file", path}});
  } else {
    LogEvent(LogLevel::kError, "reload_refused", {{"file", path}, {"reason", applied.message()}});
  }
  return applied;
}

absl::Status App::Reload(const Config& next) {
  Parts& p = *parts_;
  std::lock_guard<std::mutex> lock(p.config_mu);
  std::vector<std::string> restart = NeedsRestart(p.config, next);
  if (!restart.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("not applied: changing ", absl::StrJoin(restart, ", "),
                     " needs a restart; the running configuration stays"));
  }
  absl::StatusOr<RouterOptions> options = RouterOptionsFrom(next);
  if (!options.ok()) return options.status();
  p.router->Reconfigure(*options);
  SetLogLevel(next.log_level);
  p.config = next;
  return absl::OkStatus();
}

namespace {

// The part of shutdown_timeout kept, after the wait for requests in flight, to fail what is
// left and write every answer: a quarter, within [0.5 s, 3 s] (never more than the whole).
absl::Duration AnswerReserve(absl::Duration timeout) {
  return std::min(timeout, std::clamp(timeout / 4, absl::Milliseconds(500), absl::Seconds(3)));
}

}  // namespace

// The shutdown sequence, step by step; each step is bounded by a deadline taken from
// shutdown_timeout, so that the whole takes no longer whatever the cluster does:
//
//   t0                   both listeners stop accepting and reading new requests
//   .. drain_end         requests in flight finish as their records are delivered
//   drain_end            the control step stops; held records and what is still queued upstream
//                        fail (purge), so their requests are answered with an error now
//   .. answers_end       every answer is written, then the connections close (FIN)
//   .. t0 + timeout      the upstream producers are destroyed
absl::Status App::Shutdown() {
  Parts& p = *parts_;
  if (p.shut_down) return absl::OkStatus();
  p.shut_down = true;
  const absl::Time t0 = absl::Now();
  const absl::Duration timeout = p.config.shutdown_timeout;
  const absl::Duration reserve = AnswerReserve(timeout);
  const absl::Time drain_end = t0 + timeout - reserve;
  const absl::Time answers_end = t0 + timeout - reserve / 4;
  const absl::Time end = t0 + timeout;
  LogEvent(LogLevel::kInfo, "shutdown_started",
           {{"timeout", absl::FormatDuration(timeout)},
            {"drain", absl::FormatDuration(drain_end - t0)}});

  // 1. Both listeners at once: no new connection, no new request.
  if (p.http) p.http->StopAccepting();
  if (p.kafka) p.kafka->StopAccepting();
  if (p.forwarder) p.forwarder->StopMetadata();
  if (p.topic_ids) p.topic_ids->StopRefreshing();

  // 2. Requests in flight are answered as their records are delivered.
  int waiting = p.http ? p.http->WaitAnswered(drain_end) : 0;
  if (p.kafka) waiting += p.kafka->WaitAnswered(drain_end);

  // 3. No more layout changes; records held for one fail, and so are refused from now on.
  {
    std::lock_guard<std::mutex> lock(p.control_mu);
    p.stopping = true;
  }
  p.control_cv.notify_all();
  if (p.control.joinable()) p.control.join();
  if (p.router) p.router->FailHeld(absl::UnavailableError("saltproxy is shutting down"));

  // 4. What is still queued upstream (records of requests still waiting, control records) gets
  // what is left of the drain; then it fails, and its requests are answered with an error.
  absl::Status flushed = absl::OkStatus();
  int purged = 0;
  if (p.forwarder) {
    flushed = p.forwarder->Flush(std::max(absl::ZeroDuration(), drain_end - absl::Now()));
    purged = p.forwarder->Purge();
  }

  // 5. Every answer written before the I/O threads stop.
  if (p.http) p.http->WaitAnswered(answers_end);
  if (p.kafka) p.kafka->WaitAnswered(answers_end);
  HttpServer::Drained http = p.http ? p.http->Stop(answers_end) : HttpServer::Drained();
  KafkaServer::Drained kafka = p.kafka ? p.kafka->Stop(answers_end) : KafkaServer::Drained();

  // 6. The producers go (what the purge left is failed by then).
  if (p.forwarder) p.forwarder->Close(end);

  const int abandoned = http.abandoned + kafka.abandoned;
  const bool complete = flushed.ok() && purged == 0 && abandoned == 0;
  LogEvent(complete ? LogLevel::kInfo : LogLevel::kWarn, "shutdown_finished",
           {{"flushed", complete ? "true" : "false"},
            {"http_answered", absl::StrCat(http.answered)},
            {"http_answered_error_status", absl::StrCat(http.answered_error_status)},
            {"kafka_answered", absl::StrCat(kafka.answered)},
            {"abandoned", absl::StrCat(abandoned)},
            {"waiting_at_drain_end", absl::StrCat(waiting)},
            {"records_failed", absl::StrCat(purged)},
            {"elapsed", absl::FormatDuration(absl::Now() - t0)}});
  if (complete) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("shutdown_timeout passed with ", purged, " records not delivered and ",
                   abandoned, " requests unanswered"));
}

}  // namespace saltproxy
