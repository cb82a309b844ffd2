// Faulty fleet, design 1: batch-then-wait with its natural retry. A failed attempt is caught in
// the handler and the request is resubmitted to the back of the shared queue, so a later batch
// (of whichever server asks first, the failing one included) takes it; after max_attempts failed
// attempts it fails for good. Nothing avoids or ejects the failing server.
#include "batch_then_wait.hpp"
#include "faulty.hpp"

#include <cstdint>
#include <utility>

namespace flowpool_bench {
namespace {

struct faulty_request {
  request r;
  std::uint32_t attempt = 1;  // the attempt it waits for, 1-based
};

}  // namespace

faulty_result run_faulty_batch_then_wait(const scenario_config& config, const fault_plan& plan) {
  faulty_result result;
  result.design = "batch_then_wait";
  result.config = config;
  result.plan = plan;
  request_stream stream{config};
  fault_run run{config, plan};
  std::atomic<std::uint64_t> final_failures{0};
  batch_then_wait<faulty_request>* self = nullptr;
  batch_then_wait<faulty_request> pool{
      batch_then_wait_options{.servers = config.servers, .slots_per_server = config.slots_per_server},
      [&](batch_slot where, faulty_request& fr) {
        auto submit = [&](const request& next) { (void)self->submit(faulty_request{next, 1}); };
        try {
          serve_faulty(fr.r, where.server, where.slot, fr.attempt, false, stream, run, submit);
        } catch (const injected_timeout&) {
          if (fr.attempt < plan.max_attempts) {
            ++fr.attempt;
            (void)self->submit(fr);  // from a handler: never blocks (force_put), back of the queue
          } else {
            final_failures.fetch_add(1, std::memory_order_relaxed);  // relaxed: a tally read after join
            fail_for_good(fr.r, fr.attempt, stream, run, submit);
          }
        }
      }};
  self = &pool;
  const std::vector<request> burst = stream.initial_burst();
  for (const request& r : burst) {
    run.issued(r);
  }
  result.t0 = bench_clock::now();
  for (request r : burst) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(faulty_request{r, 1});
  }
  pool.join();
  result.makespan = bench_clock::now() - result.t0;
  pool.shutdown();
  result.pool.final_failures = final_failures.load(std::memory_order_relaxed);  // relaxed: after join
  result.pool.on_failure_calls = result.pool.final_failures;
  result.attempts = run.attempts();
  result.ends = run.ends();
  result.window_open = run.opened_at();
  result.window_close = run.closed_at();
  if (run.attempts_dropped() != 0 || run.stray() != 0) {
    result.error = "attempt log overflow or stray ids";
  }
  return result;
}

}  // namespace flowpool_bench
