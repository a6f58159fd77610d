// Waiting in tests: on a condition, with a generous deadline, never for a fixed time, so that a
// test is as fast as the machine allows and still passes on a loaded one.
//
//   ASSERT_TRUE(WaitUntil([&] { return client.Get("/readyz").status == 200; }));
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace saltproxy::testing {

// Polls `done` until it holds (true) or `deadline` has passed (false).
inline bool WaitUntil(const std::function<bool()>& done,
                      std::chrono::milliseconds deadline = std::chrono::seconds(60),
                      std::chrono::milliseconds poll = std::chrono::milliseconds(10)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(poll);
  }
  return true;
}

}  // namespace saltproxy::testing
