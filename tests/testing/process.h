// What tests ask of processes: run a shell command and take its output, and this process's
// resident memory.
//
//   auto [rc, output] = Shell("kcat -L -b 127.0.0.1:9092");  // rc: the exit code, -1 if none
//   int64_t before = ResidentBytes();
#pragma once

#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

namespace saltproxy::testing {

// Runs `command` with sh; returns its exit code (-1 when it did not exit) and its output, stderr
// included.
inline std::pair<int, std::string> Shell(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  char buf[512];
  std::string output;
  while (fgets(buf, sizeof buf, pipe)) output += buf;
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// This process's resident memory in bytes (VmRSS), -1 if unknown.
inline int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

}  // namespace saltproxy::testing
