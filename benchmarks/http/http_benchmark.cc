// The load client of benchmarks/http/http_perf.sh: one mode a run, against a running saltproxy
// (HTTP) or straight against the broker (librdkafka), for a fixed time after a warm-up.
//
//   http_benchmark --mode=single --http=127.0.0.1:8080 --topic=perf --connections=64
//   http_benchmark --mode=v3     --http=127.0.0.1:8080 --topic=perf --connections=4 --window=1000
//   http_benchmark --mode=bulk   --http=127.0.0.1:8080 --topic=perf --connections=4 --window=1000
//   http_benchmark --mode=direct --bootstrap=127.0.0.1:9092 --topic=perf --window=64
//   common: --seconds=10 --warmup=2 --keys=100000 --batch=50 --cpu=proxy:PID,broker:PID
//   direct only: --linger-ms=2 (to match a proxy run with another upstream.librdkafka.linger.ms)
//
// Modes, all with the same records (key "k00123" and value {"n":1} as JSON: 8 + 7 bytes on the
// broker, keys cycling over --keys so that none is hot):
//   single  POST /topics/{t}, one v2 JSON record a request, one request at a time on each of
//           --connections keep-alive connections; latency = request written → answer read.
//   v3      POST /v3/clusters/{id}/topics/{t}/records, chunked: each connection holds one
//           streaming request open for the whole run, keeps up to --window records unanswered
//           (written in chunks of --batch), and reads the results streamed back; latency = the
//           record's chunk written → its result line read.
//   bulk    the same over POST /bulk/topics/{t} (application/x-ndjson, one record a line).
//   direct  librdkafka straight to the broker with the proxy's own producer settings
//           (acks=all, idempotent, linger.ms=2, murmur2_random), at most --window records
//           unacknowledged; latency = produce() → delivery report.
//
// It prints one line of key=value pairs: records/s over the measured window (completions after
// the warm-up), p50/p99/mean latency in ms, errors, and the CPU (cores) this client and each
// --cpu process used during the window.
#include <librdkafka/rdkafka.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/http_client.h"

namespace saltproxy::bench {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string mode;
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 0;
  std::string bootstrap;
  std::string topic = "perf";
  std::string cluster;
  int connections = 0;  // 0: 64 for single, 4 for v3 and bulk
  int window = 0;       // 0: 1000 a stream connection, 64 for direct
  int batch = 50;
  double seconds = 10;
  double warmup = 2;
  int keys = 100000;
  std::string linger_ms = "2";  // direct: the proxy's default (upstream.librdkafka.linger.ms)
  std::vector<std::pair<std::string, int>> cpu_pids;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "http_benchmark: %s\n(see the comment at the top of http_benchmark.cc)\n",
               why.c_str());
  std::exit(2);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Usage("bad argument " + arg);
    const std::string name = arg.substr(2, eq - 2), value = arg.substr(eq + 1);
    if (name == "mode") {
      o.mode = value;
    } else if (name == "http") {
      const size_t colon = value.rfind(':');
      if (colon == std::string::npos) Usage("--http wants host:port");
      o.http_host = value.substr(0, colon);
      o.http_port = static_cast<uint16_t>(std::stoi(value.substr(colon + 1)));
    } else if (name == "bootstrap") {
      o.bootstrap = value;
    } else if (name == "topic") {
      o.topic = value;
    } else if (name == "cluster") {
      o.cluster = value;
    } else if (name == "connections") {
      o.connections = std::stoi(value);
    } else if (name == "window") {
      o.window = std::stoi(value);
    } else if (name == "batch") {
      o.batch = std::stoi(value);
    } else if (name == "seconds") {
      o.seconds = std::stod(value);
    } else if (name == "warmup") {
      o.warmup = std::stod(value);
    } else if (name == "linger-ms") {
      o.linger_ms = value;
    } else if (name == "keys") {
      o.keys = std::stoi(value);
    } else if (name == "cpu") {
      std::stringstream list(value);
      for (std::string item; std::getline(list, item, ',');) {
        const size_t colon = item.find(':');
        if (colon == std::string::npos) Usage("--cpu wants name:pid,...");
        o.cpu_pids.emplace_back(item.substr(0, colon), std::stoi(item.substr(colon + 1)));
      }
    } else {
      Usage("unknown option --" + name);
    }
  }
  if (o.mode != "single" && o.mode != "v3" && o.mode != "bulk" && o.mode != "direct") {
    Usage("--mode is single, v3, bulk or direct");
  }
  if (o.mode == "direct" ? o.bootstrap.empty() : o.http_port == 0) {
    Usage("--http (or --bootstrap for direct) is required");
  }
  if (o.connections <= 0) o.connections = o.mode == "single" ? 64 : 4;
  if (o.window <= 0) o.window = o.mode == "direct" ? 64 : 1000;
  o.batch = std::max(1, std::min(o.batch, o.window));
  return o;
}

