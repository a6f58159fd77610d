// The salting contract between saltproxy and its consumers: how a hot key's salted keys are
// derived, where its salts go, and the headers every salted or rerouted record carries.
// Header-only, no dependencies beyond the standard library and partitioner.h, so that a consumer
// in any language can port it from this page.
//
// A hot key K salted n ways has salts 0..n-1:
//   - salt 0's partition is the Java default partition of K, where its records went before it
//     turned hot when its producers partition as the Java client does (the salt map's cut-over
//     names every partition they may be on);
//   - a salted record's key names its partition (SaltedKeyFor): K itself on K's default
//     partition, else K, the byte 0x1F (ASCII unit separator), then the partition in decimal.
//     So a salted key means one partition, whichever proxy instance salted the key, and with
//     whatever layout;
//   - salts 1..n-1 go to partitions the proxy chooses where the other hot keys' load is least,
//     distinct from each other and from salt 0 (a key has at most as many salts as its topic
//     has partitions). They are not derived from the key: the salt map names them
//     (KeyLayout::partitions in salt_map.h, salt i on partitions[i]), and a key whose salt
//     count changes keeps the partitions it had, as far as they go.
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

#include "saltproxy/partitioner.h"

namespace saltproxy {

inline constexpr std::string_view kHeaderOriginalKey = "saltproxy-key";
inline constexpr std::string_view kHeaderInstance = "saltproxy-instance";
inline constexpr std::string_view kHeaderSequence = "saltproxy-seq";
inline constexpr std::string_view kHeaderEpoch = "saltproxy-epoch";

inline constexpr char kSaltSeparator = '\x1f';

// `key`, the separator, then `suffix` in decimal; `key` itself for suffix 0.
inline std::string SaltedKey(std::string_view key, int32_t suffix) {
  std::string salted(key);
  if (suffix > 0) {
    salted.push_back(kSaltSeparator);
    salted.append(std::to_string(suffix));
  }
  return salted;
}

// The key under which a salted record of `key` goes to `partition` of a topic of `partitions`
// partitions: `key` on its Java default partition, else `key`, the separator and the partition.
inline std::string SaltedKeyFor(std::string_view key, int32_t partition, int32_t partitions) {
  if (partition == DefaultPartition(key, partitions)) return std::string(key);
  std::string salted(key);
  salted.push_back(kSaltSeparator);
  salted.append(std::to_string(partition));
  return salted;
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
