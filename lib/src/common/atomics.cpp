#include "common/atomics.hpp"

#include <flowpool/detail/config.hpp>

#include <climits>
#include <mutex>

#if defined(__linux__) && !defined(FLOWPOOL_TSAN)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FLOWPOOL_HAS_MEMBARRIER 1
#endif

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define FLOWPOOL_HAS_FUTEX 1
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

#if defined(FLOWPOOL_HAS_FUTEX)
namespace {
// std::atomic<std::uint32_t> is a plain 32-bit word (same size, lock-free), which is what the
// kernel compares. The private operations skip the cross-process hash: pool words are never
// shared with another process.
std::uint32_t* futex_word(atomic<std::uint32_t>& word) noexcept {
  static_assert(sizeof(atomic<std::uint32_t>) == sizeof(std::uint32_t) && atomic<std::uint32_t>::is_always_lock_free);
  return reinterpret_cast<std::uint32_t*>(&word);  // NOLINT(cppcoreguidelines-pro-type-reinterpret-cast)
}
}  // namespace

void futex_wait(atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  // EAGAIN (the word already changed), EINTR (a signal) and a spurious return all mean "re-check".
  (void)syscall(SYS_futex, futex_word(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake_one(atomic<std::uint32_t>& word) noexcept {
  (void)syscall(SYS_futex, futex_word(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

void futex_wake_all(atomic<std::uint32_t>& word) noexcept {
  (void)syscall(SYS_futex, futex_word(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}
#else
void futex_wait(atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  word.wait(expected, std::memory_order_relaxed);  // relaxed: the caller re-loads with acquire
}

void futex_wake_one(atomic<std::uint32_t>& word) noexcept {
  word.notify_one();
}

void futex_wake_all(atomic<std::uint32_t>& word) noexcept {
  word.notify_all();
}
#endif

}  // namespace flowpool::detail