// ---- measurement ------------------------------------------------------------------------------

// Completions of the whole run; those inside [start, end) are the measurement.
struct Stats {
  Clock::time_point start, end;
  uint64_t measured = 0;
  uint64_t total = 0;
  uint64_t errors = 0;
  std::string first_error;
  std::vector<uint32_t> latency_us;  // of the measured completions

  void Complete(Clock::time_point sent, Clock::time_point now, bool ok,
                std::string_view error = {}) {
    ++total;
    if (!ok) {
      if (errors++ == 0) first_error = std::string(error.substr(0, 300));
    }
    if (now < start || now >= end) return;
    ++measured;
    latency_us.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - sent).count()));
  }
};

// CPU seconds (user + system) of a process, from /proc/PID/stat.
double ProcessCpuSeconds(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Samples the CPU of this client and of the --cpu processes at the window's start and end.
class CpuSampler {
 public:
  CpuSampler(const Options& o, Clock::time_point start, Clock::time_point end)
      : pids_(o.cpu_pids), thread_([this, start, end] {
          std::this_thread::sleep_until(start);
          Sample(&before_);
          std::this_thread::sleep_until(end);
          Sample(&after_);
          wall_ = std::chrono::duration<double>(end - start).count();
        }) {}
  ~CpuSampler() {
    if (thread_.joinable()) thread_.join();
  }
  // " cpu_client=0.41 cpu_proxy=1.02 …": cores used over the window.
  std::string Report() {
    thread_.join();
    std::string out;
    char buf[64];
    for (size_t i = 0; i < before_.size(); ++i) {
      const std::string name = i == 0 ? "client" : pids_[i - 1].first;
      std::snprintf(buf, sizeof buf, " cpu_%s=%.2f", name.c_str(),
                    (after_[i] - before_[i]) / wall_);
      out += buf;
    }
    return out;
  }

 private:
  void Sample(std::vector<double>* out) {
    out->push_back(SelfCpuSeconds());
    for (const auto& [name, pid] : pids_) out->push_back(ProcessCpuSeconds(pid));
  }
  std::vector<std::pair<std::string, int>> pids_;
  std::vector<double> before_, after_;
  double wall_ = 1;
  std::thread thread_;
};

// ---- the records ------------------------------------------------------------------------------

// Fixed-width keys, so that every record has the same size: k00000 … k99999.
class Keys {
 public:
  explicit Keys(int count, int offset) : count_(count), next_(offset % count) {}
  std::string Next() {
    char buf[16];
    std::snprintf(buf, sizeof buf, "k%05d", next_);
    next_ = (next_ + 1) % count_;
    return buf;
  }

 private:
  int count_;
  int next_;
};

// ---- single-record v2 requests ----------------------------------------------------------------

// Reads one HTTP/1.1 answer with a Content-Length body from the front of `in`; returns its size
// (0: incomplete) and the status.
size_t ParseAnswer(const std::string& in, int* status) {
  const size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) return 0;
  *status = in.size() > 12 ? std::atoi(in.c_str() + 9) : 0;
  size_t length = 0;
  for (size_t pos = in.find("\r\n"); pos < head_end; pos = in.find("\r\n", pos + 2)) {
    if (strncasecmp(in.c_str() + pos + 2, "content-length:", 15) == 0) {
      length = std::strtoul(in.c_str() + pos + 17, nullptr, 10);
      break;
    }
  }
  const size_t total = head_end + 4 + length;
  return in.size() >= total ? total : 0;
}

