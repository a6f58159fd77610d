// CRC-32C (Castagnoli), the checksum of Kafka's record batches (v2): SSE 4.2's crc32
// instruction where the processor has it, a table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace saltproxy::kafka {

uint32_t Crc32c(const void* data, size_t size);

}  // namespace saltproxy::kafka
