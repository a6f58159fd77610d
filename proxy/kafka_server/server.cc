#include "proxy/kafka_server/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/net/acceptor.h"

namespace saltproxy {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

FrameReply::~FrameReply() {
  if (send_) send_(Kind::kClose, "the request was dropped without an answer");
}

void FrameReply::Respond(std::string payload) {
  Send send = std::move(send_);
  send_ = nullptr;
  if (send) send(Kind::kRespond, std::move(payload));
}

void FrameReply::NoResponse() {
  Send send = std::move(send_);
  send_ = nullptr;
  if (send) send(Kind::kNoResponse, "");
}

void FrameReply::Close(std::string_view reason) {
  Send send = std::move(send_);
  send_ = nullptr;
  if (send) send(Kind::kClose, std::string(reason));
}

struct KafkaServer::Shared {
  Shared(const KafkaServerOptions& o, FrameHandler& h, Metrics& metrics)
      : options(o),
        handler(h),
        connections(prometheus::BuildGauge()
                        .Name("saltproxy_kafka_connections")
                        .Help("Open Kafka-protocol connections")
                        .Register(metrics.registry())
                        .Add({})),
        frames(prometheus::BuildCounter()
                   .Name("saltproxy_kafka_requests_total")
                   .Help("Kafka-protocol request frames read")
                   .Register(metrics.registry())
                   .Add({})),
        errors(prometheus::BuildCounter()
                   .Name("saltproxy_kafka_protocol_errors_total")
                   .Help("Kafka-protocol connections closed for bad input, by reason")
                   .Register(metrics.registry())) {
    for (const char* reason : {"frame_too_large", "negative_size", "bad_request"}) {
      by_reason[reason] = &errors.Add({{"reason", reason}});
    }
  }

  void CountError(const std::string& reason) {
    auto it = by_reason.find(reason);
    (it != by_reason.end() ? it->second : by_reason["bad_request"])->Increment();
  }

  void Started() {
    std::lock_guard<std::mutex> lock(mu);
    ++in_flight;
  }
  void Finished() {
    std::lock_guard<std::mutex> lock(mu);
    if (--in_flight == 0) idle.notify_all();
  }

