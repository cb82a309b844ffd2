// Helpers shared by flowpool's tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace flowpool_test {

// How long each stress test runs: FLOWPOOL_STRESS_SECONDS (default 2, so CI stays short; set it
// higher to hunt for rare interleavings). Stress loops run rounds until this much time has passed;
// they never assert on speed.
inline std::chrono::duration<double> stress_duration() {
  const char* text = std::getenv("FLOWPOOL_STRESS_SECONDS");
  double seconds = text != nullptr ? std::strtod(text, nullptr) : 2.0;
  if (!(seconds > 0.0)) {
    seconds = 2.0;
  }
  return std::chrono::duration<double>(seconds);
}

// Polls `pred` until it holds or `limit` passes, and returns pred(). It only turns a would-be hang
// into a failed check and waits for observable state; it never orders threads: with a correct
// library `pred` becomes true whatever the scheduling, and the limit is far beyond any plausible
// delay, even under ThreadSanitizer on a loaded 2-core machine.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      return pred();
    }
    std::this_thread::yield();
  }
  return true;
}

// A one-shot gate: wait() blocks until open(), which may be called any number of times. Tests hold
// handlers with it until the test thread has observed what it checks (the opener decides; nothing
// sleeps). Pair it with an open_on_exit declared after the pool or source whose handlers wait, so
// that a failed REQUIRE opens it before that object's destructor joins the waiting handlers.
class gate {
 public:
  void open() {
    {
      const std::lock_guard<std::mutex> lock(m_mutex);
      m_open = true;
    }
    m_cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_cv.wait(lock, [this] { return m_open; });
  }

 private:
  std::mutex m_mutex;
  std::condition_variable m_cv;
  bool m_open = false;
};

// Opens a gate when it goes out of scope.
class open_on_exit {
 public:
  explicit open_on_exit(gate& g) noexcept : m_gate(g) {}
  open_on_exit(const open_on_exit&) = delete;
  open_on_exit& operator=(const open_on_exit&) = delete;
  ~open_on_exit() { m_gate.open(); }

 private:
  gate& m_gate;
};

// Small deterministic hash (splitmix64) for reproducible "random" choices in stress tests.
inline std::uint64_t mix(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27U)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31U);
}

}  // namespace flowpool_test
