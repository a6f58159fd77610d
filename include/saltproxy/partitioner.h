// The Java client's default partitioner for keyed records, which saltproxy keeps for every key
// that is not hot: partition = (murmur2(key) & 0x7fffffff) % partitions, with Kafka's murmur2
// (seed 0x9747b28c), as in org.apache.kafka.common.utils.Utils. Header-only.
//
//   int32_t p = saltproxy::DefaultPartition("user-42", 16);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace saltproxy {

// Kafka's murmur2 of `size` bytes (the Java code's int, as its unsigned bit pattern).
inline uint32_t murmur2(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t kM = 0x5bd1e995;
  constexpr int kR = 24;
  uint32_t h = kSeed ^ static_cast<uint32_t>(size);
  const size_t whole = size / 4;
  for (size_t i = 0; i < whole; ++i) {
    const unsigned char* b = bytes + 4 * i;
    uint32_t k = static_cast<uint32_t>(b[0]) | (static_cast<uint32_t>(b[1]) << 8) |
                 (static_cast<uint32_t>(b[2]) << 16) | (static_cast<uint32_t>(b[3]) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  const unsigned char* tail = bytes + 4 * whole;
  switch (size % 4) {
    case 3: h ^= static_cast<uint32_t>(tail[2]) << 16; [[fallthrough]];
    case 2: h ^= static_cast<uint32_t>(tail[1]) << 8; [[fallthrough]];
    case 1:
      h ^= static_cast<uint32_t>(tail[0]);
      h *= kM;
  }
  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return h;
}

// The partition the Java client's default partitioner picks for a non-null key.
inline int32_t DefaultPartition(std::string_view key, int32_t partitions) {
  return static_cast<int32_t>((murmur2(key.data(), key.size()) & 0x7fffffffu) %
                              static_cast<uint32_t>(partitions));
}

}  // namespace saltproxy
