#include "report.hpp"
#include "text_format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>

namespace flowpool_fleet {
namespace {

double to_ms(std::chrono::nanoseconds d) noexcept {
  return std::chrono::duration<double, std::milli>(d).count();
}
double to_us(std::chrono::nanoseconds d) noexcept {
  return std::chrono::duration<double, std::micro>(d).count();
}

using flowpool_bench::fixed;
using flowpool_bench::pad;

double quantile(std::vector<double> values, double p) {
  if (values.empty()) {
    return 0.0;
  }
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[rank == 0 ? 0 : rank - 1];
}

// The ejection period in force when the fault was healed: the fault server's last_ejection in the
// last sample taken before it (server_pool samples only; nullopt if it was serving then).
std::optional<std::chrono::milliseconds> period_at_heal(const fleet_result& r) {
  if (!r.heal_time || r.samples.empty()) {
    return std::nullopt;
  }
  const state_sample* last = nullptr;
  for (const state_sample& s : r.samples) {
    if (s.at <= *r.heal_time) {
      last = &s;
    }
  }
  if (last == nullptr || last->state != flowpool::server_state::ejected) {
    return std::nullopt;
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(last->last_ejection);
}

}  // namespace

fleet_metrics compute_metrics(const fleet_result& r, const conservation& c) {
  fleet_metrics m;
  m.check = c;
  m.makespan_ms = to_ms(r.makespan);
  m.throughput = m.makespan_ms > 0 ? static_cast<double>(c.succeeded) / (m.makespan_ms / 1000.0) : 0.0;
  std::chrono::nanoseconds busy{0};
  std::vector<double> overhead;
  overhead.reserve(r.attempts.size());
  std::optional<bench_clock::time_point> back;
  std::vector<double> waits;
  std::vector<std::uint64_t> answered(r.config.scenario.servers, 0);
  for (const attempt_event& e : r.attempts) {
    if (e.attempt == 1) {
      waits.push_back(to_ms(e.start - e.enqueued));
    }
    if (e.status == 200 && e.server < answered.size()) {
      ++answered[e.server];
    }
    busy += e.end - e.start;
    ++m.attempts;
    if (r.fault_time && r.heal_time && e.server == r.config.fault_server && e.start >= *r.fault_time &&
        e.start < *r.heal_time) {
      ++m.fault_attempts;
    }
    if (r.heal_time && e.server == r.config.fault_server && e.status == 200 && e.start >= *r.heal_time &&
        (!back || e.end < *back)) {
      back = e.end;
    }
  }
  // The drawn service time of each request comes from the stream's seed, as the server got it (us).
  for (const attempt_event& e : r.attempts) {
    if (e.status == 200) {
      const double drawn_us = static_cast<double>(
          static_cast<std::uint64_t>(flowpool_bench::base_service_ms(r.config.scenario, e.id) * 1e3));
      overhead.push_back(to_us(e.end - e.start) - drawn_us);
    }
  }
  const double capacity_ms = static_cast<double>(r.config.scenario.slots()) * m.makespan_ms;
  m.utilisation = capacity_ms > 0 ? to_ms(busy) / capacity_ms : 0.0;
  m.overhead_p50_us = quantile(overhead, 0.50);
  m.overhead_p99_us = quantile(std::move(overhead), 0.99);
  m.wait_p50_ms = quantile(waits, 0.50);
  m.wait_p99_ms = quantile(std::move(waits), 0.99);
  std::uint64_t answers = 0;
  for (std::uint64_t a : answered) {
    answers += a;
  }
  for (std::uint64_t a : answered) {
    m.share.push_back(answers == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(answers));
  }
  m.retries = m.attempts - std::min<std::uint64_t>(m.attempts, c.succeeded + c.failed);
  if (back) {
    m.back_after_ms = to_ms(*back - *r.heal_time);
  }
  return m;
}

const fleet_design_runs* fleet_outcome::find(const std::string& design) const noexcept {
  for (const fleet_design_runs& d : designs) {
    if (d.design == design) {
      return &d;
    }
  }
  return nullptr;
}

void print_table(const fleet_outcome& o, std::ostream& out) {
  const fleet_config& c = o.config;
  const std::size_t runs = o.designs.empty() ? 0 : o.designs.front().runs.size();
  out << "\nfleet: " << o.title << "\n";
  out << "  " << c.scenario.servers << " server processes x " << c.scenario.slots_per_server
      << " slots (HTTP on 127.0.0.1, cpp-httplib), uniform " << fixed(c.scenario.min_ms, 1) << "-"
      << fixed(c.scenario.max_ms, 1) << " ms, burst " << c.scenario.burst << ", budget " << c.scenario.budget
      << ", seed " << c.scenario.seed << "; timeouts connect " << c.connect_timeout.count() << " ms, read "
      << c.read_timeout.count() << " ms; max_attempts " << c.max_attempts << " (every design)";
  out << "; server_pool eject_after " << c.eject_after << ", eject_for " << c.eject_for.count() << " ms, max_eject_for "
      << (c.max_eject_for.count() > 0 ? std::to_string(c.max_eject_for.count()) + " ms" : "32 x eject_for") << "\n";
  if (c.fault != fault_kind::none) {
    out << "  fault: " << to_string(c.fault) << " server " << c.fault_server << " at " << fixed(100 * c.fault_at, 0)
        << " % of the budget done, " << (c.fault == fault_kind::kill ? "restarted on the same port" : "healed")
        << " at " << fixed(100 * c.heal_at, 0) << " %\n";
  }
  out << "  each design ran " << runs << "x, interleaved; the run with the median throughput is shown\n\n";
  std::string header = pad("design", 16, false) + pad("makespan ms", 12) + pad("req/s", 8) + pad("util %", 8) +
                       pad("wait p50 ms", 12) + pad("p99 ms", 8) + pad("rtt-svc p50 us", 15) + pad("p99 us", 8) +
                       pad("attempts", 9) + pad("retries", 8) + pad("failed", 7) + pad("dup", 5) + pad("lost", 5) +
                       pad("503s", 5);
  if (c.fault != fault_kind::none) {
    header += pad("on srv" + std::to_string(c.fault_server) + " in fault", 17) + pad("back after ms", 14);
  }
  header += "   share per server %";
  out << header << "\n" << std::string(header.size() + 4 * c.scenario.servers, '-') << "\n";
  for (const fleet_design_runs& d : o.designs) {
    const fleet_metrics& m = d.metrics[d.median];
    std::string line = pad(d.design, 16, false) + pad(fixed(m.makespan_ms, 1), 12) + pad(fixed(m.throughput, 0), 8) +
                       pad(fixed(100 * m.utilisation, 1), 8) + pad(fixed(m.wait_p50_ms, 2), 12) +
                       pad(fixed(m.wait_p99_ms, 2), 8) + pad(fixed(m.overhead_p50_us, 0), 15) +
                       pad(fixed(m.overhead_p99_us, 0), 8) + pad(std::to_string(m.attempts), 9) +
                       pad(std::to_string(m.retries), 8) + pad(std::to_string(m.check.failed), 7) +
                       pad(std::to_string(m.check.duplicates), 5) + pad(std::to_string(m.check.lost), 5) +
                       pad(std::to_string(m.check.refused_503), 5);
    if (c.fault != fault_kind::none) {
      line += pad(std::to_string(m.fault_attempts), 17) +
              pad(m.back_after_ms ? fixed(*m.back_after_ms, 1) : std::string("never"), 14);
    }
    line += "  ";
    for (double share : m.share) {
      line += ' ';
      line += pad(fixed(100 * share, 1), 5);
    }
    if (!d.runs[d.median].error.empty()) {
      line += "   ERROR: " + d.runs[d.median].error;
    }
    out << line << "\n";
  }
  if (const fleet_design_runs* base = o.find("batch_then_wait")) {
    out << "\nthroughput relative to batch_then_wait:";
    for (const fleet_design_runs& d : o.designs) {
      out << "  " << d.design << " "
          << fixed(d.metrics[d.median].throughput / base->metrics[base->median].throughput, 3) << "x";
    }
    out << "\n";
  }
  out << "wait = enqueue to the first attempt's start; share = each server's part of the successful answers;\n";
  out << "req/s counts successes; util = slot time inside attempts (round trips) / (S*K x makespan);\n"
         "rtt-svc = a successful attempt's round trip minus its drawn service time (loopback HTTP, server\n"
         "sleep overshoot, scheduling); lost and dup come from comparing the driver's records with the\n"
         "servers' logs (dup: a second 200 for an id, e.g. a retry after a timeout whose first attempt\n"
         "did reach a server); 503s are from the servers' logs (a request beyond K).\n";
}

std::vector<fleet_target> evaluate_targets(const fleet_outcome& o) {
  std::vector<fleet_target> targets;
  const fleet_config& c = o.config;
  const std::string where = c.fault == fault_kind::none ? " [healthy]" : " [fault]";
  bool conserved = true;
  for (const fleet_design_runs& d : o.designs) {
    for (std::size_t i = 0; i < d.runs.size(); ++i) {
      conserved = conserved && d.metrics[i].check.ok() && d.runs[i].error.empty();
    }
  }
  targets.push_back({"every run of every design conserved every request (ended once, nothing lost)" + where,
                     conserved ? "yes" : "NO", conserved});
  const fleet_design_runs* pool = o.find("server_pool");
  const fleet_design_runs* base = o.find("batch_then_wait");
  if (pool == nullptr) {
    return targets;
  }
  const fleet_metrics& pm = pool->metrics[pool->median];
  std::uint64_t lost = 0;
  std::uint64_t refused = 0;
  for (const fleet_metrics& m : pool->metrics) {
    lost += m.check.lost;
    refused += m.check.refused_503;
  }
  if (base != nullptr) {
    const double ratio = pm.throughput / base->metrics[base->median].throughput;
    const double want = c.fault == fault_kind::none ? 1.14 : 1.15;
    targets.push_back({"server_pool throughput >= " + fixed(want, 2) + "x batch_then_wait" + where,
                       fixed(ratio, 3) + "x", ratio >= want});
  }
  if (c.fault == fault_kind::none) {
    targets.push_back({"server_pool slot utilisation >= 97 %" + where, fixed(100 * pm.utilisation, 2) + " %",
                       pm.utilisation >= 0.97});
    targets.push_back({"server_pool: zero 503s (all runs)" + where, std::to_string(refused), refused == 0});
  }
  targets.push_back({"server_pool: zero lost (all runs)" + where, std::to_string(lost), lost == 0});
  if (c.fault != fault_kind::none) {
    const fleet_result& r = pool->runs[pool->median];
    const std::optional<std::chrono::milliseconds> period = period_at_heal(r);
    std::string measured = pm.back_after_ms ? fixed(*pm.back_after_ms, 1) + " ms after the restart" : "never";
    bool pass = false;
    if (period && pm.back_after_ms) {
      measured += "; ejection period in force " + std::to_string(period->count()) + " ms (" +
                  fixed(*pm.back_after_ms / static_cast<double>(period->count()), 2) + " periods; base eject_for " +
                  std::to_string(c.eject_for.count()) + " ms)";
      pass = *pm.back_after_ms <= 2.0 * static_cast<double>(period->count());
    } else if (!period) {
      measured += "; server " + std::to_string(c.fault_server) + " was not ejected at the restart";
      pass = pm.back_after_ms.has_value() && *pm.back_after_ms <= 2.0 * static_cast<double>(c.eject_for.count());
    }
    targets.push_back({"server_pool: server " + std::to_string(c.fault_server) +
                           " serving again within 2 ejection periods after its restart" + where,
                       measured, pass});
  }
  return targets;
}

std::string write_fault_plot(const std::string& dir, const std::string& scripts_dir, const fleet_outcome& o) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path data = fs::path(dir) / "data";
  fs::create_directories(data, ec);
  if (ec) {
    return "cannot create " + dir + ": " + ec.message();
  }
  std::string marks;
  for (const char* name : {"batch_then_wait", "server_pool"}) {
    const fleet_design_runs* d = o.find(name);
    if (d == nullptr) {
      continue;
    }
    const fleet_result& r = d->runs[d->median];
    std::ofstream csv(data / (std::string("fleet_gantt_") + name + ".csv"));
    csv << "# " << name << ": slot row (server * K + slot), start_ms, end_ms, server, ok (1) or failed (0)\n";
    for (const attempt_event& e : r.attempts) {
      csv << e.slot << "," << fixed(to_ms(e.start - r.t0), 3) << "," << fixed(to_ms(e.end - r.t0), 3) << "," << e.server
          << "," << (e.status == 200 ? 1 : 0) << "\n";
    }
    std::ofstream events(data / (std::string("fleet_events_") + name + ".csv"));
    events << "# fault_ms, heal_ms, makespan_ms\n";
    events << (r.fault_time ? fixed(to_ms(*r.fault_time - r.t0), 3) : "0") << ","
           << (r.heal_time ? fixed(to_ms(*r.heal_time - r.t0), 3) : "0") << "," << fixed(to_ms(r.makespan), 3) << "\n";
    if (std::string(name) == "server_pool") {
      std::ofstream ejected(data / "fleet_ejected.csv");
      ejected << "# intervals in which server_pool's fault server was ejected: start_ms, end_ms\n";
      std::optional<bench_clock::time_point> from;
      for (const state_sample& s : r.samples) {
        const bool out = s.state == flowpool::server_state::ejected;
        if (out && !from) {
          from = s.at;
        } else if (!out && from) {
          ejected << fixed(to_ms(*from - r.t0), 3) << "," << fixed(to_ms(s.at - r.t0), 3) << "\n";
          from.reset();
        }
      }
      if (from) {
        ejected << fixed(to_ms(*from - r.t0), 3) << "," << fixed(to_ms(r.makespan), 3) << "\n";
      }
    }
  }
  const std::string vars = "dir='" + dir + "'; slots=" + std::to_string(o.config.scenario.slots()) +
                           "; k=" + std::to_string(o.config.scenario.slots_per_server) +
                           "; fault_server=" + std::to_string(o.config.fault_server);
  const std::string command = "gnuplot -e \"" + vars + "\" '" + scripts_dir + "/fleet_gantt.gp'";
  if (std::system(command.c_str()) != 0) {
    return "gnuplot failed: " + command;
  }
  return {};
}

}  // namespace flowpool_fleet
