#include "proxy/http/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/json.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/connection_limits.h"
#include "proxy/net/drain.h"

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

std::string JsonErrorLine(int error_code, absl::string_view message) {
  boost::json::object body;
  body["error_code"] = error_code;
  body["message"] = boost::json::string_view(message.data(), message.size());
  std::string line = boost::json::serialize(body);
  line.push_back('\n');
  return line;
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
                             422, 429, 431, 500, 502, 503, 504, 505};

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
                    .Help("Time from a request's header to its answer, by route")
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
        streamed_records(prometheus::BuildCounter()
                             .Name("saltproxy_http_stream_records_total")
                             .Help("Records read from streaming requests (v3 chunked, NDJSON)")
                             .Register(metrics.registry())
                             .Add({})),
        rejected_requests(prometheus::BuildCounter()
                              .Name("saltproxy_backpressure_events_total")
                              .Help("Records refused because a bound was reached, by bound")
                              .Register(metrics.registry())
                              .Add({{"bound", "http_in_flight"}})),
        rejected_bytes(prometheus::BuildCounter()
                           .Name("saltproxy_backpressure_events_total")
                           .Help("Records refused because a bound was reached, by bound")
                           .Register(metrics.registry())
                           .Add({{"bound", "http_in_flight_bytes"}})),
        stream_pauses(prometheus::BuildCounter()
                          .Name("saltproxy_backpressure_events_total")
                          .Help("Records refused because a bound was reached, by bound")
                          .Register(metrics.registry())
                          .Add({{"bound", "http_stream_credit"}})),
        limits(ConnectionLimits::Make("http", c.max_connections, c.max_connections_per_address,
                                      metrics.registry())) {
    for (absl::string_view route :
         {"produce", "produce_v3", "stream", "healthz", "readyz", "metrics", "admin", "other"}) {
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

  // Admits a request that will hold `bytes` of memory until answered; a refusal says which
  // bound was reached. Nothing in flight admits any request, so that one large body can pass.
  absl::Status Admit(uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    if (in_flight >= config.max_in_flight_requests) {
      rejected_requests.Increment();
      return absl::ResourceExhaustedError(
          absl::StrCat("too many requests in flight (http.max_in_flight_requests = ",
                       config.max_in_flight_requests, "); retry later"));
    }
    const uint64_t held = in_flight_bytes.load(std::memory_order_relaxed);
    if (in_flight > 0 && held + bytes > config.max_in_flight_bytes) {
      rejected_bytes.Increment();
      return absl::ResourceExhaustedError(
          absl::StrCat("too many request bytes in flight (http.max_in_flight_bytes = ",
                       config.max_in_flight_bytes, "); retry later"));
    }
    ++in_flight;
    in_flight_gauge.Increment();
    in_flight_bytes.fetch_add(bytes, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  void Finished(uint64_t bytes) {
    in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mu);
    --in_flight;
    in_flight_gauge.Decrement();
    if (in_flight == 0) idle.notify_all();
  }

  // An answer written while draining, for the shutdown's tally.
  void CountDrained(bool ok) { (ok ? drained_ok : drained_error).fetch_add(1); }

  // Tells every open connection that draining started (close: false) or that what is left is
  // to be closed now (close: true).
  void TellSessions(bool close) {
    std::vector<std::function<void(bool)>> told;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& [id, tell] : sessions) told.push_back(tell);
    }
    for (auto& tell : told) tell(close);
  }

  bool OverBytes() const {
    return in_flight_bytes.load(std::memory_order_relaxed) > config.max_in_flight_bytes;
  }

  const HttpConfig config;
  HttpHandler& handler;
  prometheus::Family<prometheus::Counter>& requests;
  prometheus::Family<prometheus::Histogram>& latency;
  prometheus::Gauge& in_flight_gauge;
  prometheus::Gauge& connections;
  prometheus::Counter& streamed_records;
  prometheus::Counter& rejected_requests;
  prometheus::Counter& rejected_bytes;
  prometheus::Counter& stream_pauses;
  // Written at construction only, so sessions read it without a lock.
  absl::flat_hash_map<absl::string_view, RouteMetrics> routes;

  std::atomic<bool> draining{false};
  // Whole answers handed to their socket and not yet written: a request leaves in_flight when
  // it is answered and enters this before that, on its strand, so the two are never both 0
  // while an answer is on its way.
  std::atomic<int> writing{0};
  std::atomic<int> drained_ok{0};
  std::atomic<int> drained_error{0};
  std::atomic<uint64_t> in_flight_bytes{0};
  mutable std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;  // Guarded by mu.
  // Open connections, told when draining starts (close: false; a stream stops reading, an idle
  // connection closes) and when it ends (close: true). Guarded by mu.
  uint64_t next_session_id = 0;
  absl::flat_hash_map<uint64_t, std::function<void(bool close)>> sessions;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::shared_ptr<ConnectionLimits> limits;
};

