// The Kafka-protocol listener: accepts connections (Boost.Asio), splits each connection's bytes
// into size-prefixed request frames, hands every frame to a FrameHandler, and writes the answers
// back in request order, whatever order they complete in. A connection may pipeline up to
// max_in_flight requests (the client's max.in.flight); beyond that the session stops reading
// until the oldest is answered, so a fast client cannot make the proxy buffer without bound.
//
// What peers can make it hold is bounded too: a frame's buffer grows only as its bytes arrive
// (so announcing a 100 MB frame costs nothing until 100 MB are sent), the bytes of frames being
// read or handled on all connections together stay within max_in_flight_bytes (a connection that
// would pass it stops reading until others are answered), a begun frame must be whole within
// frame_timeout, and connections are bounded in total and per client address.
//
//   KafkaServer server(options, handler, metrics);
//   RETURN_IF_ERROR(server.Start());        // server.port() is the bound port
//   server.StopAccepting();                 // shutdown: no new connection, no new request
//   server.WaitAnswered(deadline);          // requests in flight answered (or deadline)
//   KafkaServer::Drained d = server.Stop(deadline);  // answers written, connections closed
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/config/config.h"
#include "proxy/metrics/metrics.h"

namespace saltproxy {

// Answers one request frame exactly once, from any thread: with the response frame's payload
// (without the 4-byte size), with nullopt for a request that gets no response (acks=0), or by
// closing the connection (a protocol violation the client must not survive).
class FrameReply {
 public:
  enum class Kind { kRespond, kNoResponse, kClose };
  using Send = std::function<void(Kind, std::string)>;
  explicit FrameReply(Send send) : send_(std::move(send)) {}
  FrameReply(FrameReply&&) = default;
  FrameReply& operator=(FrameReply&&) = default;
  // A reply dropped without an answer closes the connection: a client must never wait for ever.
  ~FrameReply();
  void Respond(std::string payload);
  void NoResponse();
  void Close(std::string_view reason);

 private:
  Send send_;
};

class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // `frame` is one request without its size prefix. `connection` identifies the connection
  // (for per-connection state such as the client's id in logs).
  virtual void Handle(std::string frame, uint64_t connection, FrameReply reply) = 0;
  // The connection was closed: what was kept for it may go. On the connection's strand, at most
  // once per connection (a connection the server drops at its own destruction is not told).
  virtual void Closed(uint64_t connection) { (void)connection; }
};

struct KafkaServerOptions {
  Endpoint listen{"127.0.0.1", 9092};
  int threads = 2;
  uint32_t max_frame_bytes = 100 << 20;
  int max_in_flight_per_connection = 16;
  absl::Duration idle_timeout = absl::Minutes(10);
  // The rest bound what peers can make the listener hold (KafkaListenerConfig says how).
  uint64_t max_in_flight_bytes = 256ull << 20;
  absl::Duration frame_timeout = absl::Seconds(30);
  int max_connections = 8192;
  int max_connections_per_address = 1024;
};

class KafkaServer {
 public:
  KafkaServer(const KafkaServerOptions& options, FrameHandler& handler, Metrics& metrics);
  ~KafkaServer();

  absl::Status Start();
  uint16_t port() const { return port_; }

  // Shutdown, in the steps App::Shutdown spaces out over its timeout.
  // Closes the listening socket and stops reading requests: a connection waiting for its next
  // request stops reading at once; a frame already begun is read whole and handled. Requests in
  // flight go on; a connection closes (FIN after its last answer) once all are written.
  void StopAccepting();
  // Waits until every request read has its answer (maybe not yet written), or the deadline;
  // returns how many still wait.
  int WaitAnswered(absl::Time deadline);
  struct Drained {
    int answered = 0;   // answers written since StopAccepting
    int abandoned = 0;  // requests read whose answer was not written by the deadline
  };
  // Waits until the answers are written and the connections closed, or the deadline; then
  // closes what is left and joins the workers.
  Drained Stop(absl::Time deadline);
  // All three at once (tests, and the destructor with a zero timeout).
  void Shutdown(absl::Duration timeout);

  struct Shared;

 private:
  KafkaServerOptions options_;
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
