// Helpers shared by flowpool's tests.
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>

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

}  // namespace flowpool_test