namespace {

std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

class Session;

// The slots of one stream's results: a ring of stream_credit entries, since at most that many
// records are read and not yet written. Completions arrive on delivery threads; the session
// drains the ring on its strand. `scheduled` makes one post carry many completions.
class StreamRing : public StreamResults {
 public:
  StreamRing(size_t capacity, std::weak_ptr<Session> session,
             net::any_io_executor strand)
      : slots_(new Slot[capacity]), capacity_(capacity), session_(std::move(session)),
        strand_(std::move(strand)) {}

  void Complete(uint64_t slot, std::string text) override;

  // On the strand: moves the ready slots from `next` on into `out`; returns how many.
  uint64_t Drain(uint64_t next, uint64_t end, std::string* out, uint64_t* bytes) {
    scheduled_.store(false, std::memory_order_seq_cst);
    uint64_t n = 0;
    for (; next + n < end; ++n) {
      Slot& s = slots_[(next + n) % capacity_];
      // seq_cst on both sides (with Complete's store and exchange): a completion either sees
      // scheduled_ == false and posts, or is seen here.
      if (!s.ready.load(std::memory_order_seq_cst)) break;
      out->append(s.text);
      s.text.clear();
      *bytes += s.bytes;
      s.bytes = 0;
      s.ready.store(false, std::memory_order_relaxed);  // the slot is reused only by the strand
    }
    return n;
  }
  // Bytes of the body that the records up to `slot` held; released when `slot` is written.
  void Charge(uint64_t slot, uint64_t bytes) { slots_[slot % capacity_].bytes += bytes; }

 private:
  struct Slot {
    std::atomic<bool> ready{false};
    std::string text;
    uint64_t bytes = 0;  // strand only
  };
  std::unique_ptr<Slot[]> slots_;
  const size_t capacity_;
  std::weak_ptr<Session> session_;
  net::any_io_executor strand_;  // the session's strand
  std::atomic<bool> scheduled_{false};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<HttpServer::Shared> shared,
          ConnectionLimits::Slot slot)
      : stream_(std::move(socket)), shared_(std::move(shared)), retry_timer_(stream_.get_executor()),
        slot_(std::move(slot)) {
    shared_->connections.Increment();
  }
  ~Session() {
    shared_->connections.Decrement();
    Unregister();
  }

