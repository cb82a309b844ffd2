// Internal: the one place where flowpool's sources get std::atomic and fences.
//
// ThreadSanitizer does not model std::atomic_thread_fence, so code that relies on a fence for
// ordering (the Chase-Lev deque, the Dekker-style "publish, fence, check sleepers" sequences)
// would produce false reports, and worse, TSan would check a different program than the one we
// ship. Building with FLOWPOOL_TSAN (the tsan preset defines it) swaps each fence-based sequence
// for the equivalent sequence of seq_cst operations, which TSan understands:
//
//   normal build                               FLOWPOOL_TSAN build
//   x.store(v, relaxed); fence_seq_cst();      x.store(v, seq_cst);
//   y.load(relaxed)                            y.load(seq_cst)
//   fence_release(); x.store(v, relaxed)       x.store(v, seq_cst)
//
// The swapped build is at least as strong at every site (each fence-ordered access becomes a
// seq_cst access, and fence_seq_cst() still executes its hardware fence, invisible to TSan), so
// TSan checks a program whose behaviours are a subset of the normal build's.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace flowpool::detail {

template <class T>
using atomic = std::atomic<T>;

// FLOWPOOL_TSAN (FLOWPOOL_SANITIZE=thread), or any -fsanitize=thread build of flowpool itself,
// e.g. through CMAKE_CXX_FLAGS: the compiler says so (__SANITIZE_THREAD__ on GCC,
// __has_feature(thread_sanitizer) on Clang).
#if defined(FLOWPOOL_TSAN) || defined(__SANITIZE_THREAD__)
#define FLOWPOOL_DETAIL_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FLOWPOOL_DETAIL_TSAN_BUILD 1
#endif
#endif
#if defined(FLOWPOOL_DETAIL_TSAN_BUILD)
inline constexpr bool k_tsan_build = true;
#else
inline constexpr bool k_tsan_build = false;
#endif

// The order of an access that a neighbouring fence_seq_cst() orders in a normal build.
inline constexpr std::memory_order k_fenced = k_tsan_build ? std::memory_order_seq_cst : std::memory_order_relaxed;
// The order of a publishing store that a preceding fence_release() orders in a normal build. Under
// TSan it is seq_cst, not just release, because the same store is then followed by the Dekker
// check of the sleepers (fence_seq_cst() + k_fenced load), which needs a seq_cst store.
inline constexpr std::memory_order k_fenced_release =
    k_tsan_build ? std::memory_order_seq_cst : std::memory_order_relaxed;
// The order of an acquire load that a neighbouring fence_seq_cst() also orders in a normal build.
inline constexpr std::memory_order k_fenced_acquire =
    k_tsan_build ? std::memory_order_seq_cst : std::memory_order_acquire;

// A full fence (the "Dekker" fence between a store and a load of different locations).
//
// On x86-64 it is a locked add of zero to the top of the stack rather than the MFENCE GCC emits
// for std::atomic_thread_fence(seq_cst): any locked instruction is a full barrier for ordinary
// (write-back) memory, and it is about twice as cheap as MFENCE on current cores, which also
// orders non-temporal stores flowpool never issues. Linux's smp_mb() made the same choice. The
// "memory" clobber keeps the compiler from moving accesses across it, as the standard fence does.
//
// Under FLOWPOOL_TSAN the fence is still executed: TSan ignores it (it neither models nor reports
// it), but a few Dekker sites pair a fence with a release (not seq_cst) access, and without the
// real fence the hardware could reorder them and lose a wake-up in the TSan build only.
inline void fence_seq_cst() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  asm volatile("lock addl $0, (%%rsp)" ::: "memory", "cc");
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

// Asymmetric Dekker fences (the idea of P1202's asymmetric_thread_fence_light/heavy and Folly's
// asymmetricHeavyBarrier). Some Dekker pairs have a hot side (every task push reads the sleeper
// state) and a cold side (a worker about to sleep). The hot side calls
// asymmetric_fence_light(), which is only a compiler barrier when the cold side's
// asymmetric_fence_heavy() is a Linux membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): that call
// makes every running thread of the process execute a full barrier (an IPI) before it returns,
// so either the hot thread's store was already globally visible when the cold side re-checks, or
// the hot thread's later loads come after that barrier and see the cold side's earlier writes.
// If membarrier is unavailable (not Linux, old kernel, seccomp) or under TSan, both are
// fence_seq_cst(). init_asymmetric_fences() decides once, before any pool starts a thread.
void init_asymmetric_fences() noexcept;
void asymmetric_fence_heavy() noexcept;

// Set once by init_asymmetric_fences(), before the threads that read it exist (they are started
// after it, which orders the store before their loads); relaxed loads are therefore enough.
inline atomic<bool> g_asymmetric_fences{false};

inline bool asymmetric_fences_enabled() noexcept {
  return g_asymmetric_fences.load(std::memory_order_relaxed);  // relaxed: see g_asymmetric_fences
}

inline void asymmetric_fence_light() noexcept {
  if (asymmetric_fences_enabled()) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // compiler barrier only
  } else {
    fence_seq_cst();
  }
}

// Blocking on a 32-bit atomic word (a futex on Linux). futex_wait(word, expected) sleeps while
// `word` holds `expected`: the kernel compares and sleeps atomically, so a futex_wake_*() after a
// store that changed the word is never lost. It may return spuriously; it orders nothing by
// itself, so the caller re-loads the word with the ordering it needs (event_count: acquire).
//
// Why not std::atomic::wait/notify (issue 13): libstdc++ spins before it sleeps (12 PAUSEs and 4
// sched_yield() calls on every wait, on top of the caller's own spin phase) and keeps a waiter
// count per address bucket in a process-wide table, which notify reads and wait updates with
// seq_cst RMWs. The event count already knows whether anyone may be asleep (m_waiters) and has
// its own spin phase in the pool, so it only needs the two system calls. Elsewhere (not Linux)
// these are std::atomic::wait/notify.
void futex_wait(atomic<std::uint32_t>& word, std::uint32_t expected) noexcept;
void futex_wake_one(atomic<std::uint32_t>& word) noexcept;
void futex_wake_all(atomic<std::uint32_t>& word) noexcept;

// A release fence before a relaxed publishing store.
inline void fence_release() noexcept {
  if constexpr (!k_tsan_build) {
    std::atomic_thread_fence(std::memory_order_release);
  }
}

// A hint to the CPU inside a spin loop (PAUSE on x86: saves power, frees the sibling hyperthread).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace flowpool::detail
