// Idempotency-Key for produce requests: a retried request with the same key within the window
// gets the first answer, and nothing is produced twice. While the first is still in flight, the
// retry waits for its answer. The same key with a different body is a client bug: 422. Memory
// is bounded: at most `capacity` keys; the oldest go first, and keys older than `window` are
// forgotten.
//
//   if (cache.Claim(key, body_hash, respond, now)) return;  // answered (or will be) by the cache
//   respond = cache.Recording(key, std::move(respond));     // the first answer is remembered
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "proxy/http/server.h"

namespace saltproxy {

// Set by an answer in which no record was written though the request was valid (every record
// failed upstream): the cache forgets it, so that the client's retry produces the records, as
// after a 5xx. The cache takes it off before the answer is sent. An answer in which some records
// were written is replayed (the retry would write them twice): it names the failed ones, for the
// client to send again in a request of their own.
inline constexpr std::string_view kNothingWrittenHeader = "Saltproxy-Nothing-Written";

class IdempotencyCache {
 public:
  IdempotencyCache(absl::Duration window, size_t capacity)
      : window_(window), capacity_(capacity) {}

  // True: the cache took `respond` (a replay, a wait for the first attempt, or a 422 conflict).
  // False: the key is new and now pending; answer through Recording(key, respond).
  bool Claim(const std::string& key, uint64_t body_hash, Responder& respond, absl::Time now,
             unsigned http_version);
  // A responder that remembers its answer for `key` (and answers every waiting retry) before
  // answering the client.
  Responder Recording(const std::string& key, Responder respond);

  size_t size() const;

 private:
  struct Entry {
    uint64_t body_hash = 0;
    absl::Time created;
    bool done = false;
    std::shared_ptr<HttpResponse> response;
    std::vector<Responder> waiters;
  };
  void Complete(const std::string& key, const HttpResponse& response, bool replayable);
  void Evict(absl::Time now);  // mu_ held

  const absl::Duration window_;
  const size_t capacity_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_;
  std::deque<std::pair<absl::Time, std::string>> order_;  // by creation
};

}  // namespace saltproxy
