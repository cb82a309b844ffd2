#include "comparison.hpp"
#include "text_format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>
#include <sstream>
#include <thread>

namespace flowpool_bench {
namespace {

std::string describe(const scenario_config& c) {
  std::string model;
  switch (c.model) {
    case service_model::uniform:
      model = "uniform " + fixed(c.min_ms, 1) + "-" + fixed(c.max_ms, 1) + " ms";
      break;
    case service_model::exponential:
      model = "exponential, mean " + fixed(0.5 * (c.min_ms + c.max_ms), 1) + " ms";
      break;
    case service_model::heterogeneous:
      model = "heterogeneous: uniform " + fixed(c.min_ms, 1) + "-" + fixed(c.max_ms, 1) + " ms x (server + 1)";
      break;
  }
  return model + ", " + std::to_string(c.servers) + " servers x " + std::to_string(c.slots_per_server) + " slots (" +
         std::to_string(c.slots()) + " threads), burst " + std::to_string(c.burst) + ", budget " +
         std::to_string(c.budget) + ", seed " + std::to_string(c.seed);
}

std::string json_escape(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
    }
    out += ch;
  }
  return out;
}

template <class T>
std::string json_array(const std::vector<T>& values, int decimals) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    out += (i == 0 ? "" : ", ") + fixed(static_cast<double>(values[i]), decimals);
  }
  return out + "]";
}

// The largest relative deviation |share / expected share - 1| over the servers.
double worst_share_deviation(const design_metrics& m, const std::vector<double>& expected) {
  double worst = 0.0;
  for (std::size_t s = 0; s < expected.size() && s < m.share.size(); ++s) {
    const double deviation = m.share[s] / expected[s] - 1.0;
    worst = std::abs(deviation) > std::abs(worst) ? deviation : worst;
  }
  return worst;
}

}  // namespace

const design_runs* scenario_outcome::find(std::string_view name) const noexcept {
  for (const design_runs& d : designs) {
    if (d.which->name == name) {
      return &d;
    }
  }
  return nullptr;
}

scenario_outcome run_scenario(const scenario_config& config, const std::vector<const design*>& designs,
                              std::size_t repeat, std::ostream& progress) {
  scenario_outcome outcome;
  outcome.config = config;
  outcome.expected = batch_then_wait_expectation(config);
  for (const design* d : designs) {
    design_runs runs;
    runs.which = d;
    outcome.designs.push_back(std::move(runs));
  }
  double handler_ms = 0;
  double drawn_ms = 0;
  std::size_t served = 0;
  for (std::size_t round = 0; round < repeat; ++round) {
    for (design_runs& d : outcome.designs) {
      progress << "  " << to_string(config.model) << " " << d.which->name << " run " << (round + 1) << "/" << repeat
               << "...\n"
               << std::flush;
      design_result result = d.which->run(config);
      if (!result.error.empty()) {
        progress << "  ERROR: " << d.which->name << ": " << result.error << "\n";
      }
      for (const request_record& r : result.records) {
        handler_ms += to_ms(r.end - r.start);
        drawn_ms += base_service_ms(config, r.id) * slowdown(config, r.server);
        ++served;
      }
      d.metrics.push_back(compute_metrics(result));
      d.runs.push_back(std::move(result));
    }
  }
  outcome.overshoot_us = served == 0 ? 0.0 : (handler_ms - drawn_ms) / static_cast<double>(served) * 1000.0;
  for (design_runs& d : outcome.designs) {
    std::vector<std::size_t> order(d.runs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return d.metrics[a].throughput < d.metrics[b].throughput; });
    d.median = order[order.size() / 2];
  }
  return outcome;
}

