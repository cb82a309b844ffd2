/// @file
/// @brief Internal: flowpool::detail::small_task, the move-only, small-buffer `void()` callable
/// every pool task is stored in. Installed because the pool's templates construct it; not API.
#pragma once

#include <flowpool/detail/tsan.hpp>

#include <concepts>
#include <cstddef>
#include <cstring>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

namespace flowpool::detail {

/// Bytes of callable a small_task stores without a heap allocation.
inline constexpr std::size_t k_small_task_capacity = 48;
/// The strictest alignment a callable stored inline may need.
inline constexpr std::size_t k_small_task_alignment = alignof(std::max_align_t);

/// True when a callable of type `F` is stored inside the small_task itself (no heap allocation):
/// it fits in 48 bytes, is not over-aligned, and its move constructor cannot throw (the task is
/// moved between queues inside noexcept code).
template <class F>
inline constexpr bool is_small_task_inline_v =  // NOLINT(readability-identifier-naming): standard `_v` trait
    (sizeof(F) <= k_small_task_capacity) &&
    (alignof(F) <= k_small_task_alignment) && std::is_nothrow_move_constructible_v<F>;

class small_task;

// What small_task's converting constructor accepts: anything callable with no arguments, except
// a small_task (which must go to the move constructor).
template <class F>
concept small_task_callable =
    !std::is_same_v<std::remove_cvref_t<F>, small_task> && std::is_invocable_v<std::decay_t<F>&>;

// A move-only, type-erased `void()` callable with a 48-byte small buffer (the std::move_only_function
// idea, without its allocation for small callables and with the single-shot helper the pool needs).
//
// Storage: a callable for which is_small_task_inline_v holds lives in the buffer; any other is
// allocated with `new` and the buffer holds the pointer. A trivially copyable callable (the usual
// lambda capturing references, pointers and integers) is relocated with memcpy and destroyed with
// nothing, so moving it between queues costs no indirect call.
//
// Thread-safety: none of its own; the pool moves each task between threads through its queues,
// whose release/acquire publication orders the task's construction before its invocation.
//
// Under TSan annotations (detail/tsan.hpp, a user's -fsanitize=thread program against the normal
// library) that publication is invisible to TSan, and the library moves and runs the task through
// the ops below, which are instantiated in the user's instrumented code. So every access to a
// buffer (and to m_ops, in every member: the library may call this TU's copies of them) is
// bracketed by FLOWPOOL_TSAN_ACQUIRE/RELEASE on the buffer's address (tsan_token()):
// the library orders the successive users of a buffer (producer, worker, next producer), and the
// brackets tell TSan so. The memcpy shortcuts are off then (a memcpy from the library would read
// the buffer unbracketed). With annotations off nothing of this is compiled.
class small_task {
 public:
  small_task() noexcept = default;

  // Stores `f`. Throws what F's constructor or (for large callables) `new` throws.
  // The concept excludes small_task itself, so this never hides the move constructor.
  template <small_task_callable F>
  explicit small_task(F&& f) {  // NOLINT(bugprone-forwarding-reference-overload): see above
    emplace(std::forward<F>(f));
  }

  small_task(small_task&& other) noexcept { take(other); }
  small_task& operator=(small_task&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  small_task(const small_task&) = delete;
  small_task& operator=(const small_task&) = delete;
  ~small_task() { reset(); }

  // Stores `f` in an empty task. Strong guarantee: if constructing F (or allocating it) throws,
  // the task stays empty.
  template <class F>
  void emplace(F&& f) {
    using fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn&>, "a task must be callable with no arguments");
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only; ends after m_ops is written
    if constexpr (is_small_task_inline_v<fn>) {
      ::new (static_cast<void*>(m_buffer)) fn(std::forward<F>(f));
      m_ops = &k_inline_ops<fn>;
    } else {
      fn* heap = new fn(std::forward<F>(f));
      std::memcpy(m_buffer, static_cast<void*>(&heap), sizeof(void*));  // the pointer itself
      m_ops = &k_heap_ops<fn>;
    }
  }

  // True if the task holds a callable.
  [[nodiscard]] explicit operator bool() const noexcept {
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only
    return m_ops != nullptr;
  }

  // The address the TSan annotations of this task's buffer use (see the class comment).
  [[nodiscard]] const void* tsan_token() const noexcept { return m_buffer; }

  // True if the held callable lives in the small buffer (for tests and statistics).
  [[nodiscard]] bool is_inline() const noexcept {
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only
    return m_ops != nullptr && m_ops->inline_storage;
  }

  // Invokes the callable; it stays stored. Precondition: not empty. Throws what it throws.
  void operator()() {
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only
    m_ops->invoke(m_buffer);
  }

