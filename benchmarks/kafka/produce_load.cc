// A Kafka producer load in the shape of Kafka's ProducerPerformance with default settings
// (idempotent, acks=all, one connection, 5 requests in flight, one 16 KB-sized batch per
// partition per request), but costing almost no CPU itself: beside producer_perf.sh, whose Java
// client uses most of the machine, it shows what saltproxy itself costs per record and per MB.
//
//   produce_load --target=127.0.0.1:9092 --topic=perf --size=1024 --records=400000
//       --partitions=8 --per_batch=15 --in_flight=5 --cpu=proxy:PID,broker:PID
//
// Each Produce (v8) request carries one batch of --per_batch records of --size bytes for each of
// --partitions partitions; batches carry the producer id InitProducerId gave and consecutive
// sequence numbers. It prints records/s, MB/s, the mean request latency (written → answer read)
// and the CPU seconds each --cpu process used during the run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/kafka/record_batch.h"
#include "proxy/kafka/wire.h"

namespace {

using namespace ::saltproxy::kafka;  // NOLINT: the protocol's vocabulary

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "produce_load: %s\n", what.c_str());
  std::exit(1);
}

class Connection {
 public:
  explicit Connection(const std::string& target) {
    const size_t colon = target.rfind(':');
    if (colon == std::string::npos) Die("--target must be host:port");
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(target.substr(colon + 1).c_str())));
    if (::inet_pton(AF_INET, target.substr(0, colon).c_str(), &a.sin_addr) != 1) {
      Die("--target: an IPv4 address is expected");
    }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) Die("cannot connect");
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Connection() { ::close(fd_); }

  void Send(const std::string& body) {
    WireWriter w;
    w.Int32(static_cast<int32_t>(body.size()));
    WriteAll(w.data());
    WriteAll(body);
  }
  std::string Receive() {
    uint8_t b[4];
    ReadAll(reinterpret_cast<char*>(b), 4);
    const uint32_t n = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    std::string s(n, '\0');
    ReadAll(s.data(), n);
    return s;
  }

 private:
  void WriteAll(const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      const ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
      if (n <= 0) Die("write failed");
      off += static_cast<size_t>(n);
    }
  }
  void ReadAll(char* p, size_t n) {
    while (n > 0) {
      const ssize_t r = ::read(fd_, p, n);
      if (r <= 0) Die("the connection closed");
      p += r;
      n -= static_cast<size_t>(r);
    }
  }
  int fd_;
};

double CpuSeconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream fields(line.substr(line.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::atof(f.c_str());  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags = {
      {"target", "127.0.0.1:9092"}, {"topic", "perf"},  {"size", "1024"},  {"records", "400000"},
      {"partitions", "8"},          {"per_batch", "15"}, {"in_flight", "5"}, {"cpu", ""}};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Die("flags are --name=value: " + arg);
    const std::string name = arg.substr(2, eq - 2);
    if (!flags.contains(name)) Die("unknown flag --" + name);
    flags[name] = arg.substr(eq + 1);
  }
  const int partitions = std::atoi(flags["partitions"].c_str());
  const int per_batch = std::atoi(flags["per_batch"].c_str());
  const size_t size = static_cast<size_t>(std::atol(flags["size"].c_str()));
  const int in_flight = std::atoi(flags["in_flight"].c_str());
  const int64_t per_request = static_cast<int64_t>(partitions) * per_batch;
  const int64_t requests = std::atol(flags["records"].c_str()) / per_request;
  std::vector<std::pair<std::string, int>> cpu;  // name, pid
  std::istringstream cpu_list(flags["cpu"]);
  for (std::string item; std::getline(cpu_list, item, ',');) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) Die("--cpu is name:pid,name:pid");
    cpu.emplace_back(item.substr(0, colon), std::atoi(item.substr(colon + 1).c_str()));
  }

  Connection conn(flags["target"]);
  int32_t correlation = 0;
  auto header = [&](WireWriter& w, int16_t key, int16_t version) {
    w.Int16(key);
    w.Int16(version);
    w.Int32(correlation++);
    w.NullableString(std::string("produce_load"), false);
  };
  WireWriter init;  // InitProducerId v1: no transactional id
  header(init, 22, 1);
  init.NullableString(std::nullopt, false);
  init.Int32(60000);
  conn.Send(init.data());
  std::string answer = conn.Receive();
  WireReader r(answer);
  r.Int32();  // correlation id
  r.Int32();  // throttle
  if (int16_t error = r.Int16(); error != 0) Die("InitProducerId error " + std::to_string(error));
  const int64_t producer_id = r.Int64();
  const int16_t epoch = r.Int16();

  std::string value(size, '\0');
  for (size_t i = 0; i < size; ++i) value[i] = static_cast<char>('A' + (i * 7) % 26);
  std::vector<int32_t> sequence(static_cast<size_t>(partitions), 0);
  auto request = [&]() {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    WireWriter w;
    header(w, 0, 8);                      // Produce v8
    w.NullableString(std::nullopt, false);  // transactional id
    w.Int16(-1);                          // acks=all
    w.Int32(30000);
    w.Int32(1);
    w.String(flags["topic"], false);
    w.Int32(partitions);
    for (int p = 0; p < partitions; ++p) {
      RecordBatch b;
      b.producer_id = producer_id;
      b.producer_epoch = epoch;
      b.base_sequence = sequence[static_cast<size_t>(p)];
      b.base_timestamp = b.max_timestamp = now;
      for (int i = 0; i < per_batch; ++i) {
        BatchRecord record;
        record.offset_delta = i;
        record.timestamp = now;
        record.value = value;
        b.records.push_back(std::move(record));
      }
      sequence[static_cast<size_t>(p)] += per_batch;
      const std::string bytes = EncodeRecordBatch(b, Compression::kNone);
      w.Int32(p);
      w.Int32(static_cast<int32_t>(bytes.size()));
      w.Raw(bytes);
    }
    return std::move(w.data());
  };

  std::vector<double> cpu_before;
  for (const auto& [name, pid] : cpu) cpu_before.push_back(CpuSeconds(pid));
  std::deque<std::chrono::steady_clock::time_point> pending;
  double latency_sum = 0;
  int64_t sent = 0;
  int64_t answered = 0;
  const auto start = std::chrono::steady_clock::now();
  while (answered < requests) {
    while (static_cast<int>(pending.size()) < in_flight && sent < requests) {
      conn.Send(request());
      pending.push_back(std::chrono::steady_clock::now());
      ++sent;
    }
    const std::string response = conn.Receive();
    latency_sum += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                             pending.front())
                       .count();
    pending.pop_front();
    ++answered;
    WireReader in(response);  // correlation, topics, name, partitions, index, then the error
    in.Int32();
    in.Int32();
    in.String(false);
    const int32_t count = in.Int32();
    for (int32_t p = 0; p < count; ++p) {
      in.Int32();
      if (int16_t error = in.Int16(); error != 0) Die("Produce error " + std::to_string(error));
      in.Int64();  // base offset
      in.Int64();  // log append time
      in.Int64();  // log start offset
      int32_t errors = in.Int32();  // record errors (v8)
      for (int32_t e = 0; e < errors; ++e) {
        in.Int32();
        in.NullableString(false);
      }
      in.NullableString(false);  // error message
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double records = static_cast<double>(answered * per_request);
  std::printf("records=%.0f records_per_s=%.0f mb_per_s=%.2f request_ms=%.2f", records,
              records / seconds, records * static_cast<double>(size) / seconds / 1e6,
              latency_sum / static_cast<double>(answered));
  for (size_t i = 0; i < cpu.size(); ++i) {
    std::printf(" cpu_s_%s=%.2f", cpu[i].first.c_str(), CpuSeconds(cpu[i].second) - cpu_before[i]);
  }
  std::printf("\n");
  return 0;
}
