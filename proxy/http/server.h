// An asynchronous HTTP/1.1 server on Boost.Beast: a listener accepts and hands each socket to a
// session that owns it, reads a request, dispatches it to a handler, writes the answer and loops
// (keep-alive). Every read and write has a timeout; each connection runs on its own strand.
//
// Two kinds of requests:
//  - whole requests: the body is read completely (up to http.max_body_bytes), then handed to
//    HttpHandler::Handle, which answers once through a Responder;
//  - streams (HttpHandler::IsStream, e.g. v3 chunked records and NDJSON bulk): the body is
//    consumed record by record as it arrives while a chunked answer carries one result per
//    record, in record order, full duplex on the connection's strand. A connection has at most
//    http.stream_credit records read and not yet answered; at the credit it stops reading.
//
// Bounds, each answered with a JSON error body: header size (431), body size (413), requests in
// flight across all connections and bytes of bodies in flight (429 with Retry-After), draining
// for shutdown (503). A refused body is not read: the answer says Connection: close and the
// connection is closed after a short drain, so other connections never pay for it.
//
//   HttpServer server(config.http, handler, metrics);
//   RETURN_IF_ERROR(server.Start());   // binds; server.port() is the bound port
//   ...
//   server.StopAccepting();                       // shutdown: no new connection or request
//   server.WaitAnswered(deadline);                // requests in flight answered (or deadline)
//   HttpServer::Drained d = server.Stop(deadline); // answers written, connections closed
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <variant>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/config/config.h"
#include "proxy/metrics/metrics.h"

namespace saltproxy {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// A JSON error body in Confluent REST Proxy's shape: {"error_code":40401,"message":"..."}.
HttpResponse JsonError(unsigned version, int status, int error_code, absl::string_view message);
// A response with a body and its content type; keep-alive follows the request's.
HttpResponse MakeResponse(const HttpRequest& request, int status, absl::string_view content_type,
                          std::string body);

// {"error_code":N,"message":"..."} followed by a line end: one error result of a stream.
std::string JsonErrorLine(int error_code, absl::string_view message);

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

// The answer side of a stream: every record takes a slot, in the order the records were read;
// Complete fills a slot from any thread, exactly once; the session writes the filled slots in
// slot order, so results keep record order although deliveries complete out of order.
class StreamResults {
 public:
  virtual ~StreamResults() = default;
  // `text` is written as it is (one result, with its own line end).
  virtual void Complete(uint64_t slot, std::string text) = 0;
};

// Reads one streamed request body, record by record; owned by the session, called on its strand.
class StreamHandler {
 public:
  struct Consumed {
    size_t bytes = 0;    // taken from the front of `data`
    int records = 0;     // slots taken: first_slot .. first_slot + records - 1
    bool stop = false;   // the stream cannot go on (framing lost): end it after these results
    bool retry = false;  // the upstream queue is full or too slow: call again a little later
  };
  virtual ~StreamHandler() = default;
  virtual absl::string_view content_type() const = 0;
  // `data`: body bytes not yet consumed; `last`: nothing follows them. Consumes at most
  // `max_records` complete records from the front of `data`; the result of each (an error for a
  // record that cannot be read, else its delivery) goes to results->Complete exactly once.
  virtual Consumed Consume(absl::string_view data, bool last, int max_records, uint64_t first_slot,
                           const std::shared_ptr<StreamResults>& results) = 0;
};

// What HttpHandler::OpenStream answers: a refusal (a whole-request error) or the stream's reader.
using StreamOpening = std::variant<HttpResponse, std::unique_ptr<StreamHandler>>;

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // `route` names the request for metrics; Handle may answer now or later.
  virtual absl::string_view Route(const HttpRequest& request) const = 0;
  virtual void Handle(HttpRequest&& request, Responder respond) = 0;
  // True when the request's body is to be streamed; decided from the header alone.
  virtual bool IsStream(const HttpRequest& header) const { return false; }
  // Opens a stream for `header` (its body not yet read); `done` runs once, on any thread.
  virtual void OpenStream(const HttpRequest& header, absl::AnyInvocable<void(StreamOpening)> done) {
    done(JsonError(header.version(), 404, 404, "no stream here"));
  }
};


class HttpServer {
 public:
  HttpServer(const HttpConfig& config, HttpHandler& handler, Metrics& metrics);
  ~HttpServer();

  // Binds and starts the accept loop and the worker threads.
  absl::Status Start();
  uint16_t port() const { return port_; }
  // Shutdown, in the steps App::Shutdown spaces out over its timeout.
  // Closes the listening socket and stops reading new requests: a connection between requests
  // closes (one whose next request has begun to arrive is answered 503), a stream stops reading
  // and ends after the results of what it read. Requests in flight go on.
  void StopAccepting();
  // Waits until every request read has its answer (handed to its connection, maybe not yet
  // written), or the deadline; returns how many still wait.
  int WaitAnswered(absl::Time deadline);
  // What Stop found: answers written since StopAccepting, and requests that never got theirs.
  struct Drained {
    int answered = 0;  // answers written whole (a stream: its last chunk)
    // Of those, a 4xx/5xx status, or a stream that ended with an error line. A v2 produce
    // answer is 200 with an error per record that was not written: the records count those.
    int answered_error_status = 0;
    int abandoned = 0;  // unanswered or not fully written when the deadline closed them
  };
  // Waits until the answers are written and the connections closed (each closes after its
  // answer, Connection: close), or the deadline; then closes what is left and joins the workers.
  Drained Stop(absl::Time deadline);
  // All three at once (tests, and the destructor with a zero timeout).
  void Shutdown(absl::Duration timeout);
  int in_flight() const;
  // Bytes of request bodies read (or reserved) and not yet answered.
  uint64_t in_flight_bytes() const;

  struct Shared;

 private:
  HttpConfig config_;
  std::shared_ptr<Shared> shared_;
  boost::asio::io_context ioc_;
  // Keeps the workers running while no I/O is pending: a connection whose request is in flight
  // waits for its answer with nothing to read or write, and with every connection so, run()
  // would return and the answers posted later would never be written. Reset by Stop.
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
  bool accepting_stopped_ = false;
  bool stopped_ = false;
};

}  // namespace saltproxy
