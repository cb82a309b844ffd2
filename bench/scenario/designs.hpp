// The designs the scenario compares. Each is one driver function in its own file
// (design_<name>.cpp) that runs the whole stream of `config` on S*K threads and returns what it
// measured; adding a design is one such file plus one line in designs.cpp.
#pragma once

#include "results.hpp"
#include "stream.hpp"

#include <span>
#include <string_view>
#include <vector>

namespace flowpool_bench {

/// A design under comparison.
struct design {
  std::string_view name;                                ///< short name, used in tables, JSON and --designs
  std::string_view server_identity;                     ///< how a thread knows which server it serves for
  design_result (*run)(const scenario_config& config);  ///< one full run of the stream
};

design_result run_batch_then_wait(const scenario_config& config);
design_result run_server_pool(const scenario_config& config);
design_result run_onetbb(const scenario_config& config);
design_result run_thread_pool(const scenario_config& config);

/// Drives a queue-based design (one with submit/join/shutdown, like batch_then_wait and
/// flowpool::server_pool): submits the initial burst, times until join() returns, then shuts the
/// pool down and checks the records outside the timed region.
template <class Pool>
void drive_queue_design(Pool& pool, request_stream& stream, recorder& out, design_result& result) {
  const std::vector<request> burst = stream.initial_burst();
  result.t0 = bench_clock::now();
  for (request r : burst) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(r);
  }
  pool.join();
  result.makespan = bench_clock::now() - result.t0;
  pool.shutdown();
  result.error = out.check();
  result.records = out.take();
}

/// @return every design, batch-then-wait first.
std::span<const design> all_designs() noexcept;

}  // namespace flowpool_bench
