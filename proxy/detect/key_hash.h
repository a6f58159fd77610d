// A fast seeded 64-bit hash of key bytes for the sketches: 16 bytes per step through a 64x64→128
// multiply-fold mix (the construction of wyhash), so a 64-byte key costs a few nanoseconds.
// Not for security: an adversary who knows the seed can aim collisions at a key.
//
//   uint64_t h = KeyHash(key.data(), key.size(), seed);
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace saltproxy {

namespace key_hash_internal {

inline uint64_t Mix(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t Read64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t Read32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline constexpr uint64_t kP0 = 0xa0761d6478bd642full;
inline constexpr uint64_t kP1 = 0xe7037ed1a0b428dbull;
inline constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ull;

}  // namespace key_hash_internal

inline uint64_t KeyHash(const void* data, size_t size, uint64_t seed) {
  using namespace key_hash_internal;
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t s = seed ^ Mix(seed ^ kP0, kP1);
  uint64_t a = 0, b = 0;
  size_t n = size;
  if (n <= 16) {
    if (n >= 4) {
      a = (Read32(p) << 32) | Read32(p + ((n >> 3) << 2));
      b = (Read32(p + n - 4) << 32) | Read32(p + n - 4 - ((n >> 3) << 2));
    } else if (n > 0) {
      a = (uint64_t{p[0]} << 16) | (uint64_t{p[n >> 1]} << 8) | p[n - 1];
    }
  } else {
    while (n > 16) {
      s = Mix(Read64(p) ^ kP1, Read64(p + 8) ^ s);
      p += 16;
      n -= 16;
    }
    a = Read64(p + n - 16);
    b = Read64(p + n - 8);
  }
  return Mix(kP1 ^ size, Mix(a ^ kP1, b ^ s ^ kP2));
}

}  // namespace saltproxy
