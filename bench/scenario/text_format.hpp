/// @file
/// @brief Number and column formatting shared by the scenario, faulty-fleet and fleet reports.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace flowpool_bench {

/// @brief `value` with `decimals` digits after the point.
inline std::string fixed(double value, int decimals) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

/// @brief `text` padded with spaces to `width` (on the left if `right`, else on the right).
inline std::string pad(const std::string& text, std::size_t width, bool right = true) {
  if (text.size() >= width) {
    return text;
  }
  const std::string fill(width - text.size(), ' ');
  return right ? fill + text : text + fill;
}

}  // namespace flowpool_bench
