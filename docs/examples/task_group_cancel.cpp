// flowpool::task_group::cancel(): a search that stops as soon as one task finds the answer. The
// task that finds it cancels the group; the tasks that have not started are skipped, the running
// ones finish, and wait() returns normally.
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>

int main() {
  flowpool::thread_pool pool(2);
  constexpr std::uint64_t k_chunks = 10'000;
  constexpr std::uint64_t k_chunk = 1'000;
  constexpr std::uint64_t k_target = 1'234'567;  // the value we look for, in chunk 1234
  std::atomic<std::uint64_t> found{0};
  std::atomic<std::uint64_t> chunks_searched{0};

  //! [cancel]
  flowpool::task_group group(pool);
  for (std::uint64_t c = 0; c < k_chunks; ++c) {
    group.run([&, c] {
      chunks_searched.fetch_add(1);
      for (std::uint64_t v = c * k_chunk; v < (c + 1) * k_chunk; ++v) {
        if (v == k_target) {
          found.store(v);
          group.cancel();  // the chunks not started yet are skipped
        }
      }
    });
  }
  group.wait();  // returns once the running chunks have finished; does not throw
  //! [cancel]

  std::printf("found %llu after searching %llu of %llu chunks; %llu skipped\n",
              static_cast<unsigned long long>(found.load()), static_cast<unsigned long long>(chunks_searched.load()),
              static_cast<unsigned long long>(k_chunks), static_cast<unsigned long long>(pool.stats().skipped));
  const bool ok = found.load() == k_target && chunks_searched.load() + pool.stats().skipped == k_chunks;
  return ok ? 0 : 1;
}
