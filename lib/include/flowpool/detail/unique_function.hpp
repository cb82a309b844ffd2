/// @file
/// @brief Internal: a move-only type-erased callable (C++23's std::move_only_function, reduced to
/// what server_pool needs). Not API.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

namespace flowpool::detail {

template <class T>
struct is_std_function : std::false_type {};
template <class Sig>
struct is_std_function<std::function<Sig>> : std::true_type {};

// Whether a function pointer, member pointer or std::function is empty. A function, not an
// expression at the call site: `!f` on a function reference there draws -Waddress.
template <class P>
[[nodiscard]] constexpr bool is_empty_callable(const P& p) noexcept {
  return !p;
}

template <class Sig>
class unique_function;

// Holds any callable that is invocable as `R(Args...)`, copyable or not; empty when default
// constructed, from nullptr, or from a null function pointer or an empty std::function. One heap
// allocation per stored callable, none per call.
template <class R, class... Args>
class unique_function<R(Args...)> {
 public:
  unique_function() noexcept = default;
  unique_function(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): like std::function

  template <class F>
  requires(!std::same_as<std::remove_cvref_t<F>, unique_function> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      unique_function(F&& f)  // NOLINT(google-explicit-constructor): like std::function
  {
    using stored = std::decay_t<F>;
    if constexpr (std::is_pointer_v<stored> || std::is_member_pointer_v<stored> || is_std_function<stored>::value) {
      if (is_empty_callable<stored>(f)) {
        return;
      }
    }
    m_target = std::make_unique<model<stored>>(std::forward<F>(f));
  }

  unique_function(unique_function&&) noexcept = default;
  unique_function& operator=(unique_function&&) noexcept = default;
  unique_function(const unique_function&) = delete;
  unique_function& operator=(const unique_function&) = delete;
  ~unique_function() = default;

  explicit operator bool() const noexcept { return m_target != nullptr; }

  // Calls the target as a non-const lvalue (as std::function does). Precondition: not empty.
  R operator()(Args... args) const { return m_target->call(std::forward<Args>(args)...); }

 private:
  struct base {
    base() = default;
    base(const base&) = delete;
    base& operator=(const base&) = delete;
    virtual ~base() = default;
    virtual R call(Args... args) = 0;
  };

  template <class F>
  struct model final : base {
    template <class G>
    explicit model(G&& g) : fn(std::forward<G>(g)) {}
    R call(Args... args) override { return std::invoke(fn, std::forward<Args>(args)...); }
    F fn;
  };

  std::unique_ptr<base> m_target;
};

}  // namespace flowpool::detail