  const KafkaServerOptions options;
  FrameHandler& handler;
  prometheus::Gauge& connections;
  prometheus::Counter& frames;
  prometheus::Family<prometheus::Counter>& errors;
  std::map<std::string, prometheus::Counter*> by_reason;  // written in the constructor only
  std::atomic<uint64_t> next_connection{1};
  std::atomic<bool> draining{false};
  std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;  // guarded by mu
  std::unique_ptr<tcp::acceptor> acceptor;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<KafkaServer::Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)),
        id_(shared_->next_connection.fetch_add(1)) {
    shared_->connections.Increment();
    beast::error_code ec;
    auto remote = stream_.socket().remote_endpoint(ec);
    peer_ = ec ? "unknown" : absl::StrCat(remote.address().to_string(), ":", remote.port());
  }
  ~Session() { shared_->connections.Decrement(); }

  void Run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::ReadSize, shared_from_this()));
  }

 private:
  struct Slot {
    bool ready = false;
    FrameReply::Kind kind = FrameReply::Kind::kRespond;
    std::string payload;
  };

  void ReadSize() {
    if (reading_ || closed_ || shared_->draining.load()) return;
    if (static_cast<int>(slots_.size()) >= shared_->options.max_in_flight_per_connection) {
      return;  // resumed by Deliver() when the oldest request is answered
    }
    reading_ = true;
    stream_.expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(shared_->options.idle_timeout)));
    net::async_read(stream_, net::buffer(size_),
                    beast::bind_front_handler(&Session::OnSize, shared_from_this()));
  }

  void OnSize(beast::error_code ec, size_t) {
    reading_ = false;
    if (ec) return Close("");
    int32_t size = static_cast<int32_t>((uint32_t{size_[0]} << 24) | (uint32_t{size_[1]} << 16) |
                                        (uint32_t{size_[2]} << 8) | uint32_t{size_[3]});
    if (size < 0) return Reject("negative_size", absl::StrCat("negative frame size ", size));
    if (static_cast<uint32_t>(size) > shared_->options.max_frame_bytes) {
      return Reject("frame_too_large",
                    absl::StrCat("frame of ", size, " bytes is over the limit of ",
                                 shared_->options.max_frame_bytes, " (kafka.max_frame_bytes)"));
    }
    frame_.resize(static_cast<size_t>(size));
    reading_ = true;
    net::async_read(stream_, net::buffer(frame_),
                    beast::bind_front_handler(&Session::OnFrame, shared_from_this()));
  }

  void OnFrame(beast::error_code ec, size_t) {
    reading_ = false;
    if (ec) return Close("");
    shared_->frames.Increment();
    const uint64_t slot_id = first_slot_ + slots_.size();
    slots_.emplace_back();
    shared_->Started();
    // Answers hop back onto this connection's strand and wait there for their turn.
    FrameReply reply([self = shared_from_this(), slot_id](FrameReply::Kind kind, std::string p) {
      net::post(self->stream_.get_executor(),
                [self, slot_id, kind, p = std::move(p)]() mutable {
                  self->Deliver(slot_id, kind, std::move(p));
                });
    });
    shared_->handler.Handle(std::move(frame_), id_, std::move(reply));
    frame_.clear();
    ReadSize();
  }

  void Deliver(uint64_t slot_id, FrameReply::Kind kind, std::string payload) {
    shared_->Finished();
    if (closed_ || slot_id < first_slot_) return;
    Slot& slot = slots_[slot_id - first_slot_];
    slot.ready = true;
    slot.kind = kind;
    slot.payload = std::move(payload);
    Flush();
  }

  // Writes answered requests at the head of the queue, in request order.
  void Flush() {
    while (!writing_ && !closed_ && !slots_.empty() && slots_.front().ready) {
      Slot& head = slots_.front();
      if (head.kind == FrameReply::Kind::kClose) {
        return Reject("bad_request", head.payload);
      }
      if (head.kind == FrameReply::Kind::kNoResponse) {
        slots_.pop_front();
        ++first_slot_;
        continue;
      }
      out_ = std::move(head.payload);
      uint32_t n = static_cast<uint32_t>(out_.size());
      out_size_ = {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                   static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
      slots_.pop_front();
      ++first_slot_;
      writing_ = true;
      std::array<net::const_buffer, 2> buffers = {net::buffer(out_size_), net::buffer(out_)};
      net::async_write(stream_, buffers, [self = shared_from_this()](beast::error_code ec, size_t) {
        self->writing_ = false;
        if (ec) return self->Close("");
        self->Flush();
      });
    }
    ReadSize();
  }

  void Reject(const std::string& reason, std::string_view detail) {
    shared_->CountError(reason);
    LogEvent(LogLevel::kWarn, "kafka_connection_closed",
             {{"peer", peer_}, {"reason", reason}, {"detail", detail}});
    Close(reason);
  }

  void Close(std::string_view) {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  std::shared_ptr<KafkaServer::Shared> shared_;
  const uint64_t id_;
  std::string peer_;
  std::array<uint8_t, 4> size_{};
  std::string frame_;
  std::deque<Slot> slots_;
  uint64_t first_slot_ = 0;  // the id of slots_.front()
  std::array<uint8_t, 4> out_size_{};
  std::string out_;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
};

void Accept(net::io_context& ioc, std::shared_ptr<KafkaServer::Shared> shared) {
  shared->acceptor->async_accept(
      net::make_strand(ioc), [&ioc, shared](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !shared->acceptor->is_open()) return;
        if (!ec) {
          beast::error_code opt;
          socket.set_option(tcp::no_delay(true), opt);
          std::make_shared<Session>(std::move(socket), shared)->Run();
        }
        Accept(ioc, shared);
      });
}

}  // namespace

KafkaServer::KafkaServer(const KafkaServerOptions& options, FrameHandler& handler,
                         Metrics& metrics)
    : options_(options), shared_(std::make_shared<Shared>(options, handler, metrics)) {}

KafkaServer::~KafkaServer() { Shutdown(absl::ZeroDuration()); }

absl::Status KafkaServer::Start() {
  absl::StatusOr<std::unique_ptr<tcp::acceptor>> acceptor =
      BindAcceptor(ioc_, options_.listen, "kafka.listen");
  if (!acceptor.ok()) return acceptor.status();
  port_ = (*acceptor)->local_endpoint().port();
  shared_->acceptor = std::move(*acceptor);
  Accept(ioc_, shared_);
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  LogEvent(LogLevel::kInfo, "kafka_listening",
           {{"address", options_.listen.host}, {"port", absl::StrCat(port_)}});
  return absl::OkStatus();
}

void KafkaServer::Shutdown(absl::Duration timeout) {
  if (stopped_) return;
  stopped_ = true;
  shared_->draining = true;
  if (shared_->acceptor) CloseAcceptor(*shared_->acceptor);
  {
    std::unique_lock<std::mutex> lock(shared_->mu);
    shared_->idle.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)),
                           [&] { return shared_->in_flight == 0; });
  }
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  shared_->acceptor.reset();
}

}  // namespace saltproxy
