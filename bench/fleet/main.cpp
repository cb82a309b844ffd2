// bench_fleet: the scenario on real servers (issue 11). Starts S HTTP server processes on
// loopback (fleet_server), then runs the seeded request stream of bench/scenario through
// batch-then-wait, server_pool and thread_pool: first healthy, then with a fault on one server
// (by default: SIGKILL at 20 % of the budget, restart on the same port at 60 %). Prints a table per
// scenario, checks conservation against the servers' logs, and prints PASS/FAIL per target.
#include "fleet.hpp"
#include "report.hpp"

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#ifndef FLOWPOOL_FLEET_SCRIPTS
#define FLOWPOOL_FLEET_SCRIPTS "bench/fleet"
#endif

namespace {

using namespace flowpool_fleet;

constexpr const char* k_usage = R"(usage: bench_fleet [options]
Runs the scenario's request stream on a fleet of real HTTP server processes on 127.0.0.1, through
batch_then_wait, server_pool and thread_pool: a healthy run, then a fault run.
  --servers S          server processes (default 5)
  --slots K            slots per server; each server answers 503 beyond K (default 2)
  --burst N            initial burst (default 100)
  --budget N           requests per run, follow-ups included (default 4000)
  --min-ms X --max-ms Y  uniform service range (default 1 3)
  --seed N             stream seed (default 42)
  --repeat N           runs per design and scenario, interleaved; the median is shown (default 5)
  --fault KIND         kill | fail500 | hang | none: the fault run's fault (default kill)
  --fault-server I     the server it hits (default 2)
  --eject-after N      server_pool: consecutive failures that eject (default 3)
  --eject-for MS       server_pool: first ejection (default 100)
  --max-eject-for MS   server_pool: longest ejection (default 2 x eject_for; 0: 32 x eject_for)
  --read-timeout MS    client read timeout (default 500)
  --plot DIR           write DIR/fleet_gantt.png (gnuplot) from the fault run; CSV in DIR/data/
  --strict             exit with status 2 if a target is missed
  --verbose            per run: attempts by server and status, every failed attempt (stderr)
)";

struct options {
  fleet_config config;
  std::size_t repeat = 5;
  fault_kind fault = fault_kind::kill;
  std::string plot;
  bool strict = false;
  bool verbose = false;
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

options parse(int argc, char** argv) {
  options o;
  o.config.scenario.budget = 4000;
  bool max_eject_for_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << k_usage;
      std::exit(0);
    }
    if (flag == "--strict") {
      o.strict = true;
      continue;
    }
    if (flag == "--verbose") {
      o.verbose = true;
      continue;
    }
    if (i + 1 >= argc) {
      throw std::invalid_argument("unknown option or missing value: " + flag);
    }
    const std::string value = argv[++i];
    if (flag == "--servers") {
      o.config.scenario.servers = to_size(flag, value);
    } else if (flag == "--slots") {
      o.config.scenario.slots_per_server = to_size(flag, value);
    } else if (flag == "--burst") {
      o.config.scenario.burst = to_size(flag, value);
    } else if (flag == "--budget") {
      o.config.scenario.budget = to_size(flag, value);
    } else if (flag == "--min-ms") {
      o.config.scenario.min_ms = std::stod(value);
    } else if (flag == "--max-ms") {
      o.config.scenario.max_ms = std::stod(value);
    } else if (flag == "--seed") {
      o.config.scenario.seed = to_size(flag, value);
    } else if (flag == "--repeat") {
      o.repeat = to_size(flag, value);
    } else if (flag == "--fault") {
      if (value == "kill") {
        o.fault = fault_kind::kill;
      } else if (value == "fail500") {
        o.fault = fault_kind::fail500;
      } else if (value == "hang") {
        o.fault = fault_kind::hang;
      } else if (value == "none") {
        o.fault = fault_kind::none;
      } else {
        throw std::invalid_argument("--fault: kill, fail500, hang or none (got '" + value + "')");
      }
    } else if (flag == "--fault-server") {
      o.config.fault_server = to_size(flag, value);
    } else if (flag == "--eject-after") {
      o.config.eject_after = to_size(flag, value);
    } else if (flag == "--eject-for") {
      o.config.eject_for = std::chrono::milliseconds(to_size(flag, value));
    } else if (flag == "--max-eject-for") {
      o.config.max_eject_for = std::chrono::milliseconds(to_size(flag, value));
      max_eject_for_given = true;
    } else if (flag == "--read-timeout") {
      o.config.read_timeout = std::chrono::milliseconds(to_size(flag, value));
    } else if (flag == "--plot") {
      o.plot = value;
    } else {
      throw std::invalid_argument("unknown option: " + flag);
    }
  }
  o.config.scenario.validate();
  if (!max_eject_for_given) {
    o.config.max_eject_for = 2 * o.config.eject_for;  // one doubling, as the defaults (100 ms, 200 ms)
  } else if (o.config.max_eject_for.count() > 0 && o.config.max_eject_for < o.config.eject_for) {
    throw std::invalid_argument("--max-eject-for: must be 0 or at least --eject-for");
  }
  if (o.config.scenario.budget == 0 || o.repeat == 0) {
    throw std::invalid_argument("--budget and --repeat must be at least 1");
  }
  if (o.config.fault_server >= o.config.scenario.servers) {
    throw std::invalid_argument("--fault-server: must name one of the servers");
  }
  return o;
}

