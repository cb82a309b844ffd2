// The fleet comparison's figures: per-run metrics, the table, the targets of issue 11 and the
// fault run's Gantt data.
#pragma once

#include "fleet.hpp"

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

namespace flowpool_fleet {

/// The figures of one run.
struct fleet_metrics {
  double makespan_ms = 0;
  double throughput = 0;       ///< succeeded requests / s
  double utilisation = 0;      ///< slot time spent in attempts / (S*K x makespan), 0..1
  double overhead_p50_us = 0;  ///< successful attempts: round trip minus drawn service time
  double overhead_p99_us = 0;
  double wait_p50_ms = 0;  ///< queue wait: enqueue to the first attempt's start
  double wait_p99_ms = 0;
  std::vector<double> share;            ///< fraction of the successes each server answered
  std::uint64_t attempts = 0;           ///< every attempt
  std::uint64_t retries = 0;            ///< attempts beyond each request's first
  std::uint64_t fault_attempts = 0;     ///< attempts on the fault server between fault and heal
  std::optional<double> back_after_ms;  ///< heal to the end of the fault server's first 200 after it
  conservation check;
};

/// @return the metrics of `r`, with its conservation check `c`.
fleet_metrics compute_metrics(const fleet_result& r, const conservation& c);

/// All runs of one design in one fleet scenario.
struct fleet_design_runs {
  std::string design;
  std::vector<fleet_result> runs;
  std::vector<fleet_metrics> metrics;
  std::size_t median = 0;  ///< the run with the median throughput
};

/// One fleet scenario (healthy or fault) and every design's runs.
struct fleet_outcome {
  std::string title;
  fleet_config config;
  std::vector<fleet_design_runs> designs;
  [[nodiscard]] const fleet_design_runs* find(const std::string& design) const noexcept;
};

/// One target, evaluated.
struct fleet_target {
  std::string name;
  std::string measured;
  bool pass = false;
};

/// Prints the outcome's table (median runs).
void print_table(const fleet_outcome& outcome, std::ostream& out);
/// @return issue 11's targets for a healthy or a fault outcome.
std::vector<fleet_target> evaluate_targets(const fleet_outcome& outcome);
/// Writes the fault run's Gantt data to DIR/data and runs the gnuplot script; @return "" or why not.
std::string write_fault_plot(const std::string& dir, const std::string& scripts_dir, const fleet_outcome& outcome);

}  // namespace flowpool_fleet
