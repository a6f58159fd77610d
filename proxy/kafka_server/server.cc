#include "proxy/kafka_server/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/byte_budget.h"
#include "proxy/net/connection_limits.h"
#include "proxy/net/drain.h"

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
        held_bytes(prometheus::BuildGauge()
                       .Name("saltproxy_kafka_in_flight_bytes")
                       .Help("Bytes held by Kafka-protocol requests being read or handled, all "
                             "connections together (bounded by kafka.max_in_flight_bytes)")
                       .Register(metrics.registry())
                       .Add({})),
        held_limit(prometheus::BuildGauge()
                       .Name("saltproxy_kafka_in_flight_bytes_limit")
                       .Help("kafka.max_in_flight_bytes")
                       .Register(metrics.registry())
                       .Add({})),
        budget_full(prometheus::BuildCounter()
                        .Name("saltproxy_kafka_in_flight_bytes_full_total")
                        .Help("Times a Kafka-protocol connection stopped reading because "
                              "kafka.max_in_flight_bytes was reached")
                        .Register(metrics.registry())
                        .Add({})),
        frames_reading(prometheus::BuildGauge()
                           .Name("saltproxy_kafka_frames_reading")
                           .Help("Kafka-protocol request frames begun and not yet fully read")
                           .Register(metrics.registry())
                           .Add({})),
        budget(o.max_in_flight_bytes, [this](uint64_t held) { held_bytes.Set(double(held)); },
               [this] { budget_full.Increment(); }),
        limits(ConnectionLimits::Make("kafka", o.max_connections, o.max_connections_per_address,
                                      metrics.registry())),
        frames(prometheus::BuildCounter()
                   .Name("saltproxy_kafka_requests_total")
                   .Help("Kafka-protocol request frames read")
                   .Register(metrics.registry())
                   .Add({})),
        errors(prometheus::BuildCounter()
                   .Name("saltproxy_kafka_protocol_errors_total")
                   .Help("Kafka-protocol connections closed for bad input, by reason")
                   .Register(metrics.registry())) {
    for (const char* reason :
         {"frame_too_large", "negative_size", "frame_timeout", "bad_request"}) {
      by_reason[reason] = &errors.Add({{"reason", reason}});
    }
    held_limit.Set(double(o.max_in_flight_bytes));
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

  const KafkaServerOptions options;
  FrameHandler& handler;
  prometheus::Gauge& connections;
  prometheus::Gauge& held_bytes;
  prometheus::Gauge& held_limit;
  prometheus::Counter& budget_full;
  prometheus::Gauge& frames_reading;
  ByteBudget budget;
  std::shared_ptr<ConnectionLimits> limits;
  prometheus::Counter& frames;
  prometheus::Family<prometheus::Counter>& errors;
  std::map<std::string, prometheus::Counter*> by_reason;  // written in the constructor only
  std::atomic<uint64_t> next_connection{1};
  std::atomic<bool> draining{false};
  // Requests read whose answer is not yet written (nor dropped with its connection). A request
  // leaves in_flight when answered, after this, so the two are never both 0 before the write.
  std::atomic<int> unwritten{0};
  std::atomic<int> drained_answers{0};  // answers written while draining
  std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;  // guarded by mu
  // Open connections by id, told when draining starts and ends (TellSessions). Guarded by mu.
  absl::flat_hash_map<uint64_t, std::function<void(bool close)>> sessions;
  std::unique_ptr<tcp::acceptor> acceptor;
};

