// The faulty-fleet mode: metrics, the table and the targets of issue 10 (see faulty.hpp).
#include "faulty.hpp"
#include "text_format.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <ostream>
#include <string>

namespace flowpool_bench {
namespace {

double overlap_ms(bench_clock::time_point a0, bench_clock::time_point a1, bench_clock::time_point b0,
                  bench_clock::time_point b1) {
  const bench_clock::time_point lo = std::max(a0, b0);
  const bench_clock::time_point hi = std::min(a1, b1);
  return hi > lo ? to_ms(hi - lo) : 0.0;
}

// The failing server's ejection bound, per run: non-probe attempts while failing against
// (eject_after + K - 1) per serving period, probes against ejection periods.
struct bound_check {
  std::uint64_t non_probes = 0;
  std::uint64_t probes = 0;
  std::uint64_t failed_probes = 0;
  std::uint64_t ejections = 0;
  std::uint64_t from_serving = 0;  // ejections - failed probes
  std::uint64_t allowed_non_probes = 0;
  bool pass = false;
};

bound_check check_bound(const faulty_result& r, const faulty_metrics& m) {
  bound_check b;
  b.non_probes = m.non_probes_in_window;
  b.probes = m.probes_in_window;
  for (const attempt_record& a : r.attempts) {
    if (a.server == r.plan.failing_server && a.probe && a.failed) {
      ++b.failed_probes;
    }
  }
  b.ejections = r.pool.failing_ejections;
  b.from_serving = b.ejections >= b.failed_probes ? b.ejections - b.failed_probes : 0;
  // While failing, a server can only leave `serving` by an ejection (a probe cannot succeed), so each
  // of its serving periods in the window ends in an ejection from serving, or at the window's close
  // (then there was no such ejection): max(1, from_serving) periods.
  b.allowed_non_probes =
      (r.plan.eject_after + r.config.slots_per_server - 1) * std::max<std::uint64_t>(1, b.from_serving);
  b.pass = b.ejections >= b.failed_probes && b.non_probes <= b.allowed_non_probes && b.probes <= b.ejections;
  return b;
}

std::size_t median_by_throughput(const std::vector<faulty_metrics>& metrics) {
  std::vector<std::size_t> order(metrics.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return metrics[a].throughput < metrics[b].throughput; });
  return order.empty() ? 0 : order[order.size() / 2];
}

}  // namespace

faulty_metrics compute_faulty_metrics(const faulty_result& r) {
  faulty_metrics m;
  m.makespan_ms = to_ms(r.makespan);
  std::vector<double> latencies;
  latencies.reserve(r.ends.size());
  for (const request_end& e : r.ends) {
    if (e.ends == 0) {
      ++m.lost;
      continue;
    }
    m.repeated += e.ends > 1 ? 1 : 0;
    ++(e.succeeded ? m.succeeded : m.final_failures);
    latencies.push_back(to_ms(e.end - e.enqueued));
  }
  const double ended = static_cast<double>(m.succeeded + m.final_failures);
  m.throughput = m.makespan_ms > 0 ? ended / (m.makespan_ms / 1000.0) : 0.0;
  m.latency_p50_ms = quantile(latencies, 0.50);
  m.latency_p99_ms = quantile(std::move(latencies), 0.99);

  const bench_clock::time_point end = r.t0 + r.makespan;
  const bench_clock::time_point epoch{};
  const bench_clock::time_point open = r.window_open == epoch ? end : std::max(r.t0, r.window_open);
  const bench_clock::time_point close = r.window_close == epoch ? end : std::max(open, r.window_close);
  m.window_ms = to_ms(close - open);

  const std::size_t failing = r.plan.failing_server;
  const std::size_t serving_servers = r.config.servers > failing ? r.config.servers - 1 : r.config.servers;
  double busy_ms = 0;
  m.attempts = r.attempts.size();
  std::vector<attempt_record> on_failing;
  for (const attempt_record& a : r.attempts) {
    if (a.server != failing) {
      busy_ms += overlap_ms(a.start, a.end, open, close);
    } else {
      on_failing.push_back(a);
    }
  }
  const double capacity_ms = static_cast<double>(serving_servers * r.config.slots_per_server) * m.window_ms;
  m.serving_utilisation = capacity_ms > 0 ? busy_ms / capacity_ms : 0.0;

  // The failing server's first ejection, by the pool's rule: the end of the attempt that made
  // eject_after failures in a row (attempts in the order they ended; a success resets the run).
  // batch-then-wait never ejects; the same instant is used for it ("where server_pool would have").
  std::sort(on_failing.begin(), on_failing.end(),
            [](const attempt_record& a, const attempt_record& b) { return a.end < b.end; });
  std::optional<bench_clock::time_point> first_ejection;
  std::size_t in_a_row = 0;
  for (const attempt_record& a : on_failing) {
    in_a_row = a.failed ? in_a_row + 1 : 0;
    if (r.plan.eject_after > 0 && in_a_row >= r.plan.eject_after) {
      first_ejection = a.end;
      break;
    }
  }
  std::optional<bench_clock::time_point> back;
  for (const attempt_record& a : on_failing) {
    if (a.in_window) {
      ++m.failing_attempts_in_window;
      ++(a.probe ? m.probes_in_window : m.non_probes_in_window);
      if (first_ejection && a.start >= *first_ejection) {
        ++m.after_first_ejection;
      }
    } else if (!a.failed && a.start >= close && (!back || a.start < *back)) {
      back = a.start;
    }
  }
  m.back_after_ms = back ? to_ms(*back - close) : -1.0;
  m.idle_after_ms = back ? m.back_after_ms : (end > close ? to_ms(end - close) : 0.0);
  return m;
}

