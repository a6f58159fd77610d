#include "proxy/salting/footprint.h"

namespace saltproxy {

ColdFootprint::~ColdFootprint() {
  std::unique_ptr<std::atomic<uint64_t>[]> owned(slots_.load(std::memory_order_acquire));
}

size_t ColdFootprint::Slot(uint32_t key_hash) {
  // Fibonacci hashing: the high bits of the product, so that keys whose murmur2 differ only in
  // high bits (and share a default partition) still spread.
  return static_cast<size_t>((key_hash * 0x9E3779B1u) >> (32 - 14));
}

void ColdFootprint::Note(uint32_t key_hash, int32_t partition) {
  if (partition < 0) return;
  std::atomic<uint64_t>* slots = slots_.load(std::memory_order_acquire);
  if (slots == nullptr) {
    auto fresh = std::make_unique<std::atomic<uint64_t>[]>(kSlots);  // zeroed
    std::atomic<uint64_t>* expected = nullptr;
    if (slots_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel)) {
      slots = fresh.release();
    } else {
      slots = expected;  // another thread's table won; ours is freed
    }
  }
  const uint64_t bit = uint64_t{1} << (partition % 64);
  std::atomic<uint64_t>& slot = slots[Slot(key_hash)];
  // Most records find their bit set already: a read, no write to a shared cache line.
  if ((slot.load(std::memory_order_relaxed) & bit) == 0) {
    slot.fetch_or(bit, std::memory_order_release);
  }
}

std::vector<int32_t> ColdFootprint::Partitions(uint32_t key_hash, int32_t partitions) const {
  std::vector<int32_t> out;
  const std::atomic<uint64_t>* slots = slots_.load(std::memory_order_acquire);
  if (slots == nullptr) return out;
  const uint64_t bits = slots[Slot(key_hash)].load(std::memory_order_acquire);
  if (bits == 0) return out;
  for (int32_t p = 0; p < partitions; ++p) {
    if (bits & (uint64_t{1} << (p % 64))) out.push_back(p);
  }
  return out;
}

}  // namespace saltproxy
