/// @file
/// @brief Internal: build configuration shared by flowpool's headers and sources. Not part of the API.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace flowpool::detail {

// The unit of false sharing on the targets flowpool supports (x86-64, AArch64). A constant rather
// than std::hardware_destructive_interference_size, whose value GCC warns may differ between
// translation units compiled with different -mtune flags (an ABI hazard for a static library).
inline constexpr std::size_t k_cache_line = 64;

// static_cast between integer types that are the same type on some platforms and not on others
// (std::size_t and std::uint64_t). Spelled through a template so that -Wuseless-cast, which users
// may enable, does not flag it where the two coincide.
template <class To, class From>
constexpr To integer_cast(From value) noexcept {
  return static_cast<To>(value);
}

[[noreturn]] inline void assertion_failed(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "flowpool: assertion failed: %s (%s:%d)\n", expr, file, line);
  std::abort();
}

}  // namespace flowpool::detail

// FLOWPOOL_ASSERT(cond): a broken internal precondition. Checked when NDEBUG is not defined (Debug
// builds); aborts with a message, never throws.
#if defined(NDEBUG)
#define FLOWPOOL_ASSERT(cond) static_cast<void>(0)
#else
#define FLOWPOOL_ASSERT(cond) \
  ((cond) ? static_cast<void>(0) : ::flowpool::detail::assertion_failed(#cond, __FILE__, __LINE__))
#endif