namespace {

// A frame's buffer starts at this size and then at most doubles, each time only after the
// bytes already asked for have arrived: a peer makes the session hold at most twice what it
// sent (plus this), never the size it announces.
constexpr uint64_t kFirstChunk = 16 << 10;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<KafkaServer::Shared> shared,
          ConnectionLimits::Slot slot, std::string peer)
      : stream_(std::move(socket)),
        frame_timer_(stream_.get_executor()),
        shared_(std::move(shared)),
        slot_(std::move(slot)),
        id_(shared_->next_connection.fetch_add(1)),
        peer_(std::move(peer)) {
    shared_->connections.Increment();
  }
  ~Session() {
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->sessions.erase(id_);
    }
    if (charged_ > 0) shared_->budget.Give(charged_);
    if (frame_size_ >= 0) shared_->frames_reading.Decrement();
    shared_->connections.Decrement();
  }

  void Run() {
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      shared_->sessions[id_] = [weak = weak_from_this()](bool close) {
        std::shared_ptr<Session> self = weak.lock();
        if (!self) return;
        net::post(self->stream_.get_executor(), [self, close] {
          if (close) return self->Close("");
          self->Drain();
        });
      };
    }
    // Accepted after draining began (the acceptor's last completion): nothing is read.
    if (shared_->draining.load()) {
      return net::dispatch(stream_.get_executor(),
                           beast::bind_front_handler(&Session::Drain, shared_from_this()));
    }
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
    if (ec) return ReadFailed();
    int32_t size = static_cast<int32_t>((uint32_t{size_[0]} << 24) | (uint32_t{size_[1]} << 16) |
                                        (uint32_t{size_[2]} << 8) | uint32_t{size_[3]});
    if (size < 0) return Reject("negative_size", absl::StrCat("negative frame size ", size));
    if (static_cast<uint32_t>(size) > shared_->options.max_frame_bytes) {
      return Reject("frame_too_large",
                    absl::StrCat("frame of ", size, " bytes is over the limit of ",
                                 shared_->options.max_frame_bytes, " (kafka.max_frame_bytes)"));
    }
    // The frame is under way: no other read starts until it is whole, and it must be whole
    // within kafka.frame_timeout, whether its bytes trickle in or wait for the budget.
    reading_ = true;
    frame_size_ = size;
    shared_->frames_reading.Increment();
    frame_timer_.expires_after(
        std::chrono::milliseconds(absl::ToInt64Milliseconds(shared_->options.frame_timeout)));
    frame_timer_.async_wait([self = shared_from_this(), frame = ++frames_begun_](
                                beast::error_code ec) {
      if (ec || self->closed_ || frame != self->frames_begun_ || self->frame_size_ < 0) return;
      self->Reject("frame_timeout",
                   absl::StrCat("frame of ", self->frame_size_, " bytes not whole after ",
                                absl::FormatDuration(self->shared_->options.frame_timeout),
                                " (kafka.frame_timeout); ", self->have_, " bytes arrived"));
    });
    ReadBody();
  }

  // Reads the frame's body into what the buffer has room for; makes the buffer bigger only
  // once it is full and more bytes are waiting on the socket.
  void ReadBody() {
    if (closed_) return;
    if (have_ == static_cast<uint64_t>(frame_size_)) return OnFrame();
    if (have_ < frame_.size()) {
      stream_.async_read_some(net::buffer(frame_.data() + have_, frame_.size() - have_),
                              beast::bind_front_handler(&Session::OnBody, shared_from_this()));
      return;
    }
    beast::error_code ec;
    if (stream_.socket().available(ec) > 0 && !ec) return Grow();  // they are there already
    stream_.socket().async_wait(tcp::socket::wait_read,
                                beast::bind_front_handler(&Session::OnReadable, shared_from_this()));
  }

  void OnBody(beast::error_code ec, size_t n) {
    if (ec) return ReadFailed();
    have_ += n;
    ReadBody();
  }

  void OnReadable(beast::error_code ec) {
    if (closed_) return;
    if (ec) return ReadFailed();
    beast::error_code peek_ec;
    if (stream_.socket().available(peek_ec) == 0 && !peek_ec) {
      // Nothing to read: the peer closed, or this is a wake-up left over from the bytes of the
      // size (Asio may report a socket readable once more after they were read).
      char byte;
      stream_.socket().non_blocking(true, peek_ec);
      const size_t n =
          stream_.socket().receive(net::buffer(&byte, 1), tcp::socket::message_peek, peek_ec);
      if (peek_ec == net::error::would_block) return ReadBody();  // wait again
      if (peek_ec || n == 0) return Close("");
    }
    Grow();
  }

  // Takes the bytes for a bigger buffer from the budget (or waits for them), then makes it.
  void Grow() {
    beast::error_code ec;
    const uint64_t available = stream_.socket().available(ec);
    const uint64_t want = std::min<uint64_t>(
        static_cast<uint64_t>(frame_size_), std::max({have_ + available, 2 * have_, kFirstChunk}));
    const uint64_t more = want - charged_;
    ByteBudget::Ticket ticket = 0;
    const bool taken =
        shared_->budget.Take(more, &ticket, [self = shared_from_this(), want, more] {
          net::post(self->stream_.get_executor(), [self, want, more] {
            self->waiting_ = 0;
            self->charged_ += more;
            if (self->closed_) return;  // the destructor gives the bytes back
            self->Resize(want);
          });
        });
    if (!taken) {
      waiting_ = ticket;  // reading stops here until the budget has room
      return;
    }
    charged_ += more;
    Resize(want);
  }

  void Resize(uint64_t want) {
    std::string bigger;
    bigger.reserve(want);
    bigger.append(frame_.data(), have_);
    bigger.resize(want);
    frame_ = std::move(bigger);
    ReadBody();
  }

  void OnFrame() {
    reading_ = false;
    frame_size_ = -1;
    have_ = 0;
    frame_timer_.cancel();
    shared_->frames_reading.Decrement();
    shared_->frames.Increment();
    const uint64_t slot_id = first_slot_ + slots_.size();
    slots_.emplace_back();
    shared_->unwritten.fetch_add(1);
    shared_->Started();
    // The frame's bytes stay charged to the budget until its answer is back.
    const uint64_t held = std::exchange(charged_, 0);
    // Answers hop back onto this connection's strand and wait there for their turn.
    FrameReply reply([self = shared_from_this(), slot_id, held](FrameReply::Kind kind,
                                                                 std::string p) {
      self->shared_->budget.Give(held);
      net::post(self->stream_.get_executor(),
                [self, slot_id, kind, p = std::move(p)]() mutable {
                  self->Deliver(slot_id, kind, std::move(p));
                });
    });
    shared_->handler.Handle(std::exchange(frame_, std::string()), id_, std::move(reply));
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
        shared_->unwritten.fetch_sub(1);
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
        if (!ec && self->shared_->draining.load()) self->shared_->drained_answers.fetch_add(1);
        self->shared_->unwritten.fetch_sub(1);
        if (ec) return self->Close("");
        self->Flush();
      });
    }
    if (shared_->draining.load()) return Drain();
    ReadSize();
  }

  // Draining: read no further request. A read waiting for the next frame's size is cancelled
  // (once no write is under way: cancel would end it too); a frame already begun is read whole
  // and handled. Once every answer is written, the connection closes.
  void Drain() {
    if (closed_ || lingering_) return;
    if (reading_) {
      if (frame_size_ < 0 && !writing_) {
        beast::error_code ec;
        stream_.socket().cancel(ec);
      }
      return;
    }
    if (!writing_ && slots_.empty()) LingerClose();
  }

  // A read ended without its bytes: while draining, that is the end of reading (a cancelled wait
  // for the next request, or a client that closed its side) and the answers still go out.
  void ReadFailed() {
    reading_ = false;
    if (!shared_->draining.load() || closed_) return Close("");
    frame_timer_.cancel();
    Drain();
  }

  // Every answer is written: FIN after them, then read and drop what the client still sends
  // until it closes (or a moment passes), so that the kernel does not reset the connection
  // before the client has read its answers.
  void LingerClose() {
    lingering_ = true;
    frame_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(1));
    Discard();
  }

  void Discard() {
    auto scratch = std::make_shared<std::array<char, 4096>>();
    stream_.async_read_some(net::buffer(*scratch),
                            [self = shared_from_this(), scratch](beast::error_code ec, size_t) {
                              if (ec) return self->Close("");
                              self->Discard();
                            });
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
    shared_->handler.Closed(id_);  // here, on the strand: the handler outlives running sessions
    // Answers not written now never will be.
    shared_->unwritten.fetch_sub(static_cast<int>(slots_.size()));
    // A take still queued is dropped (with the reference it holds to this session); one granted
    // already is counted in charged_ by its callback, and given back by the destructor.
    if (waiting_ != 0 && shared_->budget.Cancel(waiting_)) waiting_ = 0;
    frame_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
    // The partly read frame's buffer goes now rather than with the last pending handler.
    std::string().swap(frame_);
  }

  beast::tcp_stream stream_;
  net::steady_timer frame_timer_;
  std::shared_ptr<KafkaServer::Shared> shared_;
  ConnectionLimits::Slot slot_;
  const uint64_t id_;
  const std::string peer_;
  std::array<uint8_t, 4> size_{};
  int64_t frame_size_ = -1;      // of the frame being read; -1 between frames
  uint64_t have_ = 0;            // its bytes read so far
  uint64_t charged_ = 0;         // bytes taken from the budget for frame_'s buffer
  uint64_t frames_begun_ = 0;    // tells the frame timer which frame it was set for
  ByteBudget::Ticket waiting_ = 0;  // a take queued on the budget, if any
  std::string frame_;
  std::deque<Slot> slots_;
  uint64_t first_slot_ = 0;  // the id of slots_.front()
  std::array<uint8_t, 4> out_size_{};
  std::string out_;
  bool reading_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool lingering_ = false;
};

