// bench_scenario: the main job of issue 3. Runs the same request stream through every design
// (batch-then-wait, server_pool, oneTBB, ...) on S*K threads, prints a table and the targets,
// optionally writes JSON (--json), plots (--plot) or runs the soak mode (--soak).
#include "comparison.hpp"
#include "designs.hpp"
#include "faulty.hpp"
#include "soak.hpp"
#include "stream.hpp"

#include <chrono>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#ifndef FLOWPOOL_SCENARIO_SCRIPTS
#define FLOWPOOL_SCENARIO_SCRIPTS "bench/scenario"
#endif

namespace {

using namespace flowpool_bench;

constexpr const char* k_usage = R"(usage: bench_scenario [options]
Runs one request stream through every design on S*K threads and compares them (issue 3).
Without --dist it runs two scenarios: uniform (the speed-up and utilisation targets) and
heterogeneous (the share target); then the faulty fleet (issue 10) on the same stream: server 2
fails every attempt after a 10 ms timeout and server 4 is 5x slower while the stream issues its
20 % to 60 % request, through batch-then-wait (resubmit) and server_pool (retry + ejection).
  --servers S          servers (default 5)
  --slots K            slots per server (default 2)
  --burst N            initial burst (default 100)
  --budget N           total requests, follow-ups included (default 1000)
  --dist MODEL         uniform | exponential | heterogeneous (default: uniform, then heterogeneous)
  --min-ms X --max-ms Y  uniform service range (default 1 3); exponential mean is (X+Y)/2
  --seed N             stream seed (default 42)
  --repeat N           runs per design, interleaved; the median is reported (default 3)
  --designs a,b        only these designs (default: all)
  --json FILE          write every run and the targets as JSON
  --plot DIR           render DIR/gantt.png and DIR/bars.png (gnuplot) from the uniform scenario's
                       median runs; their CSV data goes to DIR/data/
  --soak SECONDS       instead of the comparison: run the server_pool stream for SECONDS
  --no-faulty          skip the faulty-fleet table
  --faulty-only        only the faulty-fleet table
  --faulty-budget N    requests in the faulty run (default: --budget)
  --eject-for-ms N     server_pool's eject_for in the faulty run (default 20)
  --max-eject-for-ms N server_pool's max_eject_for in the faulty run (default 2 x eject_for; 0: 32 x)
  --strict             exit with status 2 if a target is missed
)";

struct options {
  bool help = false;
  scenario_config config;
  bool dist_given = false;
  std::size_t repeat = 3;
  std::string designs;
  std::string json;
  std::string plot;
  double soak = 0;
  bool strict = false;
  bool faulty = true;
  bool faulty_only = false;
  std::size_t faulty_budget = 0;  // 0 = config.budget
  fault_plan plan;
};

std::size_t to_size(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || text[0] == '-') {
    throw std::invalid_argument(flag + ": expected a non-negative integer, got '" + text + "'");
  }
  return static_cast<std::size_t>(value);
}

double to_double(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) {
    throw std::invalid_argument(flag + ": expected a number, got '" + text + "'");
  }
  return value;
}

options parse(int argc, char** argv) {
  options o;
  bool max_eject_for_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      o.help = true;
      return o;
    }
    if (flag == "--strict") {
      o.strict = true;
      continue;
    }
    if (flag == "--no-faulty") {
      o.faulty = false;
      continue;
    }
    if (flag == "--faulty-only") {
      o.faulty_only = true;
      continue;
    }
    if (i + 1 >= argc) {
      throw std::invalid_argument("unknown option or missing value: " + flag);
    }
    const std::string value = argv[++i];
    if (flag == "--servers") {
      o.config.servers = to_size(flag, value);
    } else if (flag == "--slots") {
      o.config.slots_per_server = to_size(flag, value);
    } else if (flag == "--burst") {
      o.config.burst = to_size(flag, value);
    } else if (flag == "--budget") {
      o.config.budget = to_size(flag, value);
    } else if (flag == "--dist") {
      o.config.model = parse_service_model(value);
      o.dist_given = true;
    } else if (flag == "--min-ms") {
      o.config.min_ms = to_double(flag, value);
    } else if (flag == "--max-ms") {
      o.config.max_ms = to_double(flag, value);
    } else if (flag == "--seed") {
      o.config.seed = to_size(flag, value);
    } else if (flag == "--repeat") {
      o.repeat = to_size(flag, value);
    } else if (flag == "--designs") {
      o.designs = value;
    } else if (flag == "--faulty-budget") {
      o.faulty_budget = to_size(flag, value);
    } else if (flag == "--eject-for-ms") {
      o.plan.eject_for = std::chrono::milliseconds(to_size(flag, value));
      if (o.plan.eject_for.count() == 0) {
        throw std::invalid_argument("--eject-for-ms: must be at least 1 (got 0)");
      }
    } else if (flag == "--max-eject-for-ms") {
      o.plan.max_eject_for = std::chrono::milliseconds(to_size(flag, value));
      max_eject_for_given = true;
    } else if (flag == "--json") {
      o.json = value;
    } else if (flag == "--plot") {
      o.plot = value;
    } else if (flag == "--soak") {
      o.soak = to_double(flag, value);
      if (!(o.soak > 0)) {
        throw std::invalid_argument("--soak: expected a positive number of seconds, got '" + value + "'");
      }
    } else {
      throw std::invalid_argument("unknown option: " + flag);
    }
  }
  o.config.validate();
  if (!max_eject_for_given) {
    o.plan.max_eject_for = 2 * o.plan.eject_for;  // one doubling, as the defaults (20 ms, 40 ms)
  } else if (o.plan.max_eject_for.count() > 0 && o.plan.max_eject_for < o.plan.eject_for) {
    throw std::invalid_argument("--max-eject-for-ms: must be 0 or at least --eject-for-ms");
  }
  if (o.repeat == 0) {
    throw std::invalid_argument("--repeat: must be at least 1 (got 0)");
  }
  if (o.config.budget == 0 && o.soak == 0) {
    throw std::invalid_argument("--budget: must be at least 1 for the comparison (got 0)");
  }
  return o;
}

