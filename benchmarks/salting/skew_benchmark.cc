// Partition skew with and without saltproxy, on simulated Zipf streams.
//
//   cmake --build build --target skew_benchmark && build/benchmarks/salting/skew_benchmark
//
// For Zipf exponents 1.0, 1.2, 1.5, 2.0 over 1,000,000 keys and 16, 64, 256 partitions, the
// max/mean partition load of:
//   plain     the Java default partitioner (murmur2 of the key), what Kafka does today;
//   hashed    hot keys (an oracle's true top keys, the same count saltproxy salted) spread
//             blindly over their hashed salts, like a manual random-suffix fix;
//   saltproxy the real router and the real online detector (no oracle), load-aware spreading;
// the share of distinct keys and of records that saltproxy salted or rerouted, and the most
// salts any key got against 2 × its true share × partitions (at least 2); then the same for
// saltproxy with no share cap (max_salts_per_share: 0), fed the same records. Then a drifting
// stream (the hot keys change every million records): the worst and mean max/mean over
// one-second windows, for both. Records are timestamped at a simulated 500,000 records/s; the
// control step runs every 10 ms of simulated time; the first simulated second is warm-up.
// Last, a new key taking 20 % every 10-20 s at the proxy's own defaults (NewHotKeyTable; its
// figures are in benchmarks/README.md; SKEW_NEW_HOT_ONLY=1 runs it alone, SKEW_NO_EARLY=1 without
// the control loop's early step, SKEW_WINDOWS=1 and SKEW_TRACE=1 print its windows and steps).
// SKEW_HEADROOM and SKEW_SHARE_CAP set the default policy's headroom and max_salts_per_share;
// SKEW_ONLY=1.0/16 runs one steady case; SKEW_DEBUG and SKEW_SALTS print per-partition and
// per-key detail.
//
// Last recorded table (2026-11-29, 2 cores; about 2.5 minutes; the proxy's default policy):
//
//   | zipf s | partitions | plain | hashed salting | saltproxy | keys salted | records salted | salts / 2·share·P, worst key | saltproxy, no share cap | its salts / 2·share·P |
//   | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//   | 1.0 | 16 | 1.94 | 1.61 | 1.000 | 0.0089 % | 35.1 % | 1.33 | 1.000 | 2.33 |
//   | 1.0 | 64 | 5.10 | 2.27 | 1.011 | 0.0089 % | 35.1 % | 2.00 | 1.001 | 3.50 |
//   | 1.0 | 256 | 18.37 | 2.40 | 1.044 | 0.0089 % | 35.1 % | 2.00 | 1.035 | 3.50 |
//   | 1.2 | 16 | 3.61 | 2.52 | 1.000 | 0.0096 % | 67.8 % | 1.50 | 1.000 | 1.67 |
//   | 1.2 | 64 | 12.46 | 2.35 | 1.000 | 0.0096 % | 67.8 % | 1.50 | 1.000 | 2.00 |
//   | 1.2 | 256 | 48.74 | 3.42 | 1.005 | 0.0096 % | 67.8 % | 1.57 | 1.002 | 2.00 |
//   | 1.5 | 16 | 6.42 | 2.16 | 1.000 | 0.0062 % | 90.3 % | 1.08 | 1.000 | 1.08 |
//   | 1.5 | 64 | 24.63 | 2.51 | 1.000 | 0.0062 % | 90.3 % | 1.50 | 1.000 | 1.50 |
//   | 1.5 | 256 | 98.17 | 3.04 | 1.001 | 0.0062 % | 90.3 % | 1.50 | 1.001 | 1.50 |
//   | 2.0 | 16 | 9.81 | 1.80 | 1.000 | 0.0026 % | 97.7 % | 1.20 | 1.000 | 1.20 |
//   | 2.0 | 64 | 38.92 | 2.15 | 1.000 | 0.0026 % | 97.7 % | 1.20 | 1.000 | 1.20 |
//   | 2.0 | 256 | 155.64 | 2.60 | 1.001 | 0.0026 % | 97.7 % | 1.50 | 1.001 | 1.50 |
//
//   | zipf s | partitions | records | worst 1 s window max/mean | mean window max/mean | no share cap: worst | no share cap: mean | plain (whole run) |
//   | --- | --- | --- | --- | --- | --- | --- | --- |
//   | 1.2 | 16 | 6000000 | 1.027 | 1.009 | 1.025 | 1.005 | 1.57 |
//   | 1.2 | 64 | 6000000 | 1.049 | 1.014 | 1.028 | 1.008 | 4.11 |
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/testing/zipf.h"
#include "proxy/salting/detector_heat.h"
#include "proxy/common/log.h"
#include "proxy/salting/router.h"
#include "saltproxy/partitioner.h"
#include "saltproxy/salting.h"

