// saltproxy: an adaptive hot-key salting proxy for Apache Kafka.
//
//   saltproxy --config config/saltproxy.yaml           run
//   saltproxy --config config/saltproxy.yaml --check-config   validate the file and exit
//   saltproxy --embedded                               run in front of an in-process mock cluster
//   saltproxy --version
//
// SIGTERM or SIGINT: stop accepting, answer every request in flight (an error for records not
// written by then), exit 0 (1 when some were not written) within shutdown_timeout; a watchdog
// ends the process kShutdownMargin later should any step overrun its bound.
// SIGHUP: reload the config file (an invalid one is refused; the running config stays).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "proxy/app.h"
#include "proxy/common/log.h"
#include "proxy/config/config.h"

namespace {

constexpr std::string_view kUsage =
    "usage: saltproxy [--config FILE] [--check-config] [--embedded] [--version]\n"
    "  --config FILE    YAML configuration (see config/saltproxy.yaml)\n"
    "  --check-config   validate the configuration and exit (0 when valid, 2 when not)\n"
    "  --embedded       run librdkafka's mock cluster in-process instead of a real cluster\n"
    "  --version        print the version and exit\n";

// Beyond shutdown_timeout, what the watchdog grants before it ends the process: the bounded
// steps need no more (a metadata request under way, librdkafka's destroy).
constexpr absl::Duration kShutdownMargin = absl::Seconds(3);

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  bool embedded = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--version") {
      std::cout << "saltproxy " << SALTPROXY_VERSION << "\n";
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = std::string(arg.substr(9));
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--embedded") {
      embedded = true;
    } else {
      std::cerr << "saltproxy: unknown argument: " << arg << "\n" << kUsage;
      return 2;
    }
  }

  absl::StatusOr<saltproxy::Config> config =
      config_path.empty() ? saltproxy::ParseConfig(embedded ? "upstream: {embedded: true}" : "",
                                                   "(defaults)")
                          : saltproxy::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << "saltproxy: invalid configuration:\n" << config.status().message() << "\n";
    return 2;
  }
  if (embedded) config->upstream.embedded = true;
  if (check_only) {
    std::cout << "saltproxy: " << (config_path.empty() ? "(defaults)" : config_path)
              << ": configuration is valid\n";
    return 0;
  }

  // Signals are taken by sigwait on this thread; block them before any other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<saltproxy::App>> app = saltproxy::App::Start(*config);
  if (!app.ok()) {
    saltproxy::LogEvent(saltproxy::LogLevel::kError, "start_failed",
                        {{"reason", app.status().message()}});
    return 1;
  }
  int received = 0;
  for (;;) {
    sigwait(&signals, &received);
    saltproxy::LogEvent(saltproxy::LogLevel::kInfo, "signal", {{"signal", strsignal(received)}});
    if (received != SIGHUP) break;
    // SIGHUP: reload the file (the outcome is logged); an invalid file is refused and the
    // running configuration stays.
    (*app)->ReloadFromFile().IgnoreError();
  }
  const absl::Duration bound = (*app)->config().shutdown_timeout + kShutdownMargin;
  std::thread([bound] {
    std::this_thread::sleep_for(std::chrono::milliseconds(absl::ToInt64Milliseconds(bound)));
    saltproxy::LogEvent(saltproxy::LogLevel::kError, "shutdown_overran",
                        {{"after", absl::FormatDuration(bound)}});
    _exit(1);
  }).detach();
  absl::Status stopped = (*app)->Shutdown();
  app->reset();
  return stopped.ok() ? 0 : 1;
}
