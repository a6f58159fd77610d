#include "proxy/net/connection_limits.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/common/log.h"

namespace saltproxy {

constexpr std::string_view kTotal = "max_connections";
constexpr std::string_view kPerAddress = "max_connections_per_address";

ConnectionLimits::Slot::Slot(Slot&& other) noexcept
    : limits_(std::move(other.limits_)), address_(std::move(other.address_)) {
  other.limits_ = nullptr;
}

ConnectionLimits::Slot& ConnectionLimits::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (limits_) limits_->Release(address_);
    limits_ = std::move(other.limits_);
    address_ = std::move(other.address_);
    other.limits_ = nullptr;
  }
  return *this;
}

ConnectionLimits::Slot::~Slot() {
  if (limits_) limits_->Release(address_);
}

ConnectionLimits::ConnectionLimits(std::string listener, int max_total, int max_per_address,
                                   prometheus::Registry& registry)
    : listener_(std::move(listener)), max_total_(max_total), max_per_address_(max_per_address) {
  auto& family = prometheus::BuildCounter()
                     .Name(absl::StrCat("saltproxy_", listener_, "_connections_refused_total"))
                     .Help(absl::StrCat("Connections to the ", listener_,
                                        " listener closed on accept, by the bound they were over (",
                                        listener_, ".max_connections, ", listener_,
                                        ".max_connections_per_address)"))
                     .Register(registry);
  for (std::string_view reason : {kTotal, kPerAddress}) {
    refused_[std::string(reason)] = &family.Add({{"reason", std::string(reason)}});
  }
}

std::shared_ptr<ConnectionLimits> ConnectionLimits::Make(std::string listener, int max_total,
                                                         int max_per_address,
                                                         prometheus::Registry& registry) {
  return std::shared_ptr<ConnectionLimits>(
      new ConnectionLimits(std::move(listener), max_total, max_per_address, registry));
}

ConnectionLimits::Slot ConnectionLimits::Admit(const boost::asio::ip::address& address,
                                               std::string_view peer) {
  // An IPv4 peer on a dual-stack socket counts as its IPv4 address.
  boost::asio::ip::address key = address;
  if (key.is_v6() && key.to_v6().is_v4_mapped()) {
    key = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, key.to_v6());
  }
  std::string name = key.to_string();
  Slot slot;
  std::string_view refusal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = per_address_.find(name);
    const int mine = it == per_address_.end() ? 0 : it->second;
    if (max_total_ > 0 && open_ >= max_total_) {
      refusal = kTotal;
    } else if (max_per_address_ > 0 && mine >= max_per_address_) {
      refusal = kPerAddress;
    } else {
      ++per_address_[name];
      ++open_;
      slot.limits_ = shared_from_this();
      slot.address_ = std::move(name);
    }
  }
  if (!refusal.empty()) Refused(refusal, peer);
  return slot;
}

void ConnectionLimits::Refused(std::string_view reason, std::string_view peer) {
  refused_.find(reason)->second->Increment();
  uint64_t not_logged = 0;
  if (!log_limiter_.Allow(reason, &not_logged)) return;
  const bool total = reason == kTotal;
  LogEvent(LogLevel::kWarn, absl::StrCat(listener_, "_connection_refused"),
           {{"peer", peer},
            {"reason", reason},
            {"setting", absl::StrCat(listener_, ".", absl::string_view(reason.data(), reason.size()))},
            {"limit", absl::StrCat(total ? max_total_ : max_per_address_)},
            {"refused_since_last_line", absl::StrCat(not_logged)}});
}

void ConnectionLimits::Release(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  --open_;
  auto it = per_address_.find(address);
  if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
}

int ConnectionLimits::open() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

}  // namespace saltproxy