faulty_outcome run_faulty(const scenario_config& config, const fault_plan& plan, std::size_t repeat,
                          std::ostream& progress) {
  faulty_outcome outcome;
  outcome.config = config;
  outcome.plan = plan;
  for (std::size_t round = 0; round < repeat; ++round) {
    progress << "  faulty batch_then_wait run " << (round + 1) << "/" << repeat << "...\n" << std::flush;
    outcome.btw_runs.push_back(run_faulty_batch_then_wait(config, plan));
    outcome.btw_metrics.push_back(compute_faulty_metrics(outcome.btw_runs.back()));
    progress << "  faulty server_pool run " << (round + 1) << "/" << repeat << "...\n" << std::flush;
    outcome.pool_runs.push_back(run_faulty_server_pool(config, plan));
    outcome.pool_metrics.push_back(compute_faulty_metrics(outcome.pool_runs.back()));
  }
  outcome.btw_median = median_by_throughput(outcome.btw_metrics);
  outcome.pool_median = median_by_throughput(outcome.pool_metrics);
  return outcome;
}

void print_faulty_table(const faulty_outcome& outcome, std::ostream& out) {
  const scenario_config& c = outcome.config;
  const fault_plan& p = outcome.plan;
  const std::size_t runs = outcome.btw_runs.size();
  if (runs == 0) {
    return;
  }
  out << "\nfaulty fleet: " << to_string(c.model) << " " << fixed(c.min_ms, 1) << "-" << fixed(c.max_ms, 1) << " ms, "
      << c.servers << " servers x " << c.slots_per_server << " slots, burst " << c.burst << ", budget " << c.budget
      << ", seed " << c.seed << " (the same stream as above)\n";
  out << "  fault window: while the stream issues its " << fixed(100 * p.window_begin, 0) << " % to "
      << fixed(100 * p.window_end, 0) << " % request (ids "
      << static_cast<std::uint64_t>(std::ceil(p.window_begin * static_cast<double>(c.budget))) << ".."
      << static_cast<std::uint64_t>(std::ceil(p.window_end * static_cast<double>(c.budget))) << "); server "
      << p.failing_server << " fails every attempt after a " << p.timeout.count() << " ms timeout, server "
      << p.slow_server << " serves " << fixed(p.slow_factor, 0) << "x slower\n";
  out << "  both designs: max_attempts " << p.max_attempts
      << "; batch-then-wait resubmits a failed request to the back of its queue; server_pool: eject_after "
      << p.eject_after << ", eject_for " << p.eject_for.count() << " ms, max_eject_for "
      << (p.max_eject_for.count() > 0 ? std::to_string(p.max_eject_for.count()) + " ms" : "32 x eject_for")
      << ", retry budget " << fixed(100 * p.retry_budget_ratio, 0) << " % + " << fixed(p.retry_budget_min_per_second, 0)
      << "/s over " << p.retry_budget_window.count() << " ms\n";
  out << "  each design ran " << runs << "x, interleaved; the run with the median throughput is shown\n\n";
  const std::string header = pad("design", 16, false) + pad("lost", 5) + pad("failed", 7) + pad("makespan ms", 12) +
                             pad("req/s", 7) + pad("lat p50 ms", 11) + pad("lat p99 ms", 11) + pad("window ms", 10) +
                             pad("serving util %", 15) + pad("srv" + std::to_string(p.failing_server) + " att", 9) +
                             pad("after 1st ej", 13) + pad("probes", 7) + pad("back after ms", 14);
  out << header << "\n" << std::string(header.size(), '-') << "\n";
  auto row = [&](const std::string& name, const faulty_result& r, const faulty_metrics& m) {
    std::string line =
        pad(name, 16, false) + pad(std::to_string(m.lost + m.repeated), 5) + pad(std::to_string(m.final_failures), 7) +
        pad(fixed(m.makespan_ms, 1), 12) + pad(fixed(m.throughput, 0), 7) + pad(fixed(m.latency_p50_ms, 2), 11) +
        pad(fixed(m.latency_p99_ms, 2), 11) + pad(fixed(m.window_ms, 1), 10) +
        pad(fixed(100 * m.serving_utilisation, 1), 15) + pad(std::to_string(m.failing_attempts_in_window), 9) +
        pad(std::to_string(m.after_first_ejection), 13) +
        pad(r.pool.present ? std::to_string(m.probes_in_window) : "-", 7) +
        pad(m.back_after_ms < 0 ? "never" : fixed(m.back_after_ms, 1), 14);
    if (!r.error.empty()) {
      line += "   ERROR: " + r.error;
    }
    out << line << "\n";
  };
  const faulty_metrics& bm = outcome.btw_metrics[outcome.btw_median];
  const faulty_metrics& pm = outcome.pool_metrics[outcome.pool_median];
  row("batch_then_wait", outcome.btw_runs[outcome.btw_median], bm);
  row("server_pool", outcome.pool_runs[outcome.pool_median], pm);
  const faulty_result& pr = outcome.pool_runs[outcome.pool_median];
  out << "\nthroughput relative to batch_then_wait: server_pool " << fixed(pm.throughput / bm.throughput, 3) << "x\n";
  out << "server_pool counters (same run): accepted " << pr.pool.accepted << " = succeeded " << pr.pool.succeeded
      << " + final failures " << pr.pool.final_failures << " (on_failure calls " << pr.pool.on_failure_calls
      << ") + expired " << pr.pool.expired << " + returned " << pr.pool.returned << "; retried " << pr.pool.retried
      << ", retry-budget refusals " << pr.pool.budget_refusals << ", server " << p.failing_server << " ejections "
      << pr.pool.failing_ejections << "\n";
  out << "server_pool: server " << p.failing_server << " served nothing for " << fixed(pm.idle_after_ms, 1)
      << " ms after the window closed (the rest of its last ejection period), "
      << fixed(100 * pm.idle_after_ms / std::max(pm.makespan_ms, 1e-9) / static_cast<double>(c.servers), 1)
      << " % of the run's slot-time\n";
  out << "lost = requests that never ended, or ended twice; failed = reported final failures (server_pool: "
         "on_failure);\n"
         "latency = first submit to the end of the last attempt; serving util = busy share of the slots of every\n"
         "server but "
      << p.failing_server << " within the window; srv" << p.failing_server << " att = attempts on server "
      << p.failing_server
      << " started in the window; after 1st ej = those started after its\n"
         "first ejection (batch-then-wait: after its "
      << p.eject_after
      << "th failure in a row); back after = window close to its next successful\n"
         "attempt.\n";
}