class SingleConnection : public std::enable_shared_from_this<SingleConnection> {
 public:
  SingleConnection(net::io_context& ioc, const Options& o, Stats& stats, int index)
      : socket_(ioc), options_(o), stats_(stats), keys_(o.keys, index * 7919) {}

  void Start(const tcp::endpoint& endpoint) {
    socket_.async_connect(endpoint, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return self->Fail(ec.message());
      self->socket_.set_option(tcp::no_delay(true));
      self->Send();
    });
  }

 private:
  void Send() {
    if (Clock::now() >= stats_.end) return Close();
    const std::string body = "{\"records\":[{\"key\":\"" + keys_.Next() + "\",\"value\":{\"n\":1}}]}";
    request_ = "POST /topics/" + options_.topic +
               " HTTP/1.1\r\nHost: bench\r\nContent-Type: application/vnd.kafka.json.v2+json\r\n"
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    sent_ = Clock::now();
    net::async_write(socket_, net::buffer(request_),
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       if (ec) return self->Fail(ec.message());
                       self->Read();
                     });
  }

  void Read() {
    socket_.async_read_some(net::buffer(buf_), [self = shared_from_this()](
                                                   boost::system::error_code ec, size_t n) {
      if (ec) return self->Fail(ec.message());
      self->in_.append(self->buf_.data(), n);
      int status = 0;
      const size_t size = ParseAnswer(self->in_, &status);
      if (size == 0) return self->Read();
      const bool ok = status == 200 && self->in_.find("\"error_code\":null") != std::string::npos;
      self->stats_.Complete(self->sent_, Clock::now(), ok,
                            std::string_view(self->in_).substr(0, size));
      self->in_.erase(0, size);
      self->Send();
    });
  }

  void Fail(const std::string& why) {
    stats_.Complete(sent_, Clock::now(), false, "connection: " + why);
    Close();
  }
  void Close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

  tcp::socket socket_;
  const Options& options_;
  Stats& stats_;
  Keys keys_;
  std::string request_;
  std::string in_;
  std::array<char, 16384> buf_;
  Clock::time_point sent_;
};

// ---- streams: v3 chunked and NDJSON bulk ------------------------------------------------------

