// Where a topic's cold keys' records went when that was not their default (murmur2) partition:
// the partitions a Kafka client's own partitioner chose (librdkafka's CRC32, Sarama's FNV-1a, a
// round-robin balancer). A key that turns hot must cut over from every partition its cold
// records are on, and the router keeps nothing per cold key; so this is a fixed table of
// partition sets, one per slot of a hash of the key, that only grows (bits are set, never
// cleared). It answers a superset: the partitions the key's records were sent to, and those of
// the other keys that share its slot; partitions p and p + 64 share a bit. A partition too many
// is a cut-over point a reader passes at once; one too few would let a reader release the key's
// hot records before a cold one still unread there.
//
// The table (128 KiB) is allocated by the first Note, so a topic whose clients all partition as
// the Java client does costs a pointer.
//
//   ColdFootprint footprint;
//   footprint.Note(murmur2(key), 5);                        // on the record path, lock-free
//   std::vector<int32_t> p = footprint.Partitions(murmur2(key), 16);   // {5} and neighbours'
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace saltproxy {

class ColdFootprint {
 public:
  ColdFootprint() = default;
  ~ColdFootprint();
  ColdFootprint(const ColdFootprint&) = delete;
  ColdFootprint& operator=(const ColdFootprint&) = delete;

  // A record of the key whose murmur2 is `key_hash` was sent to `partition`.
  void Note(uint32_t key_hash, int32_t partition);
  // Every partition below `partitions` that a record of the key may have been sent to, by Note,
  // ascending (a superset, see above; empty if nothing was noted in its slot).
  std::vector<int32_t> Partitions(uint32_t key_hash, int32_t partitions) const;

  static constexpr size_t kSlots = size_t{1} << 14;

 private:
  static size_t Slot(uint32_t key_hash);
  // Null until the first Note; then kSlots bit sets, owned here (freed by the destructor).
  std::atomic<std::atomic<uint64_t>*> slots_{nullptr};
};

}  // namespace saltproxy
