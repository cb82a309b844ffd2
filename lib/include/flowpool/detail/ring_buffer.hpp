/// @file
/// @brief Internal: the FIFO storage behind flowpool::bounded_queue. Not part of the API.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace flowpool::detail {

// A growable circular FIFO buffer. Not thread-safe: bounded_queue guards it with its mutex.
//
// It grows by doubling, up to `soft_capacity` (the queue's capacity) and beyond it only when a
// caller pushes past it (bounded_queue::force_put). It never shrinks, so a queue keeps the memory
// of its peak size. Growth relocates elements with std::move_if_noexcept, so a throwing copy
// during growth leaves the buffer exactly as it was (the std::vector guarantee).
template <class T>
class ring_buffer {
 public:
  explicit ring_buffer(std::size_t soft_capacity) noexcept : m_soft_capacity(soft_capacity) {}
  ring_buffer(const ring_buffer&) = delete;
  ring_buffer& operator=(const ring_buffer&) = delete;
  ~ring_buffer() {
    clear();
    deallocate(m_data, m_cap);
  }

  [[nodiscard]] std::size_t size() const noexcept { return m_size; }
  // The size beyond which the buffer grows only on explicit request; fixed at construction, so
  // it may be read without the lock that guards the rest.
  [[nodiscard]] std::size_t soft_capacity() const noexcept { return m_soft_capacity; }
  [[nodiscard]] bool empty() const noexcept { return m_size == 0; }

  // Strong guarantee: if allocation or T's constructor throws, nothing changes.
  template <class U>
  void push_back(U&& value) {
    emplace_back(std::forward<U>(value));
  }

  // Constructs the new back element from `args` (parenthesised, like std::vector::emplace_back).
  // Strong guarantee: if allocation or T's constructor throws, nothing changes.
  template <class... Args>
  void emplace_back(Args&&... args) {
    if (m_size == m_cap) {
      grow();
    }
    ::new (static_cast<void*>(m_data + wrap(m_head + m_size))) T(std::forward<Args>(args)...);
    ++m_size;
  }

  [[nodiscard]] T& front() noexcept { return m_data[m_head]; }

  // The element at position `i` counted from the front (0 = front).
  [[nodiscard]] T& at_offset(std::size_t i) noexcept { return m_data[wrap(m_head + i)]; }

  void pop_front() noexcept {
    std::destroy_at(m_data + m_head);
    m_head = wrap(m_head + 1);
    --m_size;
  }

  void clear() noexcept {
    while (m_size != 0) {
      pop_front();
    }
    m_head = 0;
  }

 private:
  [[nodiscard]] std::size_t wrap(std::size_t i) const noexcept { return i >= m_cap ? i - m_cap : i; }

  static T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  static void deallocate(T* p, std::size_t n) noexcept {
    if (p != nullptr) {
      std::allocator<T>{}.deallocate(p, n);
    }
  }

  void grow() {
    constexpr std::size_t k_initial = 16;
    std::size_t new_cap = 0;
    if (m_cap == 0) {
      new_cap = m_soft_capacity < k_initial ? m_soft_capacity : k_initial;
      new_cap = new_cap == 0 ? 1 : new_cap;
    } else if (m_cap < m_soft_capacity) {
      new_cap = m_cap * 2 < m_soft_capacity ? m_cap * 2 : m_soft_capacity;
    } else {
      new_cap = m_cap * 2;
    }
    T* fresh = allocate(new_cap);
    std::size_t built = 0;
    try {
      for (; built < m_size; ++built) {
        ::new (static_cast<void*>(fresh + built)) T(std::move_if_noexcept(at_offset(built)));
      }
    } catch (...) {
      std::destroy(fresh, fresh + built);
      deallocate(fresh, new_cap);
      throw;
    }
    const std::size_t count = m_size;
    clear();
    deallocate(m_data, m_cap);
    m_data = fresh;
    m_cap = new_cap;
    m_head = 0;
    m_size = count;
  }

  T* m_data = nullptr;
  std::size_t m_cap = 0;
  std::size_t m_head = 0;
  std::size_t m_size = 0;
  const std::size_t m_soft_capacity;
};

}  // namespace flowpool::detail
