/// @file
/// @brief Internal: turning a user's timeout into one steady-clock deadline. Not part of the API.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace flowpool::detail {

// A deadline fixed once per call, so spurious wake-ups and retries never extend a timed wait.
//   * a zero, negative or NaN timeout: an already-passed deadline, i.e. a single non-blocking try;
//   * a timeout too large to add to now() without overflow (e.g. duration::max()): no deadline,
//     i.e. wait forever;
//   * otherwise now() + timeout, rounded up to the clock's tick.
class deadline {
 public:
  using clock = std::chrono::steady_clock;

  [[nodiscard]] static deadline never() noexcept { return deadline{std::nullopt}; }
  [[nodiscard]] static deadline already_passed() noexcept { return deadline{clock::time_point::min()}; }

  template <class Rep, class Period>
  [[nodiscard]] static deadline after(const std::chrono::duration<Rep, Period>& timeout) noexcept {
    if (!(timeout > timeout.zero())) {  // also catches NaN for floating-point durations
      return already_passed();
    }
    const clock::time_point now = clock::now();
    // Compare in long double seconds: converting the user's duration to clock ticks could overflow.
    const std::chrono::duration<long double> requested = timeout;
    const std::chrono::duration<long double> room = clock::time_point::max() - now;
    if (requested >= room) {
      return never();
    }
    return deadline{now + std::chrono::ceil<clock::duration>(requested)};
  }

  // The deadline `when` on any clock, converted once, now, into a steady-clock deadline (later
  // adjustments of a non-steady clock such as system_clock do not move it). The remaining time is
  // computed in long double seconds, as in after(), so no time point overflows when converted;
  // on platforms where long double is double, that rounds by well under a microsecond.
  template <class Clock, class Duration>
  requires std::chrono::is_clock_v<Clock>
  [[nodiscard]] static deadline at(const std::chrono::time_point<Clock, Duration>& when) {
    using seconds = std::chrono::duration<long double>;
    const seconds remaining = seconds(when.time_since_epoch()) - seconds(Clock::now().time_since_epoch());
    return after(remaining);
  }

  [[nodiscard]] bool is_never() const noexcept { return !m_at.has_value(); }
  // The deadline as one time point: time_point::max() for never, time_point::min() for a deadline
  // that had already passed when it was made.
  [[nodiscard]] clock::time_point as_time_point() const noexcept { return m_at.value_or(clock::time_point::max()); }
  [[nodiscard]] bool passed() const noexcept {
    return m_at.has_value() && (*m_at == clock::time_point::min() || clock::now() >= *m_at);
  }

  // Waits on `cv` until `pred()` holds or the deadline passes; returns pred(). Like the standard's
  // predicate overloads, it re-checks pred() after a timeout, so a waiter whose timeout races
  // with a notification still consumes the state it was notified about instead of dropping it.
  template <class Pred>
  bool wait(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, Pred pred) const {
    while (!pred()) {
      if (!m_at) {
        cv.wait(lock);
      } else if (passed() || cv.wait_until(lock, *m_at) == std::cv_status::timeout) {
        return pred();
      }
    }
    return true;
  }

 private:
  explicit deadline(std::optional<clock::time_point> at) noexcept : m_at(at) {}
  std::optional<clock::time_point> m_at;
};

}  // namespace flowpool::detail