  void Run() {
    Register();
    net::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::ReadHeader,
                                                                    shared_from_this()));
  }

  // From the ring, on the strand: results are ready to be written.
  void OnResults() {
    if (!stream_open_) return;
    uint64_t released = 0;
    const uint64_t n = ring_->Drain(written_, issued_, &pending_out_, &released);
    written_ += n;
    ReleaseBytes(released);
    FlushOut();
    Pump();
  }

 private:
  // ---- whole requests -----------------------------------------------------------------------

  void ReadHeader() {
    route_ = "other";
    parser_.emplace();
    parser_->header_limit(shared_->config.max_header_bytes);
    // A stream's body has no total limit (each record has); whole bodies get theirs in OnHeader.
    parser_->body_limit(boost::none);
    // The whole header must arrive within idle_timeout: a client trickling bytes times out.
    stream_.expires_after(Millis(shared_->config.idle_timeout));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, size_t) {
    if (ec) return OnReadError(ec);
    const HttpRequest& req = parser_->get();
    started_ = absl::Now();
    const bool stream = shared_->handler.IsStream(req);
    route_ = stream ? absl::string_view("stream") : shared_->handler.Route(req);
    if (shared_->draining.load()) {
      return Refuse(JsonError(req.version(), 503, 503, "saltproxy is shutting down"));
    }
    if (!stream) {
      const auto length = parser_->content_length();
      if (length && *length > shared_->config.max_body_bytes) {
        return OnReadError(http::error::body_limit);
      }
      parser_->body_limit(shared_->config.max_body_bytes);
    }
    // A streamed body holds memory per record (charged as it is read), a whole body up to its
    // Content-Length (or the body limit, for a chunked body).
    held_bytes_ = 0;
    if (!stream) {
      held_bytes_ = parser_->content_length() ? *parser_->content_length()
                                              : shared_->config.max_body_bytes;
    }
    if (absl::Status admitted = shared_->Admit(held_bytes_); !admitted.ok()) {
      held_bytes_ = 0;
      HttpResponse response = JsonError(req.version(), 429, 429, admitted.message());
      response.set(http::field::retry_after, "1");
      return Refuse(std::move(response));
    }
    admitted_ = true;
    if (stream) return OpenStream();
    // Clients that ask (curl does above 1 MiB) wait for a 100 Continue before the body.
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_,
                                                                     req.version());
      stream_.expires_after(Millis(shared_->config.request_timeout));
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
    // The whole body within request_timeout: a slow client cannot hold its memory for long.
    stream_.expires_after(Millis(shared_->config.request_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == net::error::connection_reset ||
        ec == net::error::eof || ec == beast::error::timeout ||
        ec == net::error::operation_aborted || ec == http::error::partial_message) {
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
    Refuse(JsonError(11, status, status, message));
  }

  // Answers without reading the body, then closes: the connection is out of step with message
  // boundaries. Never counted as in flight.
  void Refuse(HttpResponse&& response) {
    shared_->Count(route_, response.result_int(), absl::ZeroDuration());
    response.keep_alive(false);
    closing_ = true;
    Write(std::move(response));
    FinishRequest();
  }

  void OnRead(beast::error_code ec, size_t) {
    if (ec) {
      if (admitted_) FinishRequest();
      return OnReadError(ec);
    }
    HttpRequest request = parser_->release();
    // The handler may answer from any thread: the answer hops back onto this session's strand.
    Responder respond([self = shared_from_this(), route = route_, started = started_,
                       keep_alive = request.keep_alive()](HttpResponse&& response) {
      self->shared_->Count(route, response.result_int(), absl::Now() - started);
      if (!keep_alive) response.keep_alive(false);
      net::post(self->stream_.get_executor(),
                [self, r = std::make_shared<HttpResponse>(std::move(response))]() mutable {
                  self->Write(std::move(*r));
                  self->FinishRequest();
                });
    });
    shared_->handler.Handle(std::move(request), std::move(respond));
  }

  void FinishRequest() {
    if (!admitted_) return;
    admitted_ = false;
    shared_->Finished(held_bytes_);
    held_bytes_ = 0;
  }

  void Write(HttpResponse&& response) {
    // Draining: this is the connection's last answer, and it says so.
    if (shared_->draining.load()) response.keep_alive(false);
    auto owned = std::make_shared<HttpResponse>(std::move(response));
    responding_ = true;
    shared_->writing.fetch_add(1);
    stream_.expires_after(Millis(shared_->config.request_timeout));
    http::async_write(stream_, *owned, [self = shared_from_this(), owned](beast::error_code ec,
                                                                         size_t) {
      self->responding_ = false;
      if (!ec && self->shared_->draining.load()) {
        self->shared_->CountDrained(owned->result_int() < 400);
      }
      self->shared_->writing.fetch_sub(1);
      if (ec) return self->Close();
      if (self->closing_ || !owned->keep_alive() || self->shared_->draining.load()) {
        return self->LingerClose();
      }
      self->ReadHeader();
    });
  }

  // ---- streams ------------------------------------------------------------------------------

  void OpenStream() {
    const HttpRequest& req = parser_->get();
    if (req.version() < 11) {
      return Refuse(JsonError(req.version(), 505, 505,
                                      "streaming needs HTTP/1.1 (a chunked answer)"));
    }
    shared_->handler.OpenStream(req, [self = shared_from_this()](StreamOpening opening) {
      auto shared_opening = std::make_shared<StreamOpening>(std::move(opening));
      net::post(self->stream_.get_executor(), [self, shared_opening] {
        self->OnStreamOpened(std::move(*shared_opening));
      });
    });
  }

  void OnStreamOpened(StreamOpening opening) {
    if (HttpResponse* refusal = std::get_if<HttpResponse>(&opening)) {
      return Refuse(std::move(*refusal));
    }
    stream_handler_ = std::move(std::get<std::unique_ptr<StreamHandler>>(opening));
    const HttpRequest& req = parser_->get();
    keep_alive_ = req.keep_alive();
    ring_ = std::make_shared<StreamRing>(static_cast<size_t>(shared_->config.stream_credit),
                                         weak_from_this(), stream_.get_executor());
    issued_ = written_ = 0;
    consumed_ = 0;
    stream_open_ = true;
    // While records are out, no read or write may be pending: the stream keeps itself alive
    // until it ends or closes (the ring's completions only hold a weak reference).
    keep_self_ = shared_from_this();
    body_done_ = parser_->is_done();
    stop_ = ended_ = reading_ = writing_ = retry_pending_ = paused_ = false;
    std::string head;
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      head = "HTTP/1.1 100 Continue\r\n\r\n";
    }
    absl::StrAppend(&head, "HTTP/1.1 200 OK\r\nContent-Type: ",
                    stream_handler_->content_type(),
                    "\r\nTransfer-Encoding: chunked\r\n",
                    keep_alive_ ? "" : "Connection: close\r\n", "\r\n");
    pending_raw_ = std::move(head);
    FlushOut();
    Pump();
  }

  int Outstanding() const { return static_cast<int>(issued_ - written_); }

  // Consumes what was read, as far as the credit allows; reads more when it needs more.
  void Pump() {
    if (!stream_open_ || ended_) return;
    std::string& body = parser_->get().body();
    bool need_more = false;
    while (!stop_ && !retry_pending_) {
      const int room = shared_->config.stream_credit - Outstanding();
      if (room <= 0) break;
      if (Outstanding() > 0 && shared_->OverBytes()) break;
      absl::string_view data(body.data() + consumed_, body.size() - consumed_);
      if (data.empty()) {
        need_more = !body_done_;
        break;
      }
      StreamHandler::Consumed c =
          stream_handler_->Consume(data, body_done_, room, issued_, ring_);
      consumed_ += c.bytes;
      if (c.records > 0) {
        ring_->Charge(issued_ + c.records - 1, c.bytes);
        Charge(c.bytes);
        issued_ += c.records;
        shared_->streamed_records.Increment(c.records);
      }
      if (c.stop) stop_ = true;
      if (c.retry) {
        // The upstream queue is full: try again shortly, reading nothing meanwhile.
        retry_pending_ = true;
        retry_timer_.expires_after(std::chrono::milliseconds(5));
        retry_timer_.async_wait([self = shared_from_this()](beast::error_code) {
          self->retry_pending_ = false;
          self->Pump();
        });
        break;
      }
      if (c.records == 0) {
        if (body_done_ && c.bytes == 0) {
          EndWithError(400, "the body ends inside a record");
        }
        need_more = !body_done_;
        break;
      }
    }
    // Keep what is unconsumed at the front; the body string is reused, not reallocated.
    if (consumed_ > 0 && (consumed_ == body.size() || consumed_ > (64 << 10))) {
      body.erase(0, consumed_);
      consumed_ = 0;
    }
    if (!stop_ && need_more && body.size() - consumed_ > shared_->config.max_body_bytes) {
      EndWithError(413, absl::StrCat("a record is larger than the limit of ",
                                     shared_->config.max_body_bytes,
                                     " bytes (http.max_body_bytes); the stream ends here"));
    }
    if (!stop_ && need_more && !reading_) {
      if (shared_->draining.load()) {
        EndWithError(503, "saltproxy is shutting down; the records after this line were not read");
      } else {
        StreamRead();
      }
    }
    // Paused at the credit (or the memory bound) until results are written.
    const bool paused = !stop_ && !need_more && !body_done_ && !reading_ && !retry_pending_;
    if (paused && !paused_) shared_->stream_pauses.Increment();
    paused_ = paused;
    MaybeEnd();
  }

  void StreamRead() {
    reading_ = true;
    // Each read must make progress within idle_timeout.
    stream_.expires_after(Millis(shared_->config.idle_timeout));
    http::async_read_some(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&Session::OnStreamRead, shared_from_this()));
  }

  void OnStreamRead(beast::error_code ec, size_t) {
    reading_ = false;
    if (ended_) return;
    if (ec) {
      if (shared_->draining.load() &&
          (ec == http::error::partial_message || ec == net::error::eof ||
           ec == http::error::end_of_stream || ec == net::error::operation_aborted)) {
        EndWithError(503, "saltproxy is shutting down; the records after this line were not read");
        return MaybeEnd();
      }
      if (ec == http::error::partial_message || ec == net::error::eof ||
          ec == http::error::end_of_stream) {
        // The client stopped sending before the last chunk (inside one, or between two) but
        // may still read: what was read is answered, then a line says the rest was not.
        EndWithError(400, "the request body ended before its last chunk (the client closed "
                          "its side inside a chunk or before the terminating 0 chunk); the "
                          "records after the last result above were not read");
        return MaybeEnd();
      }
      if (ec == net::error::connection_reset || ec == beast::error::timeout ||
          ec == net::error::operation_aborted) {
        return Close();  // the client is gone, or too slow (the timeout closed the socket)
      }
      EndWithError(400, absl::StrCat("malformed HTTP body: ", ec.message()));
      return MaybeEnd();
    }
    body_done_ = parser_->is_done();
    Pump();
  }

  // Ends the stream with one last error result, after the results before it.
  void EndWithError(int code, absl::string_view message) {
    if (stop_) return;
    stop_ = true;
    keep_alive_ = false;
    const uint64_t slot = issued_++;
    ring_->Complete(slot, JsonErrorLine(code, message));
  }

  void Charge(uint64_t bytes) {
    charged_ += bytes;
    shared_->in_flight_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
  void ReleaseBytes(uint64_t bytes) {
    charged_ -= bytes;
    shared_->in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  }

  // Writes what is pending, as one chunk; one write at a time.
  void FlushOut() {
    if (writing_) return;
    if (pending_out_.empty() && pending_raw_.empty()) return;
    out_ = std::move(pending_raw_);
    pending_raw_.clear();
    if (!pending_out_.empty()) {
      absl::StrAppend(&out_, absl::Hex(pending_out_.size()), "\r\n");
      out_.append(pending_out_);
      out_.append("\r\n");
      pending_out_.clear();
    }
    writing_ = true;
    stream_.expires_after(Millis(shared_->config.request_timeout));
    net::async_write(stream_, net::buffer(out_),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       if (ec) return self->Close();
                       self->out_.clear();
                       if (self->ended_) return self->AfterStream();
                       self->FlushOut();
                       self->MaybeEnd();
                     });
  }

  void MaybeEnd() {
    if (!stream_open_ || ended_ || writing_ || reading_ || retry_pending_) return;
    const bool input_over = stop_ || (body_done_ && consumed_ == parser_->get().body().size());
    if (!input_over || written_ != issued_ || !pending_out_.empty()) return;
    ended_ = true;
    pending_raw_ = "0\r\n\r\n";
    FlushOut();
  }

  // The final chunk is written: the next request, or close.
  void AfterStream() {
    stream_open_ = false;
    std::shared_ptr<Session> self = std::move(keep_self_);
    shared_->Count("stream", 200, absl::Now() - started_);
    if (shared_->draining.load()) shared_->CountDrained(!stop_);
    FinishRequest();
    stream_handler_.reset();
    ring_.reset();
    if (keep_alive_ && !stop_ && !shared_->draining.load()) return ReadHeader();
    LingerClose();
  }

  void Register() {
    std::lock_guard<std::mutex> lock(shared_->mu);
    session_id_ = ++shared_->next_session_id;
    shared_->sessions[session_id_] = [weak = weak_from_this()](bool close) {
      std::shared_ptr<Session> self = weak.lock();
      if (!self) return;
      net::post(self->stream_.get_executor(), [self, close] {
        if (close) return self->Close();
        self->OnDrain();
      });
    };
  }
  void Unregister() {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->sessions.erase(session_id_);
  }

  // Draining started: a stream stops reading; a connection between requests closes, unless
  // its next request has begun to arrive (that one is answered 503, then it closes). A request
  // in flight, an answer being written and a lingering close go on.
  void OnDrain() {
    if (stream_open_) return StopReading();
    if (admitted_ || closing_ || responding_ || lingering_) return;
    beast::error_code ec;
    if (buffer_.size() > 0 || stream_.socket().available(ec) > 0) return;
    Close();
  }

  // Shutdown: a pending read ends at once (the kernel reports the end of input), and the
  // stream ends after the results of what was read.
  void StopReading() {
    if (!stream_open_ || ended_) return;
    if (reading_) {
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_receive, ec);
    } else {
      Pump();
    }
  }

  // ---- closing ------------------------------------------------------------------------------

  void Close() {
    std::shared_ptr<Session> self = std::move(keep_self_);
    if (stream_open_) {
      stream_open_ = false;
      ReleaseBytes(charged_);
      shared_->Count("stream", 200, absl::Now() - started_);
      stream_handler_.reset();
    }
    FinishRequest();
    retry_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  // Closes after the peer has seen the answer: stop sending, then read and drop what the client
  // still sends (an unread body) for a moment, so that the kernel does not reset the connection
  // before the answer is read.
  void LingerClose() {
    if (stream_open_) return Close();
    lingering_ = true;
    FinishRequest();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(2));
    Drain();
  }

  void Drain() {
    auto scratch = std::make_shared<std::array<char, 4096>>();
    stream_.async_read_some(net::buffer(*scratch),
                            [self = shared_from_this(), scratch](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<HttpServer::Shared> shared_;
  net::steady_timer retry_timer_;
  ConnectionLimits::Slot slot_;  // this connection's place under http.max_connections
  absl::string_view route_;
  absl::Time started_;
  bool admitted_ = false;     // counted in flight: FinishRequest() undoes it, once
  uint64_t held_bytes_ = 0;   // reserved at admission for a whole body
  bool closing_ = false;
  bool responding_ = false;  // a whole answer is being written
  bool lingering_ = false;   // answered; waiting for the client to close

  // The open stream, if any.
  bool stream_open_ = false;
  std::unique_ptr<StreamHandler> stream_handler_;
  std::shared_ptr<StreamRing> ring_;
  std::shared_ptr<Session> keep_self_;  // set while a stream is open
  uint64_t session_id_ = 0;
  uint64_t issued_ = 0;   // slots taken
  uint64_t written_ = 0;  // slots moved to the output
  size_t consumed_ = 0;   // body bytes consumed, at the front of the parser's body
  uint64_t charged_ = 0;  // body bytes of records not yet answered
  bool keep_alive_ = true;
  bool body_done_ = false;
  bool stop_ = false;
  bool ended_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool retry_pending_ = false;
  bool paused_ = false;
  std::string pending_out_;  // results not yet written
  std::string pending_raw_;  // bytes to write before the next chunk (status line, last chunk)
  std::string out_;          // the write in progress
};

void StreamRing::Complete(uint64_t slot, std::string text) {
  Slot& s = slots_[slot % capacity_];
  s.text = std::move(text);
  s.ready.store(true, std::memory_order_seq_cst);
  if (!scheduled_.exchange(true, std::memory_order_seq_cst)) {
    std::shared_ptr<Session> session = session_.lock();
    if (!session) return;
    net::post(strand_, [session = std::move(session)] { session->OnResults(); });
  }
}

void Accept(net::io_context& ioc, std::shared_ptr<HttpServer::Shared> shared) {
  tcp::acceptor* acceptor = shared->acceptor.get();
  acceptor->async_accept(net::make_strand(ioc), [&ioc, shared](beast::error_code ec,
                                                               tcp::socket socket) {
    if (ec == net::error::operation_aborted || !shared->acceptor->is_open()) return;
    if (!ec) {
      beast::error_code endpoint_ec;
      const tcp::endpoint remote = socket.remote_endpoint(endpoint_ec);
      const std::string peer =
          endpoint_ec ? "unknown" : absl::StrCat(remote.address().to_string(), ":", remote.port());
      if (ConnectionLimits::Slot slot = shared->limits->Admit(remote.address(), peer); !slot) {
        socket.close(endpoint_ec);  // counted and logged by Admit
      } else {
        beast::error_code opt_ec;
        socket.set_option(tcp::no_delay(true), opt_ec);
        std::make_shared<Session>(std::move(socket), shared, std::move(slot))->Run();
      }
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

uint64_t HttpServer::in_flight_bytes() const {
  return shared_->in_flight_bytes.load(std::memory_order_relaxed);
}

absl::Status HttpServer::Start() {
  absl::StatusOr<std::unique_ptr<tcp::acceptor>> acceptor =
      BindAcceptor(ioc_, config_.listen, "http.listen");
  if (!acceptor.ok()) return acceptor.status();
  port_ = (*acceptor)->local_endpoint().port();
  shared_->acceptor = std::move(*acceptor);
  Accept(ioc_, shared_);
  work_.emplace(ioc_.get_executor());
  for (int i = 0; i < config_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  LogEvent(LogLevel::kInfo, "http_listening",
           {{"address", config_.listen.host}, {"port", absl::StrCat(port_)}});
  return absl::OkStatus();
}

void HttpServer::StopAccepting() {
  if (accepting_stopped_) return;
  accepting_stopped_ = true;
  shared_->draining = true;
  if (shared_->acceptor) CloseAcceptor(*shared_->acceptor);
  shared_->TellSessions(/*close=*/false);
}

int HttpServer::WaitAnswered(absl::Time deadline) {
  return WaitInFlight(shared_->mu, shared_->idle, shared_->in_flight, deadline);
}

HttpServer::Drained HttpServer::Stop(absl::Time deadline) {
  Drained drained;
  if (stopped_) return drained;
  StopAccepting();
  stopped_ = true;
  // Each connection closes once its answer is written and its client has closed too (or its
  // linger ended); none is left to the deadline unless an answer or a client is late.
  auto sessions_left = [&] {
    std::lock_guard<std::mutex> lock(shared_->mu);
    return shared_->sessions.size();
  };
  WaitClosed(sessions_left, deadline);
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    drained.abandoned = shared_->in_flight + shared_->writing.load();
  }
  drained.answered_error_status = shared_->drained_error.load();
  drained.answered = shared_->drained_ok.load() + drained.answered_error_status;
  if (drained.abandoned > 0) {
    LogEvent(LogLevel::kWarn, "http_shutdown_abandoned",
             {{"requests", absl::StrCat(drained.abandoned)}});
  }
  // Close what is left, so that no client waits on a connection nobody serves, then stop.
  shared_->TellSessions(/*close=*/true);
  WaitClosed(sessions_left, absl::Now() + absl::Milliseconds(100));
  work_.reset();
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // The acceptor belongs to ioc_, which dies before shared_ (sessions and the forwarder's
  // pending answers may still hold shared_).
  shared_->acceptor.reset();
  return drained;
}

void HttpServer::Shutdown(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  StopAccepting();
  WaitAnswered(deadline);
  Stop(deadline);
}

}  // namespace saltproxy
