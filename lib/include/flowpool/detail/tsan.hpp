/// @file
/// @brief Internal: ThreadSanitizer annotations for a user's program built with -fsanitize=thread
/// against the normal (uninstrumented) libflowpool.a. Installed because the public templates use
/// them; not part of the API.
#pragma once

// The library hands tasks over with fences and atomics compiled without instrumentation, which
// TSan cannot see. When the including translation unit is instrumented, the header-side code
// tells TSan about each hand-off with __tsan_release(addr) / __tsan_acquire(addr) (provided by
// the TSan runtime; abseil and folly annotate the same way). Otherwise the macros expand to
// nothing and k_tsan_annotations is false, so every annotated path compiles to what it was.
//
// FLOWPOOL_TSAN (defined for flowpool's own targets by FLOWPOOL_SANITIZE=thread, and publicly on
// the library when it is built with -fsanitize=thread in CMAKE_CXX_FLAGS) turns them off: there
// the library itself is instrumented, and TSan must check its real ordering, not ours.
#if defined(__SANITIZE_THREAD__)
#define FLOWPOOL_DETAIL_TSAN_INSTRUMENTED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FLOWPOOL_DETAIL_TSAN_INSTRUMENTED 1
#endif
#endif

#if defined(FLOWPOOL_DETAIL_TSAN_INSTRUMENTED) && !defined(FLOWPOOL_TSAN)
#define FLOWPOOL_TSAN_ANNOTATIONS 1
extern "C" void __tsan_acquire(void* addr);  // NOLINT(bugprone-reserved-identifier): TSan's name
extern "C" void __tsan_release(void* addr);  // NOLINT(bugprone-reserved-identifier): TSan's name
// The calling thread acquires what every FLOWPOOL_TSAN_RELEASE(p) on the same address released.
#define FLOWPOOL_TSAN_ACQUIRE(p) __tsan_acquire(const_cast<void*>(static_cast<const volatile void*>(p)))
// Everything the calling thread did so far happens-before a later FLOWPOOL_TSAN_ACQUIRE(p).
#define FLOWPOOL_TSAN_RELEASE(p) __tsan_release(const_cast<void*>(static_cast<const volatile void*>(p)))
#else
#define FLOWPOOL_TSAN_ANNOTATIONS 0
#define FLOWPOOL_TSAN_ACQUIRE(p) static_cast<void>(0)
#define FLOWPOOL_TSAN_RELEASE(p) static_cast<void>(0)
#endif

#include <utility>

namespace flowpool::detail {

// True when this translation unit annotates flowpool's hand-offs for TSan (see above).
inline constexpr bool k_tsan_annotations = FLOWPOOL_TSAN_ANNOTATIONS != 0;

// What thread_pool queues instead of the user's callable when k_tsan_annotations: the callable
// plus the tokens its end is released on, the group's (task_group::wait() acquires it) and the
// pool's (wait_idle() acquires it). `m_end` is declared first, so it is destroyed last: the
// releases come after the callable's destructor too, which the library runs before it counts the
// task as done. Never used when k_tsan_annotations is false.
template <class F>
class tsan_task {
 public:
  template <class G>
  tsan_task(G&& fn, const void* group, const void* pool) : m_end{group, pool}, m_fn(std::forward<G>(fn)) {}

  decltype(auto) operator()() { return m_fn(); }

 private:
  struct end_release {
    const void* group;
    const void* pool;
    end_release(const void* g, const void* p) noexcept : group(g), pool(p) {}
    end_release(end_release&& other) noexcept : group(other.group), pool(other.pool) { other.pool = nullptr; }
    end_release(const end_release&) = delete;
    end_release& operator=(const end_release&) = delete;
    end_release& operator=(end_release&&) = delete;
    ~end_release() {
      if (pool == nullptr) {
        return;  // moved from: the task lives on elsewhere
      }
      if (group != nullptr) {
        FLOWPOOL_TSAN_RELEASE(group);  // pairs with: task_group's acquire after waiting
      }
      FLOWPOOL_TSAN_RELEASE(pool);  // pairs with: thread_pool::wait_idle()'s acquire
    }
  };
  end_release m_end;
  F m_fn;
};

}  // namespace flowpool::detail