class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  StreamConnection(net::io_context& ioc, const Options& o, Stats& stats, int index)
      : socket_(ioc), options_(o), stats_(stats), keys_(o.keys, index * 7919),
        v3_(o.mode == "v3") {}

  void Start(const tcp::endpoint& endpoint) {
    socket_.async_connect(endpoint, [self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return self->Fail(ec.message());
      self->socket_.set_option(tcp::no_delay(true));
      const std::string path =
          self->v3_ ? "/v3/clusters/" + self->options_.cluster + "/topics/" +
                          self->options_.topic + "/records"
                    : "/bulk/topics/" + self->options_.topic;
      self->pending_ = "POST " + path + " HTTP/1.1\r\nHost: bench\r\nContent-Type: " +
                       (self->v3_ ? "application/json" : "application/x-ndjson") +
                       "\r\nTransfer-Encoding: chunked\r\n\r\n";
      self->Fill();
      self->Read();
    });
  }

 private:
  int Outstanding() const { return static_cast<int>(sent_times_.size()); }

  // Writes a chunk of records while the window has room for a batch (or the stream's end).
  void Fill() {
    if (writing_ || finished_writing_ || failed_) return;
    const auto now = Clock::now();
    if (now >= stats_.end) {
      pending_ += "0\r\n\r\n";
      finished_writing_ = true;
    } else {
      const int room = options_.window - Outstanding();
      if (room >= options_.batch || (room > 0 && Outstanding() == 0)) {
        const int n = std::min(room, options_.batch);
        std::string data;
        for (int i = 0; i < n; ++i) {
          const std::string key = keys_.Next();
          if (v3_) {
            data += "{\"key\":{\"type\":\"JSON\",\"data\":\"" + key +
                    "\"},\"value\":{\"type\":\"JSON\",\"data\":{\"n\":1}}}\n";
          } else {
            data += "{\"key\":\"" + key + "\",\"value\":{\"n\":1}}\n";
          }
          sent_times_.push_back(now);
        }
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", data.size());
        pending_ += size;
        pending_ += data;
        pending_ += "\r\n";
      }
    }
    if (pending_.empty()) return;
    out_ = std::move(pending_);
    pending_.clear();
    writing_ = true;
    net::async_write(socket_, net::buffer(out_),
                     [self = shared_from_this()](boost::system::error_code ec, size_t) {
                       self->writing_ = false;
                       if (ec) return self->Fail(ec.message());
                       self->Fill();
                     });
  }

  void Read() {
    socket_.async_read_some(net::buffer(buf_), [self = shared_from_this()](
                                                   boost::system::error_code ec, size_t n) {
      if (ec) return self->Fail(ec.message());
      self->in_.append(self->buf_.data(), n);
      if (!self->Parse()) return;
      if (self->done_) return self->Close();
      self->Fill();
      self->Read();
    });
  }

  // Takes the answer's header, its chunks and the result lines in them off `in_`.
  bool Parse() {
    size_t pos = 0;
    if (!head_read_) {
      const size_t end = in_.find("\r\n\r\n");
      if (end == std::string::npos) return true;
      const int status = std::atoi(in_.c_str() + 9);
      if (status != 200) {
        Fail("answer " + in_.substr(0, std::min<size_t>(in_.size(), 300)));
        return false;
      }
      head_read_ = true;
      pos = end + 4;
    }
    for (;;) {
      if (chunk_left_ == 0) {
        const size_t eol = in_.find("\r\n", pos);
        if (eol == std::string::npos) break;
        if (eol == pos) {  // the CRLF after a chunk's data
          pos += 2;
          continue;
        }
        const size_t size = std::strtoul(in_.c_str() + pos, nullptr, 16);
        pos = eol + 2;
        if (size == 0) {
          done_ = true;
          break;
        }
        chunk_left_ = size;
      }
      const size_t take = std::min(chunk_left_, in_.size() - pos);
      if (take == 0) break;
      lines_.append(in_, pos, take);
      pos += take;
      chunk_left_ -= take;
    }
    in_.erase(0, pos);
    const auto now = Clock::now();
    size_t start = 0;
    for (size_t nl = lines_.find('\n'); nl != std::string::npos; nl = lines_.find('\n', start)) {
      std::string_view line(lines_.data() + start, nl - start);
      const bool ok = v3_ ? line.find("\"error_code\":200") != std::string_view::npos
                          : line.rfind("{\"partition\":", 0) == 0;
      if (sent_times_.empty()) {
        stats_.Complete(now, now, false, "a result for no record: " + std::string(line));
      } else {
        stats_.Complete(sent_times_.front(), now, ok, line);
        sent_times_.pop_front();
      }
      start = nl + 1;
    }
    lines_.erase(0, start);
    return true;
  }

  void Fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    stats_.Complete(Clock::now(), Clock::now(), false, "connection: " + why);
    Close();
  }
  void Close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

  tcp::socket socket_;
  const Options& options_;
  Stats& stats_;
  Keys keys_;
  const bool v3_;
  std::deque<Clock::time_point> sent_times_;  // of the records without a result yet
  std::string pending_, out_, in_, lines_;
  std::array<char, 65536> buf_;
  size_t chunk_left_ = 0;
  bool head_read_ = false;
  bool writing_ = false;
  bool finished_writing_ = false;
  bool done_ = false;
  bool failed_ = false;
};

void RunHttp(const Options& o, Stats& stats) {
  net::io_context ioc;
  const tcp::endpoint endpoint(net::ip::make_address(o.http_host), o.http_port);
  for (int i = 0; i < o.connections; ++i) {
    if (o.mode == "single") {
      std::make_shared<SingleConnection>(ioc, o, stats, i)->Start(endpoint);
    } else {
      std::make_shared<StreamConnection>(ioc, o, stats, i)->Start(endpoint);
    }
  }
  ioc.run();
}

// ---- direct librdkafka ------------------------------------------------------------------------

struct DirectState {
  Stats* stats;
  int outstanding = 0;
};