void Accept(net::io_context& ioc, std::shared_ptr<KafkaServer::Shared> shared) {
  shared->acceptor->async_accept(
      net::make_strand(ioc), [&ioc, shared](beast::error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !shared->acceptor->is_open()) return;
        if (!ec) {
          beast::error_code endpoint_ec;
          auto remote = socket.remote_endpoint(endpoint_ec);
          std::string peer =
              endpoint_ec ? "unknown"
                          : absl::StrCat(remote.address().to_string(), ":", remote.port());
          ConnectionLimits::Slot slot = shared->limits->Admit(remote.address(), peer);
          if (!slot) {  // counted and logged by Admit
            beast::error_code close_ec;
            socket.close(close_ec);
          } else {
            beast::error_code opt;
            socket.set_option(tcp::no_delay(true), opt);
            std::make_shared<Session>(std::move(socket), shared, std::move(slot), std::move(peer))
                ->Run();
          }
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
  work_.emplace(ioc_.get_executor());
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  LogEvent(LogLevel::kInfo, "kafka_listening",
           {{"address", options_.listen.host}, {"port", absl::StrCat(port_)}});
  return absl::OkStatus();
}

void KafkaServer::StopAccepting() {
  if (accepting_stopped_) return;
  accepting_stopped_ = true;
  shared_->draining = true;
  if (shared_->acceptor) CloseAcceptor(*shared_->acceptor);
  shared_->TellSessions(/*close=*/false);
}

int KafkaServer::WaitAnswered(absl::Time deadline) {
  return WaitInFlight(shared_->mu, shared_->idle, shared_->in_flight, deadline);
}

KafkaServer::Drained KafkaServer::Stop(absl::Time deadline) {
  Drained drained;
  if (stopped_) return drained;
  StopAccepting();
  stopped_ = true;
  auto sessions_left = [&] {
    std::lock_guard<std::mutex> lock(shared_->mu);
    return shared_->sessions.size();
  };
  WaitClosed(sessions_left, deadline);
  drained.abandoned = shared_->unwritten.load();
  drained.answered = shared_->drained_answers.load();
  if (drained.abandoned > 0) {
    LogEvent(LogLevel::kWarn, "kafka_shutdown_abandoned",
             {{"requests", absl::StrCat(drained.abandoned)}});
  }
  shared_->TellSessions(/*close=*/true);
  WaitClosed(sessions_left, absl::Now() + absl::Milliseconds(100));
  work_.reset();
  ioc_.stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // Connections still waiting for the budget are referenced from it: let them go.
  shared_->budget.DropWaiters();
  shared_->acceptor.reset();
  return drained;
}

void KafkaServer::Shutdown(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  StopAccepting();
  WaitAnswered(deadline);
  Stop(deadline);
}

}  // namespace saltproxy
