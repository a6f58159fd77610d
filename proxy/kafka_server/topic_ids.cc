#include "proxy/kafka_server/topic_ids.h"

#include "absl/strings/str_cat.h"
#include "proxy/common/log.h"

namespace saltproxy {

TopicIdCache::TopicIdCache(std::string bootstrap_servers, absl::Duration refresh)
    : bootstrap_servers_(std::move(bootstrap_servers)), refresh_(refresh) {
  thread_ = std::thread([this] { Run(); });
}

TopicIdCache::~TopicIdCache() {
  StopRefreshing();
  thread_.join();
}

void TopicIdCache::StopRefreshing() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
}

kafka::Uuid TopicIdCache::Get(const std::string& topic) {
  std::shared_ptr<const kafka::TopicIds> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids = ids_;
  }
  if (auto it = ids->find(topic); it != ids->end()) return it->second;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wanted_ = true;
  }
  wake_.notify_all();
  return kafka::Uuid{};
}

void TopicIdCache::Run() {
  absl::Time last = absl::InfinitePast();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    absl::StatusOr<kafka::TopicIds> fetched = kafka::FetchTopicIds(bootstrap_servers_,
                                                                   absl::Seconds(5));
    last = absl::Now();
    lock.lock();
    if (fetched.ok()) {
      ids_ = std::make_shared<const kafka::TopicIds>(*std::move(fetched));
      warned_ = false;
    } else if (!warned_) {
      // Once per outage: zero ids are a degraded answer, not a failure.
      LogEvent(absl::IsFailedPrecondition(fetched.status()) ? LogLevel::kInfo : LogLevel::kWarn,
               "topic_ids_unavailable", {{"reason", fetched.status().message()}});
      warned_ = true;
    }
    wanted_ = false;
    // Sleep until the next refresh, or until a lookup misses (but at most once a second).
    for (;;) {
      if (stop_) return;
      const absl::Duration since = absl::Now() - last;
      if (since >= refresh_ || (wanted_ && since >= absl::Seconds(1))) break;
      const absl::Duration wait = (wanted_ ? absl::Seconds(1) : refresh_) - since;
      wake_.wait_for(lock, absl::ToChronoMilliseconds(wait) + std::chrono::milliseconds(1));
    }
  }
}

}  // namespace saltproxy
