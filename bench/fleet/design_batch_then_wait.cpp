// batch-then-wait on the fleet (bench/scenario/batch_then_wait.hpp): each server's K slot threads
// take K requests and wait for all K before the next batch; each slot keeps its own keep-alive
// connection to its server. Its natural retry: a failed attempt goes back into the queue (for
// some server's next batch) while attempts remain; then it is a reported final failure.
#include "batch_then_wait.hpp"
#include "fleet.hpp"

#include <memory>
#include <utility>

namespace flowpool_fleet {

fleet_result run_fleet_batch_then_wait(const fleet_config& config, local_fleet& fleet, std::uint32_t run) {
  fleet_result result;
  result.design = "batch_then_wait";
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
  using pool_type = flowpool_bench::batch_then_wait<fleet_request>;
  pool_type* self = nullptr;
  pool_type pool{{.servers = config.scenario.servers, .slots_per_server = k},
                 [&](flowpool_bench::batch_slot where, fleet_request& r) {
                   const std::size_t slot = where.server * k + where.slot;
                   attempt_event e{r.id,
                                   static_cast<std::uint32_t>(where.server),
                                   static_cast<std::uint32_t>(slot),
                                   ++r.attempts,
                                   0,
                                   bench_clock::now(),
                                   {},
                                   r.enqueued};
                   e.status = connections[slot]->call(r, run);
                   e.end = bench_clock::now();
                   context.log_attempt(e);
                   if (e.status != 200 && r.attempts < config.baseline_max_attempts) {
                     (void)self->submit(r);  // from a handler: never blocks
                     return;
                   }
                   if (std::optional<fleet_request> next = context.finish(r.id, e.status == 200)) {
                     (void)self->submit(std::move(*next));
                   }
                 }};
  self = &pool;
  const std::vector<fleet_request> burst = context.initial_burst();
  result.t0 = bench_clock::now();
  for (fleet_request r : burst) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(r);
  }
  run_fault_plan(context, fleet, result, nullptr);
  pool.join();
  result.makespan = bench_clock::now() - result.t0;
  pool.shutdown();
  context.collect(result);
  return result;
}

}  // namespace flowpool_fleet
