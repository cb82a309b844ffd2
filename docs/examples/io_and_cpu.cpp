// Blocking I/O on server_pool slots, CPU work on a shared thread_pool: each handler fetches a page
// (simulated blocking I/O), then hands the computation to the thread_pool and waits for it, once
// through a task_group and once through a std::future. The slot threads are not pool workers, so
// waiting there holds no worker. Returns non-zero unless every page's results are right.
#include <flowpool/server_pool.hpp>
#include <flowpool/task_group.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <future>
#include <numeric>
#include <span>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t k_pages = 40;
constexpr std::size_t k_page_size = 4096;

// Stands in for a blocking read (a socket, a database, a file): 200 microseconds, then the data.
std::vector<std::uint32_t> fetch(std::size_t page) {
  std::this_thread::sleep_for(std::chrono::microseconds(200));
  std::vector<std::uint32_t> values(k_page_size);
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<std::uint32_t>((page * k_page_size + i) * 2654435761U);
  }
  return values;
}

//! [cpu_work]
// CPU work: the sum of one page, in four pieces that the thread_pool's workers run.
std::uint64_t page_sum(flowpool::thread_pool& cpu, std::span<const std::uint32_t> page) {
  constexpr std::size_t k_pieces = 4;
  std::array<std::uint64_t, k_pieces> partial{};
  const std::size_t step = page.size() / k_pieces;
  flowpool::task_group group(cpu);
  for (std::size_t p = 0; p < k_pieces; ++p) {
    const std::span<const std::uint32_t> piece =
        p + 1 == k_pieces ? page.subspan(p * step) : page.subspan(p * step, step);
    group.run([&partial, p, piece] { partial[p] = std::accumulate(piece.begin(), piece.end(), std::uint64_t{0}); });
  }
  group.wait();  // on a slot thread: blocks this slot only; rethrows a piece's exception
  return std::accumulate(partial.begin(), partial.end(), std::uint64_t{0});
}
//! [cpu_work]

}  // namespace

int main() {
  std::vector<std::uint64_t> sums(k_pages);
  std::vector<std::size_t> odd_counts(k_pages);

  //! [io_and_cpu]
  // The CPU pool: one worker per core (here 2). Its injection queue bounds the CPU jobs that
  // slots may have waiting; a slot that finds it full blocks in submit() (backpressure).
  flowpool::thread_pool cpu{{.threads = 2, .queue_capacity = 64, .name = "cpu"}};

  // The I/O pool: as many slots as the servers accept at once, whatever the core count.
  // Declared after cpu, so it is destroyed first: no handler outlives the pool it submits to.
  flowpool::server_pool<std::size_t> io(
      {.servers = 2, .slots_per_server = 2, .queue_capacity = 8, .name = "io"},
      [&](flowpool::slot_id, std::size_t& page) {
        const std::vector<std::uint32_t> values = fetch(page);  // blocking I/O: what slots are for

        sums[page] = page_sum(cpu, values);  // fan out on the workers, wait with a task_group

        std::future<std::size_t> odd = cpu.submit([&values] {  // one CPU job, one future
          return static_cast<std::size_t>(
              std::count_if(values.begin(), values.end(), [](std::uint32_t v) { return v % 2 == 1; }));
        });
        odd_counts[page] = odd.get();  // waits on the slot thread; `values` outlives the job
      });

  for (std::size_t page = 0; page < k_pages; ++page) {
    if (!io.submit(page)) {  // blocks while 8 pages wait
      return 1;              // only after a shutdown
    }
  }
  io.join();       // every page handled, so every CPU job it waited for is done and visible here
  io.shutdown();   // stop the server_pool first: its handlers use cpu ...
  cpu.shutdown();  // ... then the thread_pool (the destructors would do the same, in that order)
  //! [io_and_cpu]

  bool ok = true;
  for (std::size_t page = 0; page < k_pages; ++page) {
    const std::vector<std::uint32_t> values = fetch(page);
    const std::uint64_t sum = std::accumulate(values.begin(), values.end(), std::uint64_t{0});
    const auto odd = static_cast<std::size_t>(
        std::count_if(values.begin(), values.end(), [](std::uint32_t v) { return v % 2 == 1; }));
    ok = ok && sums[page] == sum && odd_counts[page] == odd;
  }
  std::printf("%zu pages fetched on 4 slots and summed on 2 workers: %s\n", k_pages, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
