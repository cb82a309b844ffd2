#include "common/atomics.hpp"

#include <flowpool/detail/config.hpp>

#include <mutex>

#if defined(__linux__) && !defined(FLOWPOOL_TSAN)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FLOWPOOL_HAS_MEMBARRIER 1
#endif

namespace flowpool::detail {

void init_asymmetric_fences() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(FLOWPOOL_HAS_MEMBARRIER)
    const long supported = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) {
      return;
    }
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return;
    }
    // relaxed: threads that read it are created after this (thread creation synchronizes).
    // A pool already running with the flag false keeps using full fences on both sides until
    // its threads see true; a hot side with a full fence pairs with either kind of cold side.
    g_asymmetric_fences.store(true, std::memory_order_relaxed);
#endif
  });
}

void asymmetric_fence_heavy() noexcept {
#if defined(FLOWPOOL_HAS_MEMBARRIER)
  if (asymmetric_fences_enabled()) {
    // Once enabled, the light side is a bare compiler barrier, so falling back to a one-sided
    // full fence here would not form a Dekker pair and could lose a wake-up. After a successful
    // registration the kernel documents no failure for this command, so one is fatal.
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      assertion_failed("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after registration", __FILE__, __LINE__);
    }
    return;
  }
#endif
  fence_seq_cst();
}

}  // namespace flowpool::detail
