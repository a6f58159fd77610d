// CRC-32C (Castagnoli), the checksum of Kafka's record batches (v2): SSE 4.2's crc32
// instruction, three streams at a time, where the processor has it; slicing-by-8 tables
// otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

namespace saltproxy::kafka {

uint32_t Crc32c(const void* data, size_t size);

// The table version, whatever the processor (for tests, which compare the two).
uint32_t Crc32cPortable(const void* data, size_t size);
// Whether Crc32c uses the crc32 instruction.
bool Crc32cAccelerated();

}  // namespace saltproxy::kafka
