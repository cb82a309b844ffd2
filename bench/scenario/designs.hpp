// The designs the scenario compares. Each is one driver function in its own file
// (design_<name>.cpp) that runs the whole stream of `config` on S*K threads and returns what it
// measured; adding a design is one such file plus one line in designs.cpp.
#pragma once

#include "results.hpp"
#include "stream.hpp"

#include <span>
#include <string_view>

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

/// @return every design, batch-then-wait first.
std::span<const design> all_designs() noexcept;

}  // namespace flowpool_bench
