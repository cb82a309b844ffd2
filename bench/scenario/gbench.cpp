// The scenario as Google Benchmark benchmarks: scenario/<model>/<design>, one full run of the
// stream per iteration, wall-clock time, with issue 3's metrics as counters (averaged over the
// iterations). Correctness (every request served exactly once) is checked outside the timing.
#include "designs.hpp"
#include "results.hpp"
#include "stream.hpp"

#include <benchmark/benchmark.h>

#include <string>

namespace {

using namespace flowpool_bench;

void run_scenario(benchmark::State& state, const design* which, scenario_config config) {
  double makespan = 0;
  double throughput = 0;
  double utilisation = 0;
  double p50 = 0;
  double p99 = 0;
  double iterations = 0;
  for (auto _ : state) {
    design_result result = which->run(config);
    state.SetIterationTime(to_ms(result.makespan) / 1000.0);
    if (!result.error.empty()) {
      state.SkipWithError(result.error.c_str());
      break;
    }
    const design_metrics m = compute_metrics(result);
    makespan += m.makespan_ms;
    throughput += m.throughput;
    utilisation += m.utilisation;
    p50 += m.wait_p50_ms;
    p99 += m.wait_p99_ms;
    iterations += 1;
  }
  if (iterations > 0) {
    state.counters["makespan_ms"] = makespan / iterations;
    state.counters["requests_per_s"] = throughput / iterations;
    state.counters["utilisation"] = utilisation / iterations;
    state.counters["wait_p50_ms"] = p50 / iterations;
    state.counters["wait_p99_ms"] = p99 / iterations;
    state.counters["analytic_btw_utilisation"] = batch_then_wait_expectation(config).closed_form;
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (service_model model : {service_model::uniform, service_model::heterogeneous, service_model::exponential}) {
    scenario_config config;
    config.model = model;
    for (const design& d : all_designs()) {
      benchmark::RegisterBenchmark(("scenario/" + std::string(to_string(model)) + "/" + std::string(d.name)).c_str(),
                                   run_scenario, &d, config)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond)
          ->Iterations(3);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
