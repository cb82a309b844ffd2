// Faulty fleet, design 2: flowpool::server_pool with max_attempts = 3 and eject_after = 5. A failed
// attempt goes back to the front of the queue, avoiding the server that failed it; the failing
// server is ejected, then probed. A request that fails for good reaches on_failure, which records
// it and issues its follow-up.
#include "faulty.hpp"

#include <flowpool/server_pool.hpp>

#include <atomic>
#include <utility>

namespace flowpool_bench {

faulty_result run_faulty_server_pool(const scenario_config& config, const fault_plan& plan) {
  faulty_result result;
  result.design = "server_pool";
  result.config = config;
  result.plan = plan;
  request_stream stream{config};
  fault_run run{config, plan};
  std::atomic<std::uint64_t> on_failure_calls{0};
  flowpool::server_pool<request>* self = nullptr;
  flowpool::server_pool_callbacks<request> callbacks;
  callbacks.on_failure = [&](const flowpool::request_failure& failure, request& r) {
    on_failure_calls.fetch_add(1, std::memory_order_relaxed);  // relaxed: a tally read after join
    fail_for_good(r, static_cast<std::uint32_t>(failure.attempts), stream, run,
                  [&](const request& next) { (void)self->submit(next); });  // a slot's thread: never blocks
  };
  flowpool::server_pool<request> pool{
      flowpool::server_pool_options{.servers = config.servers,
                                    .slots_per_server = config.slots_per_server,
                                    .name = "faulty",
                                    .max_attempts = plan.max_attempts,
                                    .eject_after = plan.eject_after,
                                    .eject_for = plan.eject_for,
                                    .max_eject_for = plan.max_eject_for,
                                    .retry_budget_ratio = plan.retry_budget_ratio,
                                    .retry_budget_min_per_second = plan.retry_budget_min_per_second,
                                    .retry_budget_window = plan.retry_budget_window},
      [&](flowpool::slot_context<request>& ctx, request& r) {
        serve_faulty(r, ctx.slot().server, ctx.slot().slot, static_cast<std::uint32_t>(ctx.attempt()), ctx.is_probe(),
                     stream, run, [&](const request& next) { (void)ctx.submit(next); });
      },
      std::move(callbacks)};
  self = &pool;
  const std::vector<request> burst = stream.initial_burst();
  for (const request& r : burst) {
    run.issued(r);
  }
  result.t0 = bench_clock::now();
  for (request r : burst) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(r);
  }
  pool.join();
  result.makespan = bench_clock::now() - result.t0;
  const flowpool::server_pool_stats stats = pool.stats();
  pool.shutdown();
  result.pool.present = true;
  result.pool.accepted = stats.accepted;
  result.pool.succeeded = stats.succeeded;
  result.pool.final_failures = stats.final_failures;
  result.pool.expired = stats.expired;
  result.pool.returned = stats.returned;
  result.pool.retried = stats.total_retried();
  result.pool.budget_refusals = stats.retry_budget_refusals;
  result.pool.failing_ejections =
      plan.failing_server < stats.servers.size() ? stats.servers[plan.failing_server].ejections : 0;
  result.pool.on_failure_calls = on_failure_calls.load(std::memory_order_relaxed);  // relaxed: after join
  result.attempts = run.attempts();
  result.ends = run.ends();
  result.window_open = run.opened_at();
  result.window_close = run.closed_at();
  if (run.attempts_dropped() != 0 || run.stray() != 0) {
    result.error = "attempt log overflow or stray ids";
  }
  if (stats.accepted != stats.succeeded + stats.final_failures + stats.expired + stats.returned) {
    result.error += (result.error.empty() ? "" : "; ") + std::string("server_pool stats do not conserve requests");
  }
  return result;
}

}  // namespace flowpool_bench
