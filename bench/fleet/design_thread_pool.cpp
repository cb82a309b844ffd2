// thread_pool on the fleet, for contrast: S*K workers and one post()ed task per request; worker w
// uses connection w, to server w / K (thread_pool::this_worker_index() is fixed per worker). A
// failed attempt is post()ed again while attempts remain; from a worker that goes to its own
// deque, so the same worker usually retries it on the same server at once.
#include "fleet.hpp"

#include <flowpool/thread_pool.hpp>

#include <memory>
#include <utility>

namespace flowpool_fleet {
namespace {

struct pool_run {
  run_context& context;
  std::vector<std::unique_ptr<slot_connection>>& connections;
  flowpool::thread_pool& pool;
  std::size_t k;

  void post(fleet_request r) {
    pool.post([this, r]() mutable {
      const std::size_t slot = flowpool::thread_pool::this_worker_index().value_or(0);
      attempt_event e{r.id,
                      static_cast<std::uint32_t>(slot / k),
                      static_cast<std::uint32_t>(slot),
                      ++r.attempts,
                      0,
                      bench_clock::now(),
                      {},
                      r.enqueued};
      e.status = connections[slot]->call(r, context.run());
      e.end = bench_clock::now();
      context.log_attempt(e);
      if (e.status != 200 && r.attempts < context.config().baseline_max_attempts) {
        post(r);
        return;
      }
      if (std::optional<fleet_request> next = context.finish(r.id, e.status == 200)) {
        post(*next);
      }
    });
  }
};

}  // namespace

fleet_result run_fleet_thread_pool(const fleet_config& config, local_fleet& fleet, std::uint32_t run) {
  fleet_result result;
  result.design = "thread_pool";
  result.config = config;
  result.run = run;
  run_context context(config, run);
  const std::size_t k = config.scenario.slots_per_server;
  std::vector<std::unique_ptr<slot_connection>> connections;
  for (std::size_t s = 0; s < config.scenario.servers; ++s) {
    for (std::size_t i = 0; i < k; ++i) {
      connections.push_back(std::make_unique<slot_connection>(fleet[s].port(), config));
    }
  }
  flowpool::thread_pool pool{flowpool::pool_options{.threads = config.scenario.slots(), .name = "fleet"}};
  pool_run driver{context, connections, pool, k};
  const std::vector<fleet_request> burst = context.initial_burst();
  result.t0 = bench_clock::now();
  for (fleet_request r : burst) {
    r.enqueued = bench_clock::now();
    driver.post(r);
  }
  run_fault_plan(context, fleet, result, nullptr);
  pool.wait_idle();
  result.makespan = bench_clock::now() - result.t0;
  context.collect(result);
  return result;
}

}  // namespace flowpool_fleet
