// The salting contract between saltproxy and its consumers: how a hot key's salted key and
// partitions are derived, and the headers every salted or rerouted record carries. Header-only,
// no dependencies beyond the standard library and partitioner.h, so that a consumer in any
// language can port it from this page.
//
// A hot key K salted n ways has salts 0..n-1:
//   - SaltedKey(K, 0) == K, and salt 0's partition is the Java default partition of K, so the
//     key's first salt is where its records went before it turned hot;
//   - SaltedKey(K, i) for i >= 1 is K, the byte 0x1F (ASCII unit separator), then i in decimal;
//   - salt i's partition starts at murmur2(SaltedKey(K, i)) mod P and, if an earlier salt of K
//     already has that partition, probes upward (mod P) to the first partition no earlier salt
//     has. So a key's n salts land on n distinct partitions whenever P >= n.
//
//   std::vector<int32_t> parts = saltproxy::SaltPartitions("concert-2026", 4, 16);
//   // parts[0] == saltproxy::DefaultPartition("concert-2026", 16); all four distinct
//
// Every record of a salted or rerouted key carries these headers (values in ASCII decimal,
// except the original key, which is its bytes):
//   saltproxy-key       the original key
//   saltproxy-instance  the proxy instance that routed it
//   saltproxy-seq       a sequence number per (instance, key), from 0, without gaps
//   saltproxy-epoch     the salt map epoch under which it was routed
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "saltproxy/partitioner.h"

namespace saltproxy {

inline constexpr std::string_view kHeaderOriginalKey = "saltproxy-key";
inline constexpr std::string_view kHeaderInstance = "saltproxy-instance";
inline constexpr std::string_view kHeaderSequence = "saltproxy-seq";
inline constexpr std::string_view kHeaderEpoch = "saltproxy-epoch";

inline constexpr char kSaltSeparator = '\x1f';

// The key under which salt `salt` of `key` is produced.
inline std::string SaltedKey(std::string_view key, int32_t salt) {
  std::string salted(key);
  if (salt > 0) {
    salted.push_back(kSaltSeparator);
    salted.append(std::to_string(salt));
  }
  return salted;
}

// The partitions of salts 0..salts-1 of `key` in a topic of `partitions` partitions, distinct
// whenever partitions >= salts (beyond that, salts share partitions round the ring).
inline std::vector<int32_t> SaltPartitions(std::string_view key, int32_t salts,
                                           int32_t partitions) {
  std::vector<int32_t> result;
  if (salts <= 0 || partitions <= 0) return result;
  result.reserve(static_cast<size_t>(salts));
  std::vector<bool> used(static_cast<size_t>(partitions), false);
  for (int32_t i = 0; i < salts; ++i) {
    int32_t p = DefaultPartition(SaltedKey(key, i), partitions);
    if (i < partitions) {
      while (used[static_cast<size_t>(p)]) p = (p + 1) % partitions;
      used[static_cast<size_t>(p)] = true;
    }
    result.push_back(p);
  }
  return result;
}

// The original key of a record produced under SaltedKey(key, i), when its headers are lost:
// everything before the last separator, if a decimal follows it.
inline std::string_view UnsaltedKey(std::string_view salted) {
  size_t sep = salted.rfind(kSaltSeparator);
  if (sep == std::string_view::npos || sep + 1 == salted.size()) return salted;
  for (size_t i = sep + 1; i < salted.size(); ++i) {
    if (salted[i] < '0' || salted[i] > '9') return salted;
  }
  return salted.substr(0, sep);
}

}  // namespace saltproxy