void print_table(const scenario_outcome& outcome, std::ostream& out) {
  const scenario_config& c = outcome.config;
  const std::size_t runs = outcome.designs.empty() ? 0 : outcome.designs.front().runs.size();
  out << "\nscenario: " << describe(c) << "\n";
  out << "  each design ran " << runs << "x, interleaved; the run with the median throughput is shown\n";
  const double mean_ms = 0.5 * (c.min_ms + c.max_ms);
  out << "  analytic batch-then-wait utilisation E[X]/E[max of " << c.slots_per_server
      << " draws]: " << fixed(100 * outcome.expected.closed_form, 2) << " % (closed form), "
      << fixed(100 * outcome.expected.monte_carlo, 2) << " % (Monte Carlo, 200k batches)\n";
  out << "  measured sleep overshoot: handler time exceeds the drawn service time by " << fixed(outcome.overshoot_us, 0)
      << " us on average (mean draw " << fixed(mean_ms, 1) << " ms"
      << (c.model == service_model::heterogeneous ? " x slowdown" : "") << ")\n\n";
  std::string header = pad("design", 16, false) + pad("makespan ms", 12) + pad("req/s", 9) + pad("util %", 8) +
                       pad("wait p50 ms", 12) + pad("wait p99 ms", 12) + pad("oversleep us", 13) +
                       "   share per server %";
  out << header << "\n" << std::string(header.size() + 4 * c.servers, '-') << "\n";
  for (const design_runs& d : outcome.designs) {
    const design_metrics& m = d.metrics[d.median];
    std::string line = pad(std::string(d.which->name), 16, false) + pad(fixed(m.makespan_ms, 1), 12) +
                       pad(fixed(m.throughput, 0), 9) + pad(fixed(100 * m.utilisation, 1), 8) +
                       pad(fixed(m.wait_p50_ms, 2), 12) + pad(fixed(m.wait_p99_ms, 2), 12) +
                       pad(fixed(m.overshoot_us, 0), 13) + "  ";
    for (double s : m.share) {
      line += ' ';
      line += pad(fixed(100 * s, 1), 5);
    }
    if (!d.runs[d.median].error.empty()) {
      line += "   ERROR: " + d.runs[d.median].error;
    }
    out << line << "\n";
  }
  if (c.model == service_model::heterogeneous) {
    auto row = [&](const std::string& label, const std::vector<double>& shares) {
      std::string line = pad(label, 84, false);
      for (double s : shares) {
        line += ' ';
        line += pad(fixed(100 * s, 1), 5);
      }
      out << line << "\n";
    };
    row("share of total speed (nominal: server i is (i+1)x slower)", speed_shares(c));
    if (const design_runs* pool = outcome.find("server_pool")) {
      row("share of total measured speed (1 / mean handler time), server_pool run",
          measured_speed_shares(pool->metrics[pool->median]));
    }
  }
  const design_runs* baseline = outcome.find("batch_then_wait");
  if (baseline != nullptr) {
    out << "\nthroughput relative to batch_then_wait:";
    for (const design_runs& d : outcome.designs) {
      out << "  " << d.which->name << " "
          << fixed(d.metrics[d.median].throughput / baseline->metrics[baseline->median].throughput, 3) << "x";
    }
    out << "\n";
  }
  out << "queue wait = enqueue to handler entry. oneTBB and thread_pool run a task's follow-up next on the same\n"
         "thread (LIFO), so their median wait is ~0 while the initial burst waits at the back (p99).\n";
  out << "server identity:\n";
  for (const design_runs& d : outcome.designs) {
    out << "  " << pad(std::string(d.which->name), 16, false) << d.which->server_identity << "\n";
  }
}

