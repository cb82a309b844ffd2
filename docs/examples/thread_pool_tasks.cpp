// flowpool::thread_pool: submit() returns a std::future with the result (or the exception);
// post() is fire-and-forget, and an exception escaping a posted task goes to on_error;
// wait_idle() waits for every task accepted so far.
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <future>
#include <stdexcept>
#include <string>

int main() {
  //! [submit_post]
  std::atomic<int> errors{0};
  flowpool::thread_pool pool{{.threads = 2, .on_error = [&](const std::exception_ptr&) { errors.fetch_add(1); }}};

  // submit: the arguments are copied into the task; the future holds the result or the exception.
  std::future<std::size_t> length = pool.submit([](const std::string& s) { return s.size(); }, std::string("flowpool"));
  std::future<int> failing = pool.submit([]() -> int { throw std::runtime_error("no answer"); });

  // post: fire and forget. From outside the pool it blocks while the injection queue is full.
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) {
    pool.post([&done, i] {
      if (i == 13) {
        throw std::runtime_error("unlucky");  // goes to on_error; the worker carries on
      }
      done.fetch_add(1, std::memory_order_relaxed);
    });
  }
  pool.wait_idle();  // every task accepted so far has finished

  const std::size_t n = length.get();  // 8
  std::string message;
  try {
    (void)failing.get();
  } catch (const std::runtime_error& e) {
    message = e.what();  // "no answer"
  }
  //! [submit_post]

  std::printf("length %zu, error \"%s\", %d posted tasks done, %d error(s)\n", n, message.c_str(), done.load(),
              errors.load());
  return n == 8 && message == "no answer" && done.load() == 99 && errors.load() == 1 ? 0 : 1;
}