namespace saltproxy::bench {
using ::saltproxy::testing::Zipf;
namespace {

constexpr size_t kKeys = 1'000'000;
constexpr double kRecordsPerSecond = 500'000;
constexpr absl::Duration kTick = absl::Milliseconds(10);

// The manual fix saltproxy replaces: a hot key's n salted keys, each on the partition the
// default partitioner gives it (moved up to the next free partition when two salts of the key
// collide), with records spread over them blindly.
std::vector<int32_t> HashedSalts(const std::string& key, int32_t salts, int32_t partitions) {
  std::vector<int32_t> result;
  std::vector<bool> used(static_cast<size_t>(partitions), false);
  for (int32_t i = 0; i < salts; ++i) {
    int32_t p = DefaultPartition(SaltedKey(key, i), partitions);
    while (used[static_cast<size_t>(p)]) p = (p + 1) % partitions;
    used[static_cast<size_t>(p)] = true;
    result.push_back(p);
  }
  return result;
}

// Delivers every record at once, in order, with per-partition offsets.
class InstantUpstream : public Upstream {
 public:
  explicit InstantUpstream(int32_t partitions) { partitions_["t"] = partitions; }
  absl::Status Produce(Record&& record, int32_t partition, DeliveryCallback done) override {
    DeliveryReport r;
    r.topic = record.topic;
    r.partition = partition;
    r.offset = static_cast<int64_t>(offsets_[{record.topic, partition}]++);
    done(r);
    return absl::OkStatus();
  }
  std::optional<int32_t> CachedPartitions(const std::string& topic) const override {
    auto it = partitions_.find(topic);
    if (it == partitions_.end()) return std::nullopt;
    return it->second;
  }
  void LookupTopic(const std::string&, absl::AnyInvocable<void(absl::StatusOr<int32_t>)>) override {}
  Topics KnownTopics() const override { return {}; }
  absl::Status CreateTopic(const std::string& topic, int32_t n,
                           const std::map<std::string, std::string>&) override {
    partitions_[topic] = n;
    return absl::OkStatus();
  }

 private:
  std::map<std::string, int32_t> partitions_;
  std::map<std::pair<std::string, int32_t>, uint64_t> offsets_;
};

// The real detector, owned, as the router's heat tracker.
class OwnedDetector : public HeatTracker {
 public:
  OwnedDetector(const DetectorConfig& config, int32_t partitions)
      : detector_(config, [partitions](const std::string&) { return partitions; }),
        heat_(detector_) {}
  void Observe(std::string_view topic, std::string_view key, size_t bytes) override {
    heat_.Observe(topic, key, bytes);
  }
  std::vector<TopicHeat> Tick(absl::Time now) override { return heat_.Tick(now); }
  bool RisingKeyWaiting() override { return heat_.RisingKeyWaiting(); }