  // Invokes the callable, then destroys it (also when it throws), leaving the task empty: the
  // pool's way of running a task, so captured state is released before completion is signalled.
  // Precondition: not empty. Throws what the callable throws.
  void run_once() {
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only; ends after the reset
    struct destroy_on_exit {
      small_task* task;
      ~destroy_on_exit() { task->reset(); }
    } guard{this};
    m_ops->invoke(m_buffer);
  }

  // Destroys the held callable, if any. Never throws (callables must not throw from destructors).
  void reset() noexcept {
    [[maybe_unused]] const buffer_scope scope(m_buffer);  // TSan only
    if (m_ops != nullptr) {
      if (m_ops->destroy != nullptr) {
        m_ops->destroy(m_buffer);
      }
      m_ops = nullptr;
    }
  }

 private:
  struct ops {
    void (*invoke)(void* buffer);
    // nullptr: the first `size` bytes of the buffer may be copied (trivially copyable callable,
    // or a heap pointer).
    void (*relocate)(void* to, void* from) noexcept;
    // nullptr: nothing to do (trivially destructible inline callable).
    void (*destroy)(void* buffer) noexcept;
    std::size_t size;  // bytes of the buffer in use
    bool inline_storage;
  };

#if FLOWPOOL_TSAN_ANNOTATIONS
  // Acquires a buffer's token on construction and releases it on destruction. pairs with: the
  // same scope of the buffer's previous user (see the class comment).
  struct buffer_scope {
    const void* token;
    explicit buffer_scope(const void* t) noexcept : token(t) { FLOWPOOL_TSAN_ACQUIRE(token); }
    buffer_scope(const buffer_scope&) = delete;
    buffer_scope& operator=(const buffer_scope&) = delete;
    ~buffer_scope() { FLOWPOOL_TSAN_RELEASE(token); }
  };
#else
  // Annotations off: an empty, trivially destructible type that compiles to nothing.
  struct buffer_scope {
    explicit constexpr buffer_scope(const void* /*token*/) noexcept {}
  };
#endif

  template <class F>
  static constexpr ops k_inline_ops{
      [](void* b) {
        [[maybe_unused]] const buffer_scope scope(b);  // TSan only
        std::invoke(*std::launder(static_cast<F*>(b)));
      },
      std::is_trivially_copyable_v<F> && !k_tsan_annotations
          ? nullptr
          : +[](void* to, void* from) noexcept {
              [[maybe_unused]] const buffer_scope from_scope(from);  // TSan only
              [[maybe_unused]] const buffer_scope to_scope(to);      // TSan only
              F* src = std::launder(static_cast<F*>(from));
              ::new (to) F(std::move(*src));
              src->~F();
            },
      std::is_trivially_destructible_v<F> && !k_tsan_annotations ? nullptr
                                                                 : +[](void* b) noexcept {
                                                                     [[maybe_unused]] const buffer_scope scope(b);
                                                                     std::launder(static_cast<F*>(b))->~F();
                                                                   },
      sizeof(F), true};

  template <class F>
  static F* heap_pointer(void* b) noexcept {
    F* p = nullptr;
    std::memcpy(static_cast<void*>(&p), b, sizeof(void*));  // the pointer itself
    return p;
  }

  template <class F>
  static constexpr ops k_heap_ops{[](void* b) {
                                    [[maybe_unused]] const buffer_scope scope(b);  // TSan only
                                    std::invoke(*heap_pointer<F>(b));
                                  },
                                  !k_tsan_annotations ? nullptr
                                                      : +[](void* to, void* from) noexcept {
                                                          [[maybe_unused]] const buffer_scope from_scope(from);
                                                          [[maybe_unused]] const buffer_scope to_scope(to);
                                                          std::memcpy(to, from, sizeof(void*));  // the pointer
                                                        },
                                  [](void* b) noexcept {
                                    [[maybe_unused]] const buffer_scope scope(b);  // TSan only
                                    delete heap_pointer<F>(b);
                                  },
                                  sizeof(F*), false};

  void take(small_task& other) noexcept {
    [[maybe_unused]] const buffer_scope from_scope(other.m_buffer);  // TSan only
    [[maybe_unused]] const buffer_scope to_scope(m_buffer);          // TSan only
    m_ops = other.m_ops;
    if (m_ops != nullptr) {
      if (m_ops->relocate == nullptr) {
        std::memcpy(m_buffer, other.m_buffer, m_ops->size);  // only the initialised bytes
      } else {
        m_ops->relocate(m_buffer, other.m_buffer);
      }
      other.m_ops = nullptr;
    }
  }

  alignas(k_small_task_alignment) std::byte m_buffer[k_small_task_capacity];
  const ops* m_ops = nullptr;
};

}  // namespace flowpool::detail
