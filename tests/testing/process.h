// What tests ask of processes: run a shell command and take its output, start a program as a
// child process (to kill it as a crash would), and this process's resident memory.
//
//   auto [rc, output] = Shell("kcat -L -b 127.0.0.1:9092");  // rc: the exit code, -1 if none
//   Child proxy({"build/proxy/saltproxy", "--config", path}, "/tmp/proxy.log");
//   proxy.Signal(SIGKILL);
//   int status = proxy.Wait();
//   int64_t before = ResidentBytes();
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

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

// A program run as a child process, its stdout and stderr appended to a log file. The
// destructor kills it (SIGKILL) and reaps it if the test did not.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log) {
    // Everything the child needs is made before fork: between fork and exec a child of a
    // threaded process may only make async-signal-safe calls (no allocation).
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_ = fork();
    if (pid_ == 0) {
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      execv(args[0], args.data());
      _exit(127);
    }
    if (fd >= 0) close(fd);
  }
  ~Child() {
    if (running()) {
      Signal(SIGKILL);
      Wait();
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  bool running() const { return pid_ > 0 && !reaped_; }
  void Signal(int signal) {
    if (running()) kill(pid_, signal);
  }
  // Waits for the child to end; its waitpid status (WIFSIGNALED, WTERMSIG, ...).
  int Wait() {
    if (!running()) return status_;
    while (waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status_;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

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