 private:
  HotKeyDetector detector_;
  DetectorHeat heat_;
};

// The proxy's defaults (hot at 0.1 % of the topic's records), with a half-life of 50,000
// records (100 ms at the simulated 500,000 records/s). SKEW_HOT_SHARE and SKEW_HALF_LIFE_MS
// override them for experiments.
DetectorConfig BenchmarkDetectorConfig() {
  DetectorConfig config;
  config.half_life = absl::Milliseconds(100);
  config.thresholds.hot_min_rps = 0;
  if (const char* v = std::getenv("SKEW_HOT_SHARE")) config.thresholds.hot_share = std::atof(v);
  if (const char* v = std::getenv("SKEW_HALF_LIFE_MS")) config.half_life = absl::Milliseconds(std::atoi(v));
  return config;
}

std::unique_ptr<HeatTracker> MakeBenchmarkHeatTracker(int32_t partitions) {
  return std::make_unique<OwnedDetector>(BenchmarkDetectorConfig(), partitions);
}

double MaxOverMean(const std::vector<uint64_t>& loads) {
  double sum = std::accumulate(loads.begin(), loads.end(), 0.0);
  if (sum == 0) return 1.0;
  return *std::max_element(loads.begin(), loads.end()) * loads.size() / sum;
}

std::vector<uint64_t> Minus(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
  std::vector<uint64_t> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - (i < b.size() ? b[i] : 0);
  return d;
}

struct Keys {
  Keys() {
    names.reserve(kKeys);
    for (size_t i = 0; i < kKeys; ++i) names.push_back("key-" + std::to_string(i));
  }
  std::vector<std::string> names;
};

struct Permutation {
  explicit Permutation(uint64_t seed) : id(kKeys) {
    std::iota(id.begin(), id.end(), 0);
    std::shuffle(id.begin(), id.end(), std::mt19937_64(seed));
  }
  std::vector<size_t> id;  // rank → key id
};

// How a simulated proxy is set up: the benchmark's fast settings (a half-life of 100 ms at
// 500,000 records/s, a 10 ms control step), or the proxy's own defaults at a real producer's
// rate (a half-life of 2 s, a 100 ms control step, a load half-life of 1 s).
struct SimSettings {
  double records_per_second = kRecordsPerSecond;
  absl::Duration tick = kTick;
  bool proxy_defaults = false;
};

struct SaltproxySim {
  // `share_cap`: the policy's max_salts_per_share, when not the default's.
  explicit SaltproxySim(int32_t partitions, std::optional<double> share_cap = std::nullopt,
                        SimSettings settings = {})
      : upstream(partitions), settings(settings) {
    RouterOptions options;
    options.instance_id = "bench";
    options.control_topic = "";
    if (!settings.proxy_defaults) options.load_half_life = absl::Milliseconds(200);
    options.transition_grace = settings.tick / 2;  // as the proxy sets it
    options.clock = [this] { return now; };
    // The proxy's default policy; SKEW_HEADROOM overrides its headroom for experiments.
    if (const char* v = std::getenv("SKEW_HEADROOM")) options.default_policy.headroom = std::atof(v);
    if (const char* v = std::getenv("SKEW_SHARE_CAP")) {
      options.default_policy.max_salts_per_share = std::atof(v);
    }
    if (share_cap) options.default_policy.max_salts_per_share = *share_cap;
    heat = settings.proxy_defaults
               ? std::make_unique<OwnedDetector>(DetectorConfig(), partitions)
               : MakeBenchmarkHeatTracker(partitions);
    router = std::make_unique<Router>(upstream, heat.get(), options);
  }
  // Sends one record; true when a control step ran after it.
  bool Send(const std::string& key) {
    Record r;
    r.topic = "t";
    r.key = key;
    r.value = "v";
    (void)router->Submit(std::move(r), [](const DeliveryReport&) {});
    ++sent;
    now = start + absl::Seconds(sent / settings.records_per_second);
    return MaybeTick();
  }
  // Lets `d` of simulated time pass with no records, ticking as the proxy would.
  void Idle(absl::Duration d, const std::function<void()>& after_tick) {
    const absl::Time end = now + d;
    while (now < end) {
      now = std::min(end, next_tick);
      if (MaybeTick()) after_tick();
    }
  }
  // The proxy's control loop (app.cc): a step every tick, and with the proxy's defaults an early
  // one, looked for every 10 ms, when a new key is already hot (at most every 20 ms).
  bool MaybeTick() {
    bool early = false;
    if (settings.proxy_defaults && !std::getenv("SKEW_NO_EARLY") && now < next_tick && now >= next_poll) {
      next_poll = now + absl::Milliseconds(10);
      early = now - last_tick >= absl::Milliseconds(20) && router->WantsTickNow();
      if (early && std::getenv("SKEW_TRACE")) std::printf("  early step at %.3f\n", absl::ToDoubleSeconds(now - start));
    }
    if (now < next_tick && !early) return false;
    router->Tick(now);
    last_tick = now;
    next_tick = now + settings.tick;
    return true;
  }
  // Loads of the source topic's partitions (hot topics are not used: salting fits here).
  std::vector<uint64_t> Loads() { return router->PartitionCounts("t"); }

