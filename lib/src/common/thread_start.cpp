#include "flowpool/detail/thread_start.hpp"

#include <atomic>
#include <cerrno>
#include <system_error>
#include <utility>

#include <pthread.h>

namespace flowpool::detail {
namespace {

// Countdown to an injected failure; 0 = none. Relaxed is enough: it carries no data, and tests
// set it before the constructor they check runs, on the same thread that calls start_thread().
std::atomic<std::size_t> g_fail_countdown{0};

bool injected_failure_due() noexcept {
  std::size_t left = g_fail_countdown.load(std::memory_order_relaxed);
  while (left != 0) {
    // Relaxed: the counter orders nothing else; the CAS only makes each decrement count once.
    if (g_fail_countdown.compare_exchange_weak(left, left - 1, std::memory_order_relaxed)) {
      return left == 1;
    }
  }
  return false;
}

}  // namespace

std::thread start_thread(std::string name, std::function<void()> body) {
  if (injected_failure_due()) {
    throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                            "flowpool: injected thread start failure");
  }
  return std::thread([name = std::move(name), body = std::move(body)] {
    constexpr std::size_t k_linux_name_max = 15;  // 16 bytes including the terminating NUL
    const std::string shown = name.substr(0, k_linux_name_max);
    (void)pthread_setname_np(pthread_self(), shown.c_str());  // naming is best effort
    body();
  });
}

void fail_thread_start_after(std::size_t n) noexcept {
  g_fail_countdown.store(n, std::memory_order_relaxed);  // relaxed: see g_fail_countdown
}

}  // namespace flowpool::detail
