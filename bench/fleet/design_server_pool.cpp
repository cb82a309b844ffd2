// server_pool on the fleet: S servers x K slots, and each slot's state is its own keep-alive
// connection to its server (built on the slot's thread by the state factory). A failed attempt
// throws, so the pool retries it at the front of its queue on another server, and eject_after
// failures in a row eject the server: its slots sleep, then one probes.
#include "fleet.hpp"

#include <flowpool/server_pool.hpp>

#include <utility>

namespace flowpool_fleet {

fleet_result run_fleet_server_pool(const fleet_config& config, local_fleet& fleet, std::uint32_t run) {
  fleet_result result;
  result.design = "server_pool";
  result.config = config;
  result.run = run;
  run_context context(config, run);
  const std::vector<int> ports = fleet.ports();
  const std::size_t k = config.scenario.slots_per_server;
  using pool_type = flowpool::server_pool<fleet_request, slot_connection>;
  pool_type* self = nullptr;  // for the failure callback's follow-up
  flowpool::server_pool_callbacks<fleet_request> callbacks;
  callbacks.on_failure = [&](const flowpool::request_failure&, fleet_request& r) {
    if (std::optional<fleet_request> next = context.finish(r.id, false)) {
      (void)self->submit(std::move(*next));  // on a slot thread: a follow-up, never blocks
    }
  };
  pool_type pool{flowpool::server_pool_options{.servers = config.scenario.servers,
                                               .slots_per_server = k,
                                               .name = "fleet",
                                               .max_attempts = config.max_attempts,
                                               .eject_after = config.eject_after,
                                               .eject_for = config.eject_for,
                                               .max_eject_for = config.max_eject_for},
                 [&](flowpool::slot_id id) { return slot_connection(ports[id.server], config); },
                 [&](pool_type::context_type& ctx, fleet_request& r) {
                   const flowpool::slot_id where = ctx.slot();
                   attempt_event e{r.id,
                                   static_cast<std::uint32_t>(where.server),
                                   static_cast<std::uint32_t>(where.server * k + where.slot),
                                   static_cast<std::uint32_t>(ctx.attempt()),
                                   0,
                                   bench_clock::now(),
                                   {},
                                   r.enqueued};
                   e.status = ctx.state().call(r, run);
                   e.end = bench_clock::now();
                   context.log_attempt(e);
                   if (e.status != 200) {
                     throw attempt_failed(e.status);
                   }
                   if (std::optional<fleet_request> next = context.finish(r.id, true)) {
                     (void)ctx.submit(std::move(*next));
                   }
                 },
                 std::move(callbacks)};
  self = &pool;
  const std::vector<fleet_request> burst = context.initial_burst();
  result.t0 = bench_clock::now();
  for (fleet_request r : burst) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(r);
  }
  // The fault server's state, for the chart: sampled every 5 ms at most (stats() takes the pool's
  // mutex and copies every histogram, a cost the other designs do not pay).
  const std::size_t watched = config.fault_server;
  auto sample = [&](fleet_result& out) {
    if (!out.samples.empty() && bench_clock::now() - out.samples.back().at < std::chrono::milliseconds(5)) {
      return;
    }
    const flowpool::server_pool_stats stats = pool.stats();
    if (watched < stats.servers.size()) {
      const flowpool::server_stats& s = stats.servers[watched];
      out.samples.push_back({bench_clock::now(), s.state, s.ejections, s.last_ejection});
    }
  };
  run_fault_plan(context, fleet, result, sample);
  // Keep sampling until the run ends, so the chart shows the fault server's return.
  if (config.fault != fault_kind::none) {
    for (int i = 0; i < 24000 && !pool.join_for(std::chrono::milliseconds(5)); ++i) {
      sample(result);
    }
  }
  // Bounded: a fleet whose servers all died would keep every request queued (server_pool waits
  // for a probe to succeed, it never drops one). The requests handed back count as never ended.
  if (!pool.join_for(std::chrono::seconds(120))) {
    result.error = "the stream did not finish within 120 s (every server down?)";
    (void)pool.shutdown_now();
  }
  result.makespan = bench_clock::now() - result.t0;
  if (watched < pool.stats().servers.size()) {
    result.ejections = pool.stats().servers[watched].ejections;
  }
  pool.shutdown();
  context.collect(result);
  return result;
}

}  // namespace flowpool_fleet
