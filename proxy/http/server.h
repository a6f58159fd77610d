// An asynchronous HTTP/1.1 server on Boost.Beast: a listener accepts and hands each socket to a
// session that owns it, reads a request, dispatches it to a handler, writes the answer and loops
// (keep-alive). Every read has a timeout; each connection runs on its own strand.
//
// Bounds, each answered with a JSON error body: header size (431), body size (413), requests in
// flight across all connections (429 with Retry-After), draining for shutdown (503).
//
//   HttpServer server(config.http, handler, metrics);
//   RETURN_IF_ERROR(server.Start());   // binds; server.port() is the bound port
//   ...
//   server.Shutdown(absl::Seconds(10));  // stop accepting, finish in-flight requests
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/config/config.h"
#include "proxy/metrics/metrics.h"

namespace saltproxy {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// Answers one request, exactly once, from any thread. A responder destroyed without answering
// answers 500 itself, so that no client ever waits for a reply that will not come.
class Responder {
 public:
  using Send = std::function<void(HttpResponse&&)>;
  explicit Responder(Send send) : send_(std::move(send)) {}
  Responder(Responder&&) = default;
  Responder& operator=(Responder&&) = default;
  ~Responder();
  void operator()(HttpResponse&& response);

 private:
  Send send_;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // `route` names the request for metrics; Handle may answer now or later.
  virtual absl::string_view Route(const HttpRequest& request) const = 0;
  virtual void Handle(HttpRequest&& request, Responder respond) = 0;
};

// A JSON error body in Confluent REST Proxy's shape: {"error_code":40401,"message":"..."}.
HttpResponse JsonError(unsigned version, int status, int error_code, absl::string_view message);
// A response with a body and its content type; keep-alive follows the request's.
HttpResponse MakeResponse(const HttpRequest& request, int status, absl::string_view content_type,
                          std::string body);

class HttpServer {
 public:
  HttpServer(const HttpConfig& config, HttpHandler& handler, Metrics& metrics);
  ~HttpServer();

  // Binds and starts the accept loop and the worker threads.
  absl::Status Start();
  uint16_t port() const { return port_; }
  // Stops accepting, answers new requests on open connections with 503, waits up to `timeout`
  // for requests in flight to be answered, then closes everything and joins the workers.
  void Shutdown(absl::Duration timeout);
  int in_flight() const;

  struct Shared;

 private:
  HttpConfig config_;
  std::shared_ptr<Shared> shared_;
  boost::asio::io_context ioc_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace saltproxy