std::vector<target_result> evaluate_targets(const scenario_outcome& outcome) {
  std::vector<target_result> targets;
  const scenario_config& c = outcome.config;
  const std::string where = std::string(" [") + to_string(c.model) + "]";
  const design_runs* pool = outcome.find("server_pool");
  const design_runs* baseline = outcome.find("batch_then_wait");
  bool correct = true;
  for (const design_runs& d : outcome.designs) {
    for (const design_result& r : d.runs) {
      correct = correct && r.error.empty();
    }
  }
  targets.push_back({"every design served every request exactly once" + where, correct ? "yes" : "NO", correct});
  if (pool != nullptr) {
    const double u = pool->metrics[pool->median].utilisation;
    targets.push_back({"server_pool utilisation >= 98 %" + where, fixed(100 * u, 2) + " %", u >= 0.98});
  }
  if (baseline != nullptr && c.model != service_model::heterogeneous) {
    const double u = baseline->metrics[baseline->median].utilisation;
    const double points = 100 * (u - outcome.expected.closed_form);
    targets.push_back({"batch_then_wait within 2 points of its analytic " +
                           fixed(100 * outcome.expected.closed_form, 2) + " %" + where,
                       fixed(100 * u, 2) + " % (" + (points >= 0 ? "+" : "") + fixed(points, 2) + " points)",
                       std::abs(points) <= 2.0});
  }
  if (pool != nullptr && baseline != nullptr && c.model == service_model::uniform) {
    const double ratio = pool->metrics[pool->median].throughput / baseline->metrics[baseline->median].throughput;
    targets.push_back(
        {"server_pool throughput >= 1.14x batch_then_wait" + where, fixed(ratio, 3) + "x", ratio >= 1.14});
  }
  if (pool != nullptr && c.model == service_model::heterogeneous) {
    const design_metrics& m = pool->metrics[pool->median];
    const double worst = worst_share_deviation(m, speed_shares(c));
    const double worst_measured = worst_share_deviation(m, measured_speed_shares(m));
    targets.push_back({"server_pool: each server's share within +-10 % of its share of total speed" + where,
                       "worst " + std::string(worst >= 0 ? "+" : "") + fixed(100 * worst, 1) +
                           " % (against shares of the measured speed, overshoot included: " +
                           (worst_measured >= 0 ? "+" : "") + fixed(100 * worst_measured, 1) + " %)",
                       std::abs(worst) <= 0.10});
  }
  return targets;
}

void write_json(const std::string& path, const std::vector<scenario_outcome>& outcomes,
                const std::vector<target_result>& targets) {
  std::ofstream out(path);
  if (!out) {
    throw std::runtime_error("--json: cannot write " + path);
  }
  out << "{\n  \"hardware_concurrency\": " << std::thread::hardware_concurrency() << ",\n  \"scenarios\": [\n";
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    const scenario_outcome& o = outcomes[i];
    const scenario_config& c = o.config;
    out << "    {\n      \"config\": {\"servers\": " << c.servers << ", \"slots_per_server\": " << c.slots_per_server
        << ", \"burst\": " << c.burst << ", \"budget\": " << c.budget << ", \"model\": \"" << to_string(c.model)
        << "\", \"min_ms\": " << c.min_ms << ", \"max_ms\": " << c.max_ms << ", \"seed\": " << c.seed << "},\n";
    out << "      \"batch_then_wait_expected_utilisation\": {\"closed_form\": " << fixed(o.expected.closed_form, 6)
        << ", \"monte_carlo\": " << fixed(o.expected.monte_carlo, 6) << "},\n";
    out << "      \"sleep_overshoot_us\": " << fixed(o.overshoot_us, 1) << ",\n";
    out << "      \"speed_share\": " << json_array(speed_shares(c), 6) << ",\n      \"designs\": [\n";
    for (std::size_t d = 0; d < o.designs.size(); ++d) {
      const design_runs& runs = o.designs[d];
      out << "        {\"design\": \"" << runs.which->name << "\", \"server_identity\": \""
          << json_escape(std::string(runs.which->server_identity)) << "\", \"median_run\": " << runs.median
          << ", \"runs\": [\n";
      for (std::size_t r = 0; r < runs.runs.size(); ++r) {
        const design_metrics& m = runs.metrics[r];
        out << "          {\"makespan_ms\": " << fixed(m.makespan_ms, 3)
            << ", \"throughput_rps\": " << fixed(m.throughput, 1) << ", \"utilisation\": " << fixed(m.utilisation, 5)
            << ", \"wait_p50_ms\": " << fixed(m.wait_p50_ms, 4) << ", \"wait_p99_ms\": " << fixed(m.wait_p99_ms, 4)
            << ", \"overshoot_us\": " << fixed(m.overshoot_us, 1)
            << ", \"handled_per_server\": " << json_array(m.handled, 0)
            << ", \"share_per_server\": " << json_array(m.share, 5)
            << ", \"mean_handler_ms_per_server\": " << json_array(m.mean_handler_ms, 4) << ", \"error\": \""
            << json_escape(runs.runs[r].error) << "\"}" << (r + 1 < runs.runs.size() ? "," : "") << "\n";
      }
      out << "        ]}" << (d + 1 < o.designs.size() ? "," : "") << "\n";
    }
    out << "      ]\n    }" << (i + 1 < outcomes.size() ? "," : "") << "\n";
  }
  out << "  ],\n  \"targets\": [\n";
  for (std::size_t t = 0; t < targets.size(); ++t) {
    out << "    {\"target\": \"" << json_escape(targets[t].name) << "\", \"measured\": \""
        << json_escape(targets[t].measured) << "\", \"pass\": " << (targets[t].pass ? "true" : "false") << "}"
        << (t + 1 < targets.size() ? "," : "") << "\n";
  }
  out << "  ]\n}\n";
}

