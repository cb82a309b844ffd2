// Design 4: flowpool::thread_pool, the work-stealing pool, with S*K workers and one post()ed task
// per request; a follow-up is post()ed from inside the task that produced it (it goes to that
// worker's own deque and never blocks). The burst is posted from the main thread (injection
// queue); wait_idle() waits for the whole stream, follow-ups included.
// Server identity: thread_pool::this_worker_index() is the worker's index, 0 .. S*K-1, fixed for
// its lifetime; server = index / K, slot = index % K.
#include "designs.hpp"

#include <flowpool/thread_pool.hpp>

#include <cstddef>
#include <optional>

namespace flowpool_bench {
namespace {

struct pool_run {
  const scenario_config& config;
  request_stream& stream;
  recorder& out;
  flowpool::thread_pool& pool;

  void post(request r) {
    pool.post([this, r]() mutable {
      const std::size_t index = flowpool::thread_pool::this_worker_index().value_or(0);
      serve(r, index / config.slots_per_server, index % config.slots_per_server, 0, stream, out,
            [this](const request& next) { post(next); });
    });
  }
};

}  // namespace

design_result run_thread_pool(const scenario_config& config) {
  design_result result;
  result.design = "thread_pool";
  result.config = config;
  request_stream stream{config};
  recorder out{config.budget};
  flowpool::thread_pool pool{flowpool::pool_options{.threads = config.slots(), .name = "scenario"}};
  pool_run run{config, stream, out, pool};
  const std::vector<request> burst = stream.initial_burst();
  result.t0 = bench_clock::now();
  for (request r : burst) {
    r.enqueued = bench_clock::now();
    run.post(r);
  }
  pool.wait_idle();
  result.makespan = bench_clock::now() - result.t0;
  result.error = out.check();
  result.records = out.take();
  return result;
}

}  // namespace flowpool_bench