  InstantUpstream upstream;
  SimSettings settings;
  std::unique_ptr<HeatTracker> heat;
  std::unique_ptr<Router> router;
  absl::Time start = absl::FromUnixSeconds(1'700'000'000);
  absl::Time now = start;
  absl::Time next_tick = start;
  absl::Time next_poll = start;
  absl::Time last_tick = start;
  uint64_t sent = 0;
};

void SteadyTable(const Keys& keys) {
  std::printf("| zipf s | partitions | plain | hashed salting | saltproxy | keys salted | records salted | salts / 2·share·P, worst key | saltproxy, no share cap | its salts / 2·share·P |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  const uint64_t kRecords = 3'000'000;
  const uint64_t kWarmup = static_cast<uint64_t>(kRecordsPerSecond);
  std::vector<double> exponents = {1.0, 1.2, 1.5, 2.0};
  std::vector<int32_t> partition_counts = {16, 64, 256};
  if (const char* only = std::getenv("SKEW_ONLY")) {  // "1.0/16": one case
    exponents = {std::atof(only)};
    partition_counts = {std::atoi(std::strchr(only, '/') + 1)};
  }
  for (double s : exponents) {
    for (int32_t partitions : partition_counts) {
      Zipf zipf(kKeys, s, 42);
      Permutation perm(7);
      SaltproxySim sim(partitions);
      SaltproxySim uncapped(partitions, 0.0);
      std::vector<uint64_t> plain(partitions, 0);
      std::vector<uint64_t> warm, uncapped_warm;
      std::vector<size_t> ranks;
      ranks.reserve(kRecords);
      for (uint64_t i = 0; i < kRecords; ++i) {
        size_t rank = zipf.Next();
        ranks.push_back(rank);
        const std::string& key = keys.names[perm.id[rank]];
        sim.Send(key);
        uncapped.Send(key);
        if (i == kWarmup) {
          warm = sim.Loads();
          uncapped_warm = uncapped.Loads();
        }
        if (i >= kWarmup) ++plain[DefaultPartition(key, partitions)];
      }
      std::vector<uint64_t> salted_loads = Minus(sim.Loads(), warm);
      std::vector<uint64_t> uncapped_loads = Minus(uncapped.Loads(), uncapped_warm);

      // Which keys saltproxy salted, by the end; the blind baseline salts the same number of
      // true top keys with the same salt counts.
      std::vector<SaltMapEntry> entries = sim.router->Entries();
      size_t salted_keys = 0;
      absl::flat_hash_map<std::string, int32_t> salts;
      for (const SaltMapEntry& e : entries) {
        if (e.action == RouteAction::kSalted || e.action == RouteAction::kRerouted) {
          ++salted_keys;
          salts[e.key] = e.salts;
        }
      }
      // How many salts each key got against what its true share needs: 2 × share × partitions
      // (at least the 2 salts a salted key always has), the worst key's ratio.
      absl::flat_hash_map<std::string, size_t> rank_of;
      for (size_t r = 0; r < std::min<size_t>(kKeys, 100'000); ++r) rank_of[keys.names[perm.id[r]]] = r;
      auto worst_salt_ratio = [&](const std::vector<SaltMapEntry>& layouts) {
        double worst = 0;
        for (const SaltMapEntry& e : layouts) {
          if (e.action != RouteAction::kSalted && e.action != RouteAction::kRerouted) continue;
          auto it = rank_of.find(e.key);
          const double share = it == rank_of.end() ? 0 : zipf.Share(it->second);
          const double bound = std::max(2.0, std::ceil(2 * share * partitions));
          worst = std::max(worst, e.salts / bound);
          if (std::getenv("SKEW_SALTS")) {
            std::printf("  %s share %.5f salts %d\n", e.key.c_str(), share, e.salts);
          }
        }
        return worst;
      };
      std::vector<uint64_t> hashed(partitions, 0);
      std::mt19937_64 rng(3);
      uint64_t salted_records = 0;
      std::vector<std::vector<int32_t>> oracle_parts(salted_keys);
      for (size_t r = 0; r < salted_keys; ++r) {
        int32_t n = std::max(2, static_cast<int32_t>(std::ceil(1.5 * zipf.Share(r) * partitions)));
        oracle_parts[r] = HashedSalts(keys.names[perm.id[r]], std::min(n, partitions), partitions);
      }
      for (uint64_t i = kWarmup; i < kRecords; ++i) {
        size_t rank = ranks[i];
        const std::string& key = keys.names[perm.id[rank]];
        if (rank < salted_keys) {
          const auto& parts = oracle_parts[rank];
          ++hashed[parts[rng() % parts.size()]];
        } else {
          ++hashed[DefaultPartition(key, partitions)];
        }
        if (salts.contains(key)) ++salted_records;
      }
      if (std::getenv("SKEW_DEBUG")) {
        // Where the busiest partition's load comes from: keys saltproxy left alone, or salts.
        std::vector<uint64_t> cold(partitions, 0);
        for (uint64_t i = kWarmup; i < kRecords; ++i) {
          const std::string& key = keys.names[perm.id[ranks[i]]];
          if (!salts.contains(key)) ++cold[DefaultPartition(key, partitions)];
        }
        double mean = static_cast<double>(kRecords - kWarmup) / partitions;
        for (int32_t p = 0; p < partitions; ++p) {
          std::printf("  p%-3d total %.3f cold %.3f\n", p, salted_loads[p] / mean, cold[p] / mean);
        }
      }
      std::printf("| %.1f | %d | %.2f | %.2f | %.3f | %.4f %% | %.1f %% | %.2f | %.3f | %.2f |\n",
                  s, partitions, MaxOverMean(plain), MaxOverMean(hashed),
                  MaxOverMean(salted_loads), 100.0 * salted_keys / kKeys,
                  100.0 * salted_records / static_cast<double>(kRecords - kWarmup),
                  worst_salt_ratio(entries), MaxOverMean(uncapped_loads),
                  worst_salt_ratio(uncapped.router->Entries()));
      std::fflush(stdout);
    }
  }
}

// Windowed max/mean of one simulated proxy: the worst one-second window and the mean of all.
struct Windows {
  explicit Windows(std::optional<double> share_cap, int32_t partitions)
      : sim(partitions, share_cap) {}
  void Send(const std::string& key, uint64_t i, uint64_t window) {
    sim.Send(key);
    if ((i + 1) % window != 0) return;
    std::vector<uint64_t> loads = sim.Loads();
    if (i + 1 > window) {  // the first second is warm-up
      double m = MaxOverMean(Minus(loads, start));
      worst = std::max(worst, m);
      sum += m;
      ++count;
    }
    start = std::move(loads);
  }
  SaltproxySim sim;
  std::vector<uint64_t> start;
  double worst = 0, sum = 0;
  int count = 0;
};

void DriftTable(const Keys& keys) {
  std::printf("\n| zipf s | partitions | records | worst 1 s window max/mean | mean window max/mean | no share cap: worst | no share cap: mean | plain (whole run) |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  const uint64_t kRecords = 6'000'000;
  const uint64_t kShift = 1'000'000;
  const uint64_t kWindow = static_cast<uint64_t>(kRecordsPerSecond);
  for (double s : {1.2}) {
    for (int32_t partitions : {16, 64}) {
      Zipf zipf(kKeys, s, 11);
      Windows proxy(std::nullopt, partitions), uncapped(0.0, partitions);
      std::unique_ptr<Permutation> perm;
      std::vector<uint64_t> plain(partitions, 0);
      for (uint64_t i = 0; i < kRecords; ++i) {
        if (i % kShift == 0) perm = std::make_unique<Permutation>(100 + i / kShift);
        const std::string& key = keys.names[perm->id[zipf.Next()]];
        proxy.Send(key, i, kWindow);
        uncapped.Send(key, i, kWindow);
        ++plain[DefaultPartition(key, partitions)];
      }
      std::printf("| %.1f | %d | %llu | %.3f | %.3f | %.3f | %.3f | %.2f |\n", s, partitions,
                  static_cast<unsigned long long>(kRecords), proxy.worst,
                  proxy.sum / proxy.count, uncapped.worst, uncapped.sum / uncapped.count,
                  MaxOverMean(plain));
      std::fflush(stdout);
    }
  }
}

// A new key takes 20 % of the records, a new one every 10-20 s, over a Zipf 1.0 background of
// 100,000 keys, at 25,000 records/s, with the proxy's own defaults: the stream on which a real
// broker showed salting that ramped up over seconds. Per one-second window max/mean (the first
// second is warm-up): the worst, the median, how many windows were over 1.1; the most salts any
// key had at any control step against max(2, ⌈2 × its true share × partitions⌉); how often a
// key's salts grew while its rate was falling (a former hot key, or after the load stopped:
// 20 s with no records follow the stream).
void NewHotKeyTable() {
  std::printf("\n| partitions | records | worst 1 s window max/mean | median window | windows over 1.1 | most salts / max(2, ⌈2·share·P⌉), any step | salts grown while falling |\n");
  std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
  constexpr size_t kBackgroundKeys = 100'000;
  constexpr double kRate = 25'000;
  constexpr double kNewShare = 0.2;
  uint64_t records = 1'600'000;
  if (const char* v = std::getenv("SKEW_NEW_HOT_RECORDS")) records = std::strtoull(v, nullptr, 10);
  std::vector<std::string> background;
  for (size_t i = 0; i < kBackgroundKeys; ++i) background.push_back("bg-" + std::to_string(i));
  for (int32_t partitions : {16, 64}) {
    Zipf zipf(kBackgroundKeys, 1.0, 21);
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<double> uniform(0, 1);
    SimSettings settings;
    settings.records_per_second = kRate;
    settings.tick = absl::Milliseconds(std::getenv("SKEW_TICK_MS") ? std::atoi(std::getenv("SKEW_TICK_MS")) : 100);
    settings.proxy_defaults = true;
    SaltproxySim sim(partitions, std::nullopt, settings);
    std::string hot_key;
    absl::flat_hash_map<std::string, double> share;  // the true share of each key, now
    for (size_t r = 0; r < kBackgroundKeys; ++r) share[background[r]] = (1 - kNewShare) * zipf.Share(r);
    double next_switch = 0;
    int switches = 0;
    absl::flat_hash_map<std::string, int32_t> last_salts;  // keys whose rate only falls now
    double worst_salts = 0;
    int grown_while_falling = 0;
    auto check_salts = [&] {
      for (const SaltMapEntry& e : sim.router->Entries()) {
        if (e.action != RouteAction::kSalted && e.action != RouteAction::kRerouted) continue;
        auto it = share.find(e.key);
        const double sh = it == share.end() ? 0 : it->second;
        if (sh > 0) {
          worst_salts = std::max(worst_salts, e.salts / std::max(2.0, std::ceil(2 * sh * partitions)));
        }
        if (auto f = last_salts.find(e.key); f != last_salts.end()) {
          if (e.salts > f->second) ++grown_while_falling;
          f->second = e.salts;
        }
      }
    };
    std::vector<uint64_t> window_start;
    std::vector<double> windows;
    const uint64_t window = static_cast<uint64_t>(kRate);
    for (uint64_t i = 0; i < records; ++i) {
      const double t = i / kRate;
      if (t >= next_switch) {
        if (!hot_key.empty()) {
          share[hot_key] = 0;
          last_salts[hot_key] = 0;
          for (const SaltMapEntry& e : sim.router->Entries()) {
            if (e.key == hot_key) last_salts[hot_key] = e.salts;
          }
        }
        hot_key = "new-hot-" + std::to_string(switches++);
        share[hot_key] = kNewShare;
        next_switch = t + 10 + 10 * uniform(rng);
      }
      const std::string& key =
          uniform(rng) < kNewShare ? hot_key : background[zipf.Next()];
      if (sim.Send(key)) {
        check_salts();
        if (std::getenv("SKEW_TRACE")) {
          for (const SaltMapEntry& e : sim.router->Entries()) {
            if (e.key == hot_key) std::printf("  t=%.1f %s salts %d rate %.0f\n", t, e.key.c_str(), e.salts, e.rate_rps);
          }
        }
      }
      if ((i + 1) % window == 0) {
        std::vector<uint64_t> loads = sim.Loads();
        if (i + 1 > window) windows.push_back(MaxOverMean(Minus(loads, window_start)));
        window_start = std::move(loads);
      }
    }
    // The load stops: every key's rate falls from here on.
    for (const SaltMapEntry& e : sim.router->Entries()) last_salts[e.key] = e.salts;
    for (auto& [k, v] : share) v = 0;
    sim.Idle(absl::Seconds(20), check_salts);
    std::vector<double> sorted = windows;
    std::sort(sorted.begin(), sorted.end());
    const int over = static_cast<int>(std::count_if(windows.begin(), windows.end(),
                                                    [](double w) { return w > 1.1; }));
    std::printf("| %d | %llu | %.3f | %.3f | %d of %zu | %.2f | %d |\n", partitions,
                static_cast<unsigned long long>(records), sorted.back(),
                sorted[sorted.size() / 2], over, windows.size(), worst_salts,
                grown_while_falling);
    if (std::getenv("SKEW_WINDOWS")) {
      for (size_t w = 0; w < windows.size(); ++w) std::printf("  second %zu: %.3f\n", w + 1, windows[w]);
    }
    std::fflush(stdout);
  }
}

}  // namespace
}  // namespace saltproxy::bench

int main() {
  saltproxy::SetLogLevel(saltproxy::LogLevel::kWarn);
  if (std::getenv("SKEW_NEW_HOT_ONLY")) {
    saltproxy::bench::NewHotKeyTable();
    return 0;
  }
  saltproxy::bench::Keys keys;
  saltproxy::bench::SteadyTable(keys);
  saltproxy::bench::DriftTable(keys);
  saltproxy::bench::NewHotKeyTable();
  return 0;
}