std::string write_plots(const std::string& dir, const std::string& scripts_dir, const scenario_outcome& outcome) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path data = fs::path(dir) / "data";
  fs::create_directories(data, ec);
  if (ec) {
    return "cannot create " + dir + ": " + ec.message();
  }
  const std::size_t k = outcome.config.slots_per_server;
  // Gantt data: one row per slot, one line per request: row, start, end (ms from t0), id, batch.
  for (const char* name : {"batch_then_wait", "server_pool"}) {
    const design_runs* d = outcome.find(name);
    if (d == nullptr) {
      continue;
    }
    const design_result& run = d->runs[d->median];
    std::ofstream csv(data / (std::string("gantt_") + name + ".csv"));
    csv << "# " << name << ": row (= server * K + slot), start_ms, end_ms, server, slot, id, batch\n";
    for (const request_record& r : run.records) {
      csv << (r.server * k + r.slot) << "," << fixed(to_ms(r.start - run.t0), 4) << ","
          << fixed(to_ms(r.end - run.t0), 4) << "," << r.server << "," << r.slot << "," << r.id << "," << r.batch
          << "\n";
    }
  }
  {
    std::ofstream csv(data / "bars.csv");
    csv << "# design, throughput_rps, utilisation_percent\n";
    for (const design_runs& d : outcome.designs) {
      const design_metrics& m = d.metrics[d.median];
      csv << d.which->name << "," << fixed(m.throughput, 1) << "," << fixed(100 * m.utilisation, 2) << "\n";
    }
  }
  const std::string subtitle = describe(outcome.config);
  auto quoted = [](const std::string& text) { return "'" + text + "'"; };
  const std::string vars = "dir=" + quoted(dir) + "; slots=" + std::to_string(outcome.config.slots()) +
                           "; k=" + std::to_string(k) + "; expected=" + fixed(100 * outcome.expected.closed_form, 2) +
                           "; subtitle=" + quoted(subtitle);
  for (const char* script : {"gantt.gp", "bars.gp"}) {
    const std::string command = "gnuplot -e \"" + vars + "\" '" + (fs::path(scripts_dir) / script).string() + "'";
    // NOLINTNEXTLINE(concurrency-mt-unsafe): called from main() once every design's threads have ended
    if (std::system(command.c_str()) != 0) {
      return "gnuplot failed: " + command;
    }
  }
  return {};
}

}  // namespace flowpool_bench
