/// @file
/// @brief Internal: starting named OS threads, with a failure-injection hook for tests. Not API.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <thread>

namespace flowpool::detail {

// Starts a thread that runs `body` and names it `name` (Linux keeps the first 15 characters).
// Throws std::system_error when the thread cannot be started (as std::thread does), and also when
// a failure has been injected with fail_thread_start_after().
std::thread start_thread(std::string name, std::function<void()> body);

// Test hook: the n-th start_thread() call from now on (1-based), in any thread, throws
// std::system_error(EAGAIN) instead of starting a thread; 0 disables. Used by the fault tests to
// prove that a pool constructor joins the threads it did start and rethrows.
void fail_thread_start_after(std::size_t n) noexcept;

}  // namespace flowpool::detail
