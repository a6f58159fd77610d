#include "proxy/kafka/crc32c.h"

#include <array>
#include <cstring>

namespace saltproxy::kafka {
namespace {

constexpr uint32_t kPoly = 0x82f63b78;  // Castagnoli, reflected

// Slicing-by-8 tables: table[k][b] is the CRC of byte b followed by k zero bytes.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

Tables MakeTables() {
  Tables t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
  return t;
}

const Tables& SoftwareTables() {
  static const Tables tables = MakeTables();
  return tables;
}

uint32_t Software(uint32_t crc, const unsigned char* p, size_t n) {
  const Tables& t = SoftwareTables();
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo;
    uint32_t hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;  // little-endian, as every target saltproxy builds for
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

#if defined(__x86_64__)
// The crc32 instruction has a latency of three cycles and a throughput of one a cycle, so three
// independent streams over three adjacent blocks run about three times as fast as one; the three
// CRCs are then combined by "shifting" the first over the length of the others, a linear map on
// the CRC's 32 bits, tabulated for the two block lengths (Mark Adler's method).
constexpr size_t kLong = 8192;
constexpr size_t kShort = 256;

using ShiftTable = std::array<std::array<uint32_t, 256>, 4>;

uint32_t MatrixTimes(const uint32_t* matrix, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec; vec >>= 1, ++matrix) {
    if (vec & 1) sum ^= *matrix;
  }
  return sum;
}

void MatrixSquare(uint32_t* square, const uint32_t* matrix) {
  for (int n = 0; n < 32; ++n) square[n] = MatrixTimes(matrix, matrix[n]);
}

// The operator that appends `len` zero bytes (a power of two) to a CRC.
ShiftTable MakeShift(size_t len) {
  uint32_t even[32];
  uint32_t odd[32];
  odd[0] = kPoly;  // one zero bit
  for (int n = 1; n < 32; ++n) odd[n] = 1u << (n - 1);
  MatrixSquare(even, odd);  // two zero bits
  MatrixSquare(odd, even);  // four zero bits
  const uint32_t* op = nullptr;
  while (true) {
    MatrixSquare(even, odd);  // first pass: one zero byte
    len >>= 1;
    if (len == 0) {
      op = even;
      break;
    }
    MatrixSquare(odd, even);
    len >>= 1;
    if (len == 0) {
      op = odd;
      break;
    }
  }
  ShiftTable table{};
  for (uint32_t n = 0; n < 256; ++n) {
    table[0][n] = MatrixTimes(op, n);
    table[1][n] = MatrixTimes(op, n << 8);
    table[2][n] = MatrixTimes(op, n << 16);
    table[3][n] = MatrixTimes(op, n << 24);
  }
  return table;
}

uint32_t Shift(const ShiftTable& t, uint32_t crc) {
  return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^ t[3][crc >> 24];
}

__attribute__((target("sse4.2"))) inline uint64_t Step(uint64_t crc, const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_ia32_crc32di(crc, v);
}

template <size_t kBlock>
__attribute__((target("sse4.2"))) uint64_t ThreeWay(uint64_t crc0, const ShiftTable& shift,
                                                    const unsigned char*& p, size_t& n) {
  while (n >= 3 * kBlock) {
    uint64_t crc1 = 0;
    uint64_t crc2 = 0;
    for (size_t i = 0; i < kBlock; i += 8) {
      crc0 = Step(crc0, p + i);
      crc1 = Step(crc1, p + kBlock + i);
      crc2 = Step(crc2, p + 2 * kBlock + i);
    }
    crc0 = Shift(shift, static_cast<uint32_t>(crc0)) ^ static_cast<uint32_t>(crc1);
    crc0 = Shift(shift, static_cast<uint32_t>(crc0)) ^ static_cast<uint32_t>(crc2);
    p += 3 * kBlock;
    n -= 3 * kBlock;
  }
  return crc0;
}

__attribute__((target("sse4.2"))) uint32_t Hardware(uint32_t crc, const unsigned char* p,
                                                    size_t n) {
  static const ShiftTable shift_long = MakeShift(kLong);
  static const ShiftTable shift_short = MakeShift(kShort);
  uint64_t c = ~crc;
  c = ThreeWay<kLong>(c, shift_long, p, n);
  c = ThreeWay<kShort>(c, shift_short, p, n);
  for (; n >= 8; p += 8, n -= 8) c = Step(c, p);
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t Crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (HasSse42()) return Hardware(0, p, size);
#endif
  return Software(0, p, size);
}

uint32_t Crc32cPortable(const void* data, size_t size) {
  return Software(0, static_cast<const unsigned char*>(data), size);
}

bool Crc32cAccelerated() {
#if defined(__x86_64__)
  return HasSse42();
#else
  return false;
#endif
}

}  // namespace saltproxy::kafka
