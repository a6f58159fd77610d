// Bounds on a listener's open connections, in total and per client address (a broker's
// max.connections and max.connections.per.ip). The listener asks Admit() for each accepted
// socket and keeps the returned slot for as long as the connection is open. A refused
// connection is counted in saltproxy_<listener>_connections_refused_total{reason} and said in a
// log line (under a flood, one line a second per reason, with how many more were refused).
//
//   auto limits = ConnectionLimits::Make("kafka", 8192, 1024, metrics.registry());
//   ConnectionLimits::Slot slot = limits->Admit(remote.address(), peer);
//   if (!slot) { socket.close(); return; }  // refused, counted and logged
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "absl/container/flat_hash_map.h"
#include "proxy/common/log_limiter.h"

namespace saltproxy {

class ConnectionLimits : public std::enable_shared_from_this<ConnectionLimits> {
 public:
  // Holds one connection's place until destroyed. Movable; empty when refused.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    ~Slot();
    explicit operator bool() const { return limits_ != nullptr; }

   private:
    friend class ConnectionLimits;
    std::shared_ptr<ConnectionLimits> limits_;
    std::string address_;
  };

  // `listener` is "kafka" or "http": it names the settings (<listener>.max_connections,
  // <listener>.max_connections_per_address) and the metric. Zero for a bound: no bound.
  static std::shared_ptr<ConnectionLimits> Make(std::string listener, int max_total,
                                                int max_per_address,
                                                prometheus::Registry& registry);

  // `peer` (address:port) is for the log line.
  Slot Admit(const boost::asio::ip::address& address, std::string_view peer);
  int open() const;

 private:
  ConnectionLimits(std::string listener, int max_total, int max_per_address,
                   prometheus::Registry& registry);
  void Release(const std::string& address);
  void Refused(std::string_view reason, std::string_view peer);

  const std::string listener_;
  const int max_total_;
  const int max_per_address_;
  std::map<std::string, prometheus::Counter*, std::less<>> refused_;  // fixed in the constructor
  LogLimiter log_limiter_;
  mutable std::mutex mu_;
  int open_ = 0;                                       // guarded by mu_
  absl::flat_hash_map<std::string, int> per_address_;  // guarded by mu_
};

}  // namespace saltproxy