void RunDirect(const Options& o, Stats& stats) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The proxy's forwarder's settings (proxy/forward/forwarder.cc), so that the two compare.
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"bootstrap.servers", o.bootstrap},      {"client.id", "http-benchmark-direct"},
      {"enable.idempotence", "true"},          {"acks", "all"},
      {"partitioner", "murmur2_random"},       {"linger.ms", o.linger_ms},
      {"queue.buffering.max.messages", "100000"}, {"log_level", "4"}};
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      Usage(name + ": " + err);
    }
  }
  DirectState state{&stats};
  rd_kafka_conf_set_opaque(conf, &state);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
    auto* s = static_cast<DirectState*>(opaque);
    --s->outstanding;
    const auto sent = Clock::time_point(
        Clock::duration(reinterpret_cast<intptr_t>(msg->_private)));
    s->stats->Complete(sent, Clock::now(), msg->err == RD_KAFKA_RESP_ERR_NO_ERROR,
                       rd_kafka_err2str(msg->err));
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) Usage(std::string("librdkafka: ") + err);
  Keys keys(o.keys, 0);
  const std::string value = "{\"n\":1}";
  for (;;) {
    const auto now = Clock::now();
    if (now >= stats.end) break;
    while (state.outstanding < o.window) {
      const std::string key = "\"" + keys.Next() + "\"";  // as the v2 JSON format stores it
      const rd_kafka_resp_err_t e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(o.topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(
              static_cast<intptr_t>(Clock::now().time_since_epoch().count()))),
          RD_KAFKA_V_END);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        stats.Complete(now, now, false, rd_kafka_err2str(e));
        break;
      }
      ++state.outstanding;
    }
    rd_kafka_poll(rk, state.outstanding >= o.window ? 1 : 0);
  }
  rd_kafka_flush(rk, 30000);
  rd_kafka_destroy(rk);
}

// ---- main ------------------------------------------------------------------------------------

std::string ClusterId(const Options& o) {
  testing::HttpClient client(o.http_port, o.http_host);
  testing::HttpResult r = client.Get("/v3/clusters");
  if (r.status != 200) Usage("GET /v3/clusters: " + r.error + r.body);
  return std::string(r.Json().at("data").at(0).at("cluster_id").as_string());
}

int Main(int argc, char** argv) {
  Options o = ParseArgs(argc, argv);
  if (o.mode == "v3" && o.cluster.empty()) o.cluster = ClusterId(o);
  Stats stats;
  const auto begin = Clock::now();
  stats.start = begin + std::chrono::microseconds(static_cast<int64_t>(o.warmup * 1e6));
  stats.end = stats.start + std::chrono::microseconds(static_cast<int64_t>(o.seconds * 1e6));
  stats.latency_us.reserve(1 << 20);
  CpuSampler cpu(o, stats.start, stats.end);
  if (o.mode == "direct") {
    RunDirect(o, stats);
  } else {
    RunHttp(o, stats);
  }
  std::sort(stats.latency_us.begin(), stats.latency_us.end());
  auto pct = [&](double p) {
    if (stats.latency_us.empty()) return 0.0;
    const size_t i = std::min(stats.latency_us.size() - 1,
                              static_cast<size_t>(p * static_cast<double>(stats.latency_us.size())));
    return stats.latency_us[i] / 1000.0;
  };
  double mean = 0;
  for (uint32_t us : stats.latency_us) mean += us;
  if (!stats.latency_us.empty()) mean /= 1000.0 * static_cast<double>(stats.latency_us.size());
  const std::string cpu_report = cpu.Report();
  std::printf("mode=%s connections=%d window=%d records=%llu seconds=%.1f rps=%.0f p50_ms=%.2f "
              "p99_ms=%.2f mean_ms=%.2f errors=%llu%s\n",
              o.mode.c_str(), o.mode == "direct" ? 1 : o.connections,
              o.mode == "single" ? 1 : o.window, static_cast<unsigned long long>(stats.measured),
              o.seconds, static_cast<double>(stats.measured) / o.seconds, pct(0.50), pct(0.99),
              mean, static_cast<unsigned long long>(stats.errors), cpu_report.c_str());
  if (stats.errors > 0) {
    std::fprintf(stderr, "http_benchmark: %llu errors; the first: %s\n",
                 static_cast<unsigned long long>(stats.errors), stats.first_error.c_str());
  }
  return stats.errors > 0 || stats.measured == 0 ? 1 : 0;
}

}  // namespace
}  // namespace saltproxy::bench

int main(int argc, char** argv) { return saltproxy::bench::Main(argc, argv); }