std::vector<target_result> evaluate_faulty_targets(const faulty_outcome& outcome) {
  std::vector<target_result> targets;
  if (outcome.btw_runs.empty()) {
    return targets;
  }
  const std::string where = " [faulty]";
  std::uint64_t worst_lost = 0;
  bool clean = true;
  for (std::size_t i = 0; i < outcome.btw_runs.size(); ++i) {
    for (const auto* pair : {&outcome.btw_metrics, &outcome.pool_metrics}) {
      const faulty_metrics& m = (*pair)[i];
      worst_lost = std::max(worst_lost, m.lost + m.repeated);
    }
    clean = clean && outcome.btw_runs[i].error.empty() && outcome.pool_runs[i].error.empty();
  }
  targets.push_back({"zero requests lost, batch_then_wait and server_pool, every run" + where,
                     std::to_string(worst_lost) + " lost in the worst run" + (clean ? "" : " (and a log/stats error)"),
                     worst_lost == 0 && clean});
  const faulty_metrics& bm = outcome.btw_metrics[outcome.btw_median];
  const faulty_metrics& pm = outcome.pool_metrics[outcome.pool_median];
  const double ratio = bm.throughput > 0 ? pm.throughput / bm.throughput : 0.0;
  targets.push_back({"server_pool throughput >= 1.15x batch_then_wait over the whole faulty run" + where,
                     fixed(ratio, 3) + "x", ratio >= 1.15});
  targets.push_back({"server_pool keeps the serving servers' slots >= 95 % busy in the fault window" + where,
                     fixed(100 * pm.serving_utilisation, 2) + " %", pm.serving_utilisation >= 0.95});
  bool all = true;
  std::string worst;
  for (std::size_t i = 0; i < outcome.pool_runs.size(); ++i) {
    const bound_check b = check_bound(outcome.pool_runs[i], outcome.pool_metrics[i]);
    const std::string text = std::to_string(b.non_probes) + " non-probe attempts for " +
                             std::to_string(b.from_serving) + " ejection(s) from serving (allowed " +
                             std::to_string(b.allowed_non_probes) + "), " + std::to_string(b.probes) +
                             " probe(s) for " + std::to_string(b.ejections) + " ejection period(s)";
    if (worst.empty() || (!b.pass && all)) {
      worst = text;
    }
    all = all && b.pass;
  }
  const fault_plan& p = outcome.plan;
  targets.push_back({"failing server gets <= eject_after + K - 1 = " +
                         std::to_string(p.eject_after + outcome.config.slots_per_server - 1) +
                         " attempts per ejection, + 1 probe per ejection period, every run" + where,
                     (all ? "every run; first: " : "missed: ") + worst, all});
  return targets;
}

}  // namespace flowpool_bench