std::vector<const design*> select_designs(const std::string& names) {
  std::vector<const design*> chosen;
  if (names.empty()) {
    for (const design& d : all_designs()) {
      chosen.push_back(&d);
    }
    return chosen;
  }
  std::stringstream list(names);
  std::string name;
  while (std::getline(list, name, ',')) {
    bool found = false;
    for (const design& d : all_designs()) {
      if (d.name == name) {
        chosen.push_back(&d);
        found = true;
      }
    }
    if (!found) {
      std::string known;
      for (const design& d : all_designs()) {
        known += ' ';
        known += d.name;
      }
      std::string message = "--designs: unknown design '";
      message.append(name).append("' (known:").append(known).append(")");
      throw std::invalid_argument(message);
    }
  }
  return chosen;
}

int run(const options& o) {
  if (o.help) {
    std::cout << k_usage;
    return 0;
  }
  if (o.soak > 0) {
    return run_soak(o.config, o.soak, std::cout);
  }
  const std::vector<const design*> designs = select_designs(o.designs);
  std::vector<scenario_config> scenarios;
  if (o.dist_given) {
    scenarios.push_back(o.config);
  } else {
    scenario_config uniform = o.config;
    uniform.model = service_model::uniform;
    scenario_config heterogeneous = o.config;
    heterogeneous.model = service_model::heterogeneous;
    scenarios = {uniform, heterogeneous};
  }
  std::vector<scenario_outcome> outcomes;
  std::vector<target_result> targets;
  if (o.faulty_only) {
    scenarios.clear();
  }
  for (const scenario_config& config : scenarios) {
    std::cout << "running " << to_string(config.model) << " scenario...\n" << std::flush;
    outcomes.push_back(run_scenario(config, designs, o.repeat, std::cerr));
    print_table(outcomes.back(), std::cout);
    for (target_result& t : evaluate_targets(outcomes.back())) {
      targets.push_back(std::move(t));
    }
    std::cout << std::endl;
  }
  std::optional<faulty_outcome> faulty;
  const bool both = o.designs.empty() || (o.designs.find("batch_then_wait") != std::string::npos &&
                                          o.designs.find("server_pool") != std::string::npos);
  if (o.faulty && both) {
    scenario_config config = o.config;
    if (!o.dist_given) {
      config.model = service_model::uniform;
    }
    if (o.faulty_budget != 0) {
      config.budget = o.faulty_budget;
    }
    std::cout << "running faulty-fleet scenario...\n" << std::flush;
    faulty = run_faulty(config, o.plan, o.repeat, std::cerr);
    print_faulty_table(*faulty, std::cout);
    for (target_result& t : evaluate_faulty_targets(*faulty)) {
      targets.push_back(std::move(t));
    }
    std::cout << std::endl;
  }
  std::size_t passed = 0;
  std::cout << "targets (issue 3; [faulty]: issue 10), measured side by side in this run:\n";
  for (const target_result& t : targets) {
    std::cout << "  " << (t.pass ? "PASS" : "FAIL") << "  " << t.name << ": " << t.measured << "\n";
    passed += t.pass ? 1 : 0;
  }
  std::cout << "  " << passed << " of " << targets.size() << " targets met\n";
  if (!o.json.empty()) {
    write_json(o.json, outcomes, targets);
    std::cout << "wrote " << o.json << "\n";
  }
  if (!o.plot.empty()) {
    const scenario_outcome* chosen = &outcomes.front();
    for (const scenario_outcome& outcome : outcomes) {
      if (outcome.config.model == service_model::uniform) {
        chosen = &outcome;
        break;
      }
    }
    const std::string error = write_plots(o.plot, FLOWPOOL_SCENARIO_SCRIPTS, *chosen);
    if (!error.empty()) {
      std::cerr << "bench_scenario: --plot: " << error << "\n";
      return 1;
    }
    std::cout << "wrote plots to " << o.plot << " (gantt.png, bars.png; CSV data in data/)\n";
  }
  if (faulty) {
    for (const auto* runs : {&faulty->btw_metrics, &faulty->pool_metrics}) {
      for (const faulty_metrics& m : *runs) {
        if (m.lost + m.repeated != 0) {
          return 1;  // a design lost or repeated requests under faults
        }
      }
    }
    for (const auto* runs : {&faulty->btw_runs, &faulty->pool_runs}) {
      for (const faulty_result& r : *runs) {
        if (!r.error.empty()) {
          return 1;
        }
      }
    }
  }
  for (const scenario_outcome& outcome : outcomes) {
    for (const design_runs& d : outcome.designs) {
      for (const design_result& r : d.runs) {
        if (!r.error.empty()) {
          return 1;  // a design lost or repeated requests: its figures mean nothing
        }
      }
    }
  }
  return o.strict && passed != targets.size() ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "bench_scenario: " << e.what() << "\n" << k_usage;
    return 1;
  }
}
