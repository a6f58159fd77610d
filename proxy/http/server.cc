#include "proxy/http/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <condition_variable>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/net/acceptor.h"

namespace saltproxy {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

Responder::~Responder() {
  if (send_) {
    HttpResponse response = JsonError(11, 500, 500, "internal error: the request was dropped");
    send_(std::move(response));
  }
}

void Responder::operator()(HttpResponse&& response) {
  Send send = std::move(send_);
  send_ = nullptr;
  if (send) send(std::move(response));
}

HttpResponse JsonError(unsigned version, int status, int error_code, absl::string_view message) {
  HttpResponse response{static_cast<http::status>(status), version};
  response.set(http::field::content_type, "application/json");
  boost::json::object body;
  body["error_code"] = error_code;
  body["message"] = boost::json::string_view(message.data(), message.size());
  response.body() = boost::json::serialize(body);
  response.prepare_payload();
  return response;
}

HttpResponse MakeResponse(const HttpRequest& request, int status, absl::string_view content_type,
                          std::string body) {
  HttpResponse response{static_cast<http::status>(status), request.version()};
  response.set(http::field::content_type, std::string(content_type));
  response.keep_alive(request.keep_alive());
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

namespace {

// The statuses the proxy answers with; their counters are resolved once, at start-up.
constexpr int kStatuses[] = {100, 200, 207, 400, 404, 405, 408, 413, 415,
                             422, 429, 431, 500, 502, 503, 504};

}  // namespace

struct HttpServer::Shared {
  Shared(const HttpConfig& c, HttpHandler& h, Metrics& metrics)
      : config(c),
        handler(h),
        requests(prometheus::BuildCounter()
                     .Name("saltproxy_http_requests_total")
                     .Help("HTTP requests answered, by route and status code")
                     .Register(metrics.registry())),
        latency(prometheus::BuildHistogram()
                    .Name("saltproxy_http_request_duration_seconds")
                    .Help("Time from a request's last byte to its answer, by route")
                    .Register(metrics.registry())),
        in_flight_gauge(prometheus::BuildGauge()
                            .Name("saltproxy_http_requests_in_flight")
                            .Help("HTTP requests read and not yet answered")
                            .Register(metrics.registry())
                            .Add({})),
        connections(prometheus::BuildGauge()
                        .Name("saltproxy_http_connections")
                        .Help("Open HTTP connections")
                        .Register(metrics.registry())
                        .Add({})),
        rejected(prometheus::BuildCounter()
                     .Name("saltproxy_backpressure_events_total")
                     .Help("Records refused because a bound was reached, by bound")
                     .Register(metrics.registry())
                     .Add({{"bound", "http_in_flight"}})) {
    for (absl::string_view route : {"produce", "healthz", "readyz", "metrics", "admin", "other"}) {
      RouteMetrics& m = routes[route];
      m.latency = &latency.Add({{"route", std::string(route)}}, Metrics::LatencyBuckets());
      for (int status : kStatuses) {
        m.by_status[status] =
            &requests.Add({{"route", std::string(route)}, {"code", absl::StrCat(status)}});
      }
    }
  }

  struct RouteMetrics {
    prometheus::Histogram* latency = nullptr;
    absl::flat_hash_map<int, prometheus::Counter*> by_status;
  };

  void Count(absl::string_view route, int status, absl::Duration elapsed) {
    auto it = routes.find(route);
    if (it == routes.end()) it = routes.find("other");
    it->second.latency->Observe(absl::ToDoubleSeconds(elapsed));
    auto c = it->second.by_status.find(status);
    if (c != it->second.by_status.end()) c->second->Increment();
  }

  void Finished() {
    std::lock_guard<std::mutex> lock(mu);
    --in_flight;
    in_flight_gauge.Decrement();
    if (in_flight == 0) idle.notify_all();
  }

  const HttpConfig config;
  HttpHandler& handler;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& latency;
  prometheus::Gauge& in_flight_gauge;
  prometheus::Gauge& connections;
  prometheus::Counter& rejected;
  // Written at construction only, so sessions read it without a lock.
  absl::flat_hash_map<absl::string_view, RouteMetrics> routes;

  std::atomic<bool> draining{false};
  std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;  // Guarded by mu.
  std::unique_ptr<tcp::acceptor> acceptor;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<HttpServer::Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {
    shared_->connections.Increment();
  }
  ~Session() { shared_->connections.Decrement(); }

  void Run() {
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::ReadHeader,
                                                                    shared_from_this()));
  }