using design_fn = fleet_result (*)(const fleet_config&, local_fleet&, std::uint32_t);

struct named_design {
  const char* name;
  design_fn run;
};

constexpr named_design k_designs[] = {{"batch_then_wait", &run_fleet_batch_then_wait},
                                      {"server_pool", &run_fleet_server_pool},
                                      {"thread_pool", &run_fleet_thread_pool}};

fleet_outcome run_scenario(const std::string& title, const fleet_config& config, std::size_t repeat, local_fleet& fleet,
                           std::uint32_t& run, bool verbose) {
  fleet_outcome outcome;
  outcome.title = title;
  outcome.config = config;
  for (const named_design& d : k_designs) {
    outcome.designs.push_back({d.name, {}, {}, 0});
  }
  for (std::size_t round = 0; round < repeat; ++round) {
    for (std::size_t i = 0; i < std::size(k_designs); ++i) {
      std::cerr << "  " << title << ": " << k_designs[i].name << " run " << (round + 1) << "/" << repeat << "...\n";
      ++run;
      fleet_result r = k_designs[i].run(config, fleet, run);
      const conservation c = check_conservation(r, fleet.logs(run));
      if (verbose) {
        std::map<std::pair<int, int>, int> counts;
        for (const attempt_event& e : r.attempts) {
          ++counts[{static_cast<int>(e.server), e.status}];
        }
        for (const attempt_event& e : r.attempts) {
          if (e.status != 200 && e.status != 503) {
            std::cerr << "    failed attempt id " << e.id << " server " << e.server << " status " << e.status
                      << " after " << std::chrono::duration<double, std::milli>(e.end - e.start).count() << " ms at "
                      << std::chrono::duration<double, std::milli>(e.start - r.t0).count() << " ms\n";
          }
        }
        for (const auto& [key, n] : counts) {
          std::cerr << "    server " << key.first << " status " << key.second << ": " << n << "\n";
        }
        const auto logs = fleet.logs(run);
        for (std::size_t s = 0; s < logs.size(); ++s) {
          std::map<int, int> st;
          for (const log_line& l : logs[s]) {
            ++st[l.status];
          }
          for (const auto& [k, n] : st) {
            std::cerr << "    log server " << s << " status " << k << ": " << n << "\n";
          }
        }
      }
      outcome.designs[i].metrics.push_back(compute_metrics(r, c));
      outcome.designs[i].runs.push_back(std::move(r));
    }
  }
  for (fleet_design_runs& d : outcome.designs) {
    std::vector<std::size_t> order(d.runs.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
      order[i] = i;
    }
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return d.metrics[a].throughput < d.metrics[b].throughput; });
    d.median = order[order.size() / 2];
  }
  return outcome;
}

int run(const options& o) {
  std::signal(SIGPIPE, SIG_IGN);  // a write to a killed server's connection must not kill the driver
  local_fleet fleet(default_server_program(), o.config.scenario.servers, o.config.scenario.slots_per_server);
  std::uint32_t run_tag = 0;
  std::vector<fleet_outcome> outcomes;
  std::cout << "running the fleet comparison (real server processes)...\n" << std::flush;
  outcomes.push_back(run_scenario("healthy", o.config, o.repeat, fleet, run_tag, o.verbose));
  print_table(outcomes.back(), std::cout);
  if (o.fault != fault_kind::none) {
    fleet_config faulty = o.config;
    faulty.fault = o.fault;
    outcomes.push_back(run_scenario(
        std::string("fault (") + to_string(o.fault) + " server " + std::to_string(faulty.fault_server) + ")", faulty,
        o.repeat, fleet, run_tag, o.verbose));
    print_table(outcomes.back(), std::cout);
  }
  std::vector<fleet_target> targets;
  for (const fleet_outcome& outcome : outcomes) {
    for (fleet_target& t : evaluate_targets(outcome)) {
      targets.push_back(std::move(t));
    }
  }
  std::size_t passed = 0;
  std::cout << "\ntargets (issue 11), measured side by side in this run:\n";
  for (const fleet_target& t : targets) {
    std::cout << "  " << (t.pass ? "PASS" : "FAIL") << "  " << t.name << ": " << t.measured << "\n";
    passed += t.pass ? 1 : 0;
  }
  std::cout << "  " << passed << " of " << targets.size() << " targets met\n";
  if (!o.plot.empty() && outcomes.size() > 1) {
    const std::string error = write_fault_plot(o.plot, FLOWPOOL_FLEET_SCRIPTS, outcomes.back());
    if (!error.empty()) {
      std::cerr << "bench_fleet: --plot: " << error << "\n";
      return 1;
    }
    std::cout << "wrote " << o.plot << "/fleet_gantt.png (CSV data in " << o.plot << "/data/)\n";
  }
  bool conserved = true;
  for (const fleet_outcome& outcome : outcomes) {
    for (const fleet_design_runs& d : outcome.designs) {
      for (std::size_t i = 0; i < d.runs.size(); ++i) {
        conserved = conserved && d.metrics[i].check.ok() && d.runs[i].error.empty();
      }
    }
  }
  if (!conserved) {
    return 1;
  }
  return o.strict && passed != targets.size() ? 2 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "bench_fleet: " << e.what() << "\n";
    return 1;
  }
}
