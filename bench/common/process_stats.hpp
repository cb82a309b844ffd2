// Process-level figures for benchmarks and soak runs (Linux).
#pragma once

#include <cstddef>
#include <fstream>

#include <unistd.h>

namespace flowpool_bench {

/// @return the resident set size of this process in bytes, from /proc/self/statm (0 if unreadable).
inline std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t total_pages = 0;
  std::size_t resident_pages = 0;
  if (!(statm >> total_pages >> resident_pages)) {
    return 0;
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  return resident_pages * static_cast<std::size_t>(page > 0 ? page : 4096);
}

}  // namespace flowpool_bench