 private:
  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(shared_->config.max_header_bytes);
    parser_->body_limit(shared_->config.max_body_bytes);
    stream_.expires_after(std::chrono::milliseconds(
        absl::ToInt64Milliseconds(shared_->config.idle_timeout)));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, size_t) {
    if (ec) return OnReadError(ec);
    const auto& req = parser_->get();
    // Clients that ask (curl does above 1 MiB) wait for a 100 Continue before the body.
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code ec, size_t) {
                          if (ec) return self->Close();
                          self->ReadBody();
                        });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    stream_.expires_after(std::chrono::milliseconds(
        absl::ToInt64Milliseconds(shared_->config.request_timeout)));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
        ec == net::error::eof || ec == beast::error::timeout ||
        ec == net::error::operation_aborted) {
      return Close();
    }
    // The stream is no longer in step with message boundaries: answer, then close.
    int status = 400;
    std::string message = absl::StrCat("malformed HTTP request: ", ec.message());
    if (ec == http::error::body_limit) {
      status = 413;
      message = absl::StrCat("request body is larger than the limit of ",
                             shared_->config.max_body_bytes, " bytes (http.max_body_bytes)");
    } else if (ec == http::error::header_limit) {
      status = 431;
      message = absl::StrCat("request headers are larger than the limit of ",
                             shared_->config.max_header_bytes, " bytes (http.max_header_bytes)");
    }
    LogEvent(LogLevel::kDebug, "http_bad_request", {{"reason", message}});
    shared_->Count("other", status, absl::ZeroDuration());
    HttpResponse response = JsonError(11, status, status, message);
    response.keep_alive(false);
    Write(std::move(response), /*counted=*/false);
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) return OnReadError(ec);
    HttpRequest request = parser_->release();
    absl::string_view route = shared_->handler.Route(request);
    absl::Time started = absl::Now();
    if (shared_->draining.load()) {
      shared_->Count(route, 503, absl::ZeroDuration());
      HttpResponse response = JsonError(request.version(), 503, 503, "saltproxy is shutting down");
      response.keep_alive(false);
      return Write(std::move(response), false);
    }
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (shared_->in_flight >= shared_->config.max_in_flight_requests) {
        shared_->rejected.Increment();
        shared_->Count(route, 429, absl::ZeroDuration());
        HttpResponse response = JsonError(
            request.version(), 429, 429,
            absl::StrCat("too many requests in flight (http.max_in_flight_requests = ",
                         shared_->config.max_in_flight_requests, "); retry later"));
        response.set(http::field::retry_after, "1");
        response.keep_alive(request.keep_alive());
        return Write(std::move(response), false);
      }
      ++shared_->in_flight;
      shared_->in_flight_gauge.Increment();
    }
    // The handler may answer from any thread: the answer hops back onto this session's strand.
    Responder respond([self = shared_from_this(), route, started,
                       keep_alive = request.keep_alive()](HttpResponse&& response) {
      self->shared_->Count(route, response.result_int(), absl::Now() - started);
      if (!keep_alive) response.keep_alive(false);
      net::post(self->stream_.get_executor(),
                [self, r = std::make_shared<HttpResponse>(std::move(response))]() mutable {
                  self->Write(std::move(*r), true);
                });
    });
    shared_->handler.Handle(std::move(request), std::move(respond));
  }

  void Write(HttpResponse&& response, bool counted) {
    auto owned = std::make_shared<HttpResponse>(std::move(response));
    stream_.expires_after(std::chrono::milliseconds(
        absl::ToInt64Milliseconds(shared_->config.request_timeout)));
    http::async_write(stream_, *owned,
                      [self = shared_from_this(), owned, counted](beast::error_code ec, size_t) {
                        if (counted) self->shared_->Finished();
                        if (ec || !owned->keep_alive()) return self->Close();
                        self->ReadHeader();
                      });
  }

  void Close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpServer::Shared> shared_;
};

void Accept(net::io_context& ioc, std::shared_ptr<HttpServer::Shared> shared) {
  tcp::acceptor* acceptor = shared->acceptor.get();
  acceptor->async_accept(net::make_strand(ioc), [&ioc, shared](beast::error_code ec,
                                                               tcp::socket socket) {
    if (ec == net::error::operation_aborted || !shared->acceptor->is_open()) return;
    if (!ec) {
      beast::error_code opt_ec;
      socket.set_option(tcp::no_delay(true), opt_ec);
      std::make_shared<Session>(std::move(socket), shared)->Run();
    } else {
      LogEvent(LogLevel::kWarn, "http_accept_failed", {{"error", ec.message()}});
    }
    Accept(ioc, shared);
  });
}

}  // namespace

HttpServer::HttpServer(const HttpConfig& config, HttpHandler& handler, Metrics& metrics)
    : config_(config), shared_(std::make_shared<Shared>(config, handler, metrics)) {}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

int HttpServer::in_flight() const {
  std::lock_guard<std::mutex> lock(shared_->mu);
  return shared_->in_flight;
}

absl::Status HttpServer::Start() {
  absl::StatusOr<std::unique_ptr<tcp::acceptor>> acceptor =
      BindAcceptor(ioc_, config_.listen, "http.listen");
  if (!acceptor.ok()) return acceptor.status();
  port_ = (*acceptor)->local_endpoint().port();
  shared_->acceptor = std::move(*acceptor);
  Accept(ioc_, shared_);
  for (int i = 0; i < config_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  LogEvent(LogLevel::kInfo, "http_listening",
           {{"address", config_.listen.host}, {"port", absl::StrCat(port_)}});
  return absl::OkStatus();
}

void HttpServer::Shutdown(absl::Duration timeout) {
  if (stopped_) return;
  stopped_ = true;
  shared_->draining = true;
  if (shared_->acceptor) CloseAcceptor(*shared_->acceptor);
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    shared_->idle.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)),
                           [&] { return shared_->in_flight == 0; });
    if (shared_->in_flight > 0) {
      LogEvent(LogLevel::kWarn, "http_shutdown_abandoned",
               {{"in_flight", absl::StrCat(shared_->in_flight)}});
    }
  }
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // The acceptor belongs to ioc_, which dies before shared_ (sessions and the forwarder's
  // pending answers may still hold shared_).
  shared_->acceptor.reset();
}

}  // namespace saltproxy
