// The comparison: runs every selected design over the same scenario, picks each design's median
// run, evaluates issue 3's targets, and writes the table, JSON, CSV and plots.
#pragma once

#include "designs.hpp"
#include "results.hpp"
#include "stream.hpp"

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

namespace flowpool_bench {

/// All runs of one design in one scenario.
struct design_runs {
  const design* which = nullptr;
  std::vector<design_result> runs;
  std::vector<design_metrics> metrics;  ///< one per run
  std::size_t median = 0;               ///< index of the run with the median throughput
};

/// One scenario and every design's runs of it.
struct scenario_outcome {
  scenario_config config;
  analytic_expectation expected{};
  double overshoot_us = 0;  ///< mean handler time minus mean drawn service time, over every run
  std::vector<design_runs> designs;

  /// @return the design's runs, or nullptr if it was not selected.
  [[nodiscard]] const design_runs* find(std::string_view name) const noexcept;
};

/// One target of issue 3, evaluated.
struct target_result {
  std::string name;
  std::string measured;  ///< the figure, formatted
  bool pass = false;
};

/// Runs `repeat` rounds; each round runs every design once, in order, so noise spreads evenly.
scenario_outcome run_scenario(const scenario_config& config, const std::vector<const design*>& designs,
                              std::size_t repeat, std::ostream& progress);

/// Prints the scenario's header and table.
void print_table(const scenario_outcome& outcome, std::ostream& out);

/// @return the targets that apply to `outcome` (uniform: utilisation, analytic, speed-up;
/// heterogeneous: shares and utilisation).
std::vector<target_result> evaluate_targets(const scenario_outcome& outcome);

/// Writes every run of every scenario, and the targets, as JSON.
void write_json(const std::string& path, const std::vector<scenario_outcome>& outcomes,
                const std::vector<target_result>& targets);

/// Writes the plot data of `outcome` (its median runs) into `dir` and runs the gnuplot scripts
/// found in `scripts_dir`. @return "" on success, else what failed.
std::string write_plots(const std::string& dir, const std::string& scripts_dir, const scenario_outcome& outcome);

}  // namespace flowpool_bench
