// Hands plain (non-atomic) data through every flowpool hand-off, in a program built with
// -fsanitize=thread against the normal, uninstrumented libflowpool.a. Each hand-off is ordered
// by the library, so ThreadSanitizer must report nothing; the test runs it with
// TSAN_OPTIONS=halt_on_error=1:exitcode=66, so any report fails it. Exit code 0 only when every
// result is also right.
#include <flowpool/flowpool.hpp>

#include <cstddef>
#include <cstdio>
#include <future>
#include <numeric>
#include <vector>

namespace {

constexpr int k_rounds = 50;
constexpr std::size_t k_items = 256;

bool check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "tsan_consumer: wrong result: %s\n", what);
  }
  return ok;
}

// submit(): the caller's writes are read by the task; the task's writes are read after get().
bool submit_round(flowpool::thread_pool& pool) {
  std::vector<long> data(k_items);
  for (std::size_t i = 0; i < k_items; ++i) {
    data[i] = static_cast<long>(i);
  }
  long result = 0;
  std::future<void> done = pool.submit([&] {
    result = std::accumulate(data.begin(), data.end(), 0L);
    data[0] = -1;
  });
  done.get();
  return check(result == static_cast<long>(k_items * (k_items - 1) / 2) && data[0] == -1, "submit");
}

// post() + wait_idle(): each task writes its own cell; the caller reads them all afterwards.
bool post_round(flowpool::thread_pool& pool) {
  std::vector<long> input(k_items);
  std::vector<long> output(k_items);
  for (std::size_t i = 0; i < k_items; ++i) {
    input[i] = static_cast<long>(i) * 3;
  }
  for (std::size_t i = 0; i < k_items; ++i) {
    pool.post([&input, &output, i] { output[i] = input[i] + 1; });
  }
  pool.wait_idle();
  bool ok = true;
  for (std::size_t i = 0; i < k_items; ++i) {
    ok = ok && output[i] == static_cast<long>(i) * 3 + 1;
    input[i] = 0;  // written after the tasks read it: ordered by wait_idle()
  }
  return check(ok, "post + wait_idle");
}

// task_group: nested groups from inside tasks (the worker-deque path and stealing), then wait().
long tree_sum(flowpool::thread_pool& pool, const std::vector<long>& v, std::size_t lo, std::size_t hi) {
  if (hi - lo <= 8) {
    return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(lo), v.begin() + static_cast<std::ptrdiff_t>(hi),
                           0L);
  }
  const std::size_t mid = lo + (hi - lo) / 2;
  long left = 0;  // plain: written by a task, read after wait()
  flowpool::task_group group(pool);
  group.run([&] { left = tree_sum(pool, v, lo, mid); });
  const long right = tree_sum(pool, v, mid, hi);
  group.wait();
  return left + right;
}

bool group_round(flowpool::thread_pool& pool) {
  std::vector<long> v(k_items);
  std::iota(v.begin(), v.end(), 1L);
  long total = 0;
  flowpool::task_group outer(pool);
  outer.run([&] { total = tree_sum(pool, v, 0, v.size()); });
  outer.wait();
  return check(total == static_cast<long>(k_items * (k_items + 1) / 2), "task_group");
}

// parallel_for and parallel_reduce over plain vectors.
bool algorithms_round(flowpool::thread_pool& pool) {
  std::vector<long> v(k_items * 4);
  flowpool::parallel_for(pool, std::size_t{0}, v.size(), [&](std::size_t i) { v[i] = static_cast<long>(i); });
  const long sum = flowpool::parallel_reduce(
      pool, std::size_t{0}, v.size(), 0L, [&](std::size_t i) { return v[i]; }, [](long a, long b) { return a + b; });
  const std::size_t n = v.size();
  return check(sum == static_cast<long>(n * (n - 1) / 2), "parallel_for + parallel_reduce");
}

// server_pool: requests carry a pointer to plain data; join() orders the handlers' writes.
bool server_round() {
  struct request {
    std::vector<long>* cells;
    std::size_t index;
  };
  std::vector<long> cells(k_items);
  flowpool::server_pool<request> servers({.servers = 2, .slots_per_server = 2, .queue_capacity = 16},
                                         [](flowpool::slot_id, request& r) { (*r.cells)[r.index] += 1; });
  for (std::size_t i = 0; i < k_items; ++i) {
    cells[i] = static_cast<long>(i);  // before submit: read by the handler
    if (!servers.submit(request{&cells, i})) {
      return check(false, "server_pool submit");
    }
  }
  servers.join();
  bool ok = true;
  for (std::size_t i = 0; i < k_items; ++i) {
    ok = ok && cells[i] == static_cast<long>(i) + 1;
  }
  return check(ok, "server_pool");
}

}  // namespace

int main() {
  flowpool::thread_pool pool{{.threads = 4, .queue_capacity = 64}};
  bool ok = true;
  for (int round = 0; round < k_rounds && ok; ++round) {
    ok = submit_round(pool) && post_round(pool) && group_round(pool) && algorithms_round(pool);
  }
  ok = ok && server_round();
  if (!ok) {
    return 1;
  }
  std::printf("flowpool tsan consumer ok\n");
  return 0;
}
