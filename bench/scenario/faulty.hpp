// The faulty-fleet mode of the scenario (issue 10): the same seeded request stream as the uniform
// scenario, but one server fails and one slows down for part of the run, and the designs retry.
//
// The fault window is defined by request index: it opens when the stream issues request id
// ceil(0.2 * budget) and closes when it issues id ceil(0.6 * budget). Ids are issued in time order
// (the burst, then one follow-up per request that ends), so "20 % to 60 % of the run" means "while
// the stream is between its 20 % and its 60 % request": the same share of the stream for every
// design, whatever its speed. An attempt is judged by the window's state when it starts:
// - on the failing server (server 2) it sleeps for the timeout (10 ms: a dead server costs its
//   caller time), then throws;
// - on the slow server (server 4) it sleeps 5x its drawn service time.
// Outside the window every server serves normally. A request's follow-up is issued when the
// request ends (succeeds, or fails for good after max_attempts), never for a failed attempt, so the
// number of requests in flight stays at the burst.
#pragma once

#include "comparison.hpp"
#include "results.hpp"
#include "stream.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace flowpool_bench {

/// What fails, when, and how the designs retry.
struct fault_plan {
  double window_begin = 0.2;                    ///< the window opens at this share of the stream's requests
  double window_end = 0.6;                      ///< ... and closes at this one
  std::size_t failing_server = 2;               ///< fails every attempt in the window, after `timeout`
  std::chrono::milliseconds timeout{10};        ///< how long a failing attempt takes before it throws
  std::size_t slow_server = 4;                  ///< serves `slow_factor`x slower in the window
  double slow_factor = 5.0;                     ///< the slow server's slowdown in the window
  std::size_t max_attempts = 3;                 ///< both designs: total tries per request
  std::size_t eject_after = 5;                  ///< server_pool: consecutive failures that eject
  std::chrono::milliseconds eject_for{20};      ///< server_pool: the first ejection (see main's --help)
  std::chrono::milliseconds max_eject_for{40};  ///< server_pool: the longest ejection (0: 32 * eject_for)
  double retry_budget_ratio = 0.2;              ///< server_pool: the defaults (Finagle's and Envoy's)
  double retry_budget_min_per_second = 10.0;    ///< ... which refuse nothing in this run (reported)
  std::chrono::milliseconds retry_budget_window{10000};
};

/// The exception a failing attempt throws.
class injected_timeout : public std::runtime_error {
 public:
  injected_timeout() : std::runtime_error("faulty fleet: injected timeout") {}
};

/// One attempt (a handler call), as logged by the faulty designs.
struct attempt_record {
  std::uint64_t id = 0;
  std::uint32_t server = 0;
  std::uint32_t slot = 0;
  std::uint32_t attempt = 1;  ///< 1-based
  bool failed = false;        ///< it threw
  bool probe = false;         ///< server_pool: the probe of an ejected server
  bool in_window = false;     ///< the fault window was open when it started
  bench_clock::time_point start{};
  bench_clock::time_point end{};
};

/// How one request ended.
struct request_end {
  std::uint32_t ends = 0;              ///< how often it ended: must be exactly 1
  bool succeeded = false;              ///< false: it failed for good (reported)
  std::uint32_t attempts = 0;          ///< attempts it took
  bench_clock::time_point enqueued{};  ///< its first submit
  bench_clock::time_point end{};       ///< the end of its last attempt
};

/// The window and the logs one faulty run fills. Thread-safe: any serving thread may call every
/// member; the vectors are read after the design's join, which orders every write before the read.
class fault_run {
 public:
  fault_run(const scenario_config& config, const fault_plan& plan)
      : m_plan(plan),
        m_open_id(static_cast<std::uint64_t>(std::ceil(plan.window_begin * static_cast<double>(config.budget)))),
        m_close_id(static_cast<std::uint64_t>(std::ceil(plan.window_end * static_cast<double>(config.budget)))),
        m_attempts(config.budget * (plan.max_attempts + 1) + 1024),
        m_ends(config.budget),
        m_end_count(std::make_unique<std::atomic<std::uint32_t>[]>(config.budget)) {}

  fault_run(const fault_run&) = delete;
  fault_run& operator=(const fault_run&) = delete;

  /// @return whether the window is open, given how many ids the stream has issued.
  [[nodiscard]] bool in_window(const request_stream& stream) const noexcept {
    const std::uint64_t issued = stream.issued();
    return issued > m_open_id && issued <= m_close_id;
  }

  /// Notes that `r` was just issued (burst or follow-up): stamps the window's open and close.
  void issued(const request& r) noexcept {
    if (r.id == m_open_id) {
      m_open_at.store(bench_clock::now().time_since_epoch().count(),
                      std::memory_order_relaxed);  // relaxed: read after join
    } else if (r.id == m_close_id) {
      m_close_at.store(bench_clock::now().time_since_epoch().count(), std::memory_order_relaxed);  // as above
    }
  }

  /// Logs one attempt.
  void log(const attempt_record& a) noexcept {
    const std::size_t at = m_next_attempt.fetch_add(1, std::memory_order_relaxed);  // relaxed: a slot index
    if (at < m_attempts.size()) {
      m_attempts[at] = a;
    }
  }

  /// Records that request `r` ended after `attempts` attempts, its last one ending at `end`.
  void ended(const request& r, bool succeeded, std::uint32_t attempts, bench_clock::time_point end) noexcept {
    if (r.id >= m_ends.size()) {
      m_stray.fetch_add(1, std::memory_order_relaxed);  // relaxed: checked after join
      return;
    }
    // relaxed: only the count matters; the record itself is read after the design's join.
    if (m_end_count[r.id].fetch_add(1, std::memory_order_relaxed) != 0) {
      return;  // a repeat: counted, and reported by the metrics
    }
    request_end& e = m_ends[r.id];
    e.succeeded = succeeded;
    e.attempts = attempts;
    e.enqueued = r.enqueued;
    e.end = end;
  }

  [[nodiscard]] const fault_plan& plan() const noexcept { return m_plan; }
  /// @return the logged attempts (call after join).
  [[nodiscard]] std::vector<attempt_record> attempts() const {
    const std::size_t n = std::min(m_next_attempt.load(std::memory_order_relaxed), m_attempts.size());
    return {m_attempts.begin(), m_attempts.begin() + static_cast<std::ptrdiff_t>(n)};
  }
  /// @return attempts that did not fit in the log (call after join; should be 0).
  [[nodiscard]] std::size_t attempts_dropped() const noexcept {
    const std::size_t n = m_next_attempt.load(std::memory_order_relaxed);
    return n > m_attempts.size() ? n - m_attempts.size() : 0;
  }
  /// @return how each request ended, with `ends` filled in (call after join).
  [[nodiscard]] std::vector<request_end> ends() const {
    std::vector<request_end> out = m_ends;
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i].ends = m_end_count[i].load(std::memory_order_relaxed);  // relaxed: after join
    }
    return out;
  }
  [[nodiscard]] std::size_t stray() const noexcept { return m_stray.load(std::memory_order_relaxed); }
  /// @return when the window opened and closed (the epoch if it never did).
  [[nodiscard]] bench_clock::time_point opened_at() const noexcept {
    return bench_clock::time_point(bench_clock::duration(m_open_at.load(std::memory_order_relaxed)));
  }
  [[nodiscard]] bench_clock::time_point closed_at() const noexcept {
    return bench_clock::time_point(bench_clock::duration(m_close_at.load(std::memory_order_relaxed)));
  }

 private:
  fault_plan m_plan;
  std::uint64_t m_open_id;
  std::uint64_t m_close_id;
  std::vector<attempt_record> m_attempts;
  std::atomic<std::size_t> m_next_attempt{0};
  std::vector<request_end> m_ends;
  std::unique_ptr<std::atomic<std::uint32_t>[]> m_end_count;
  std::atomic<std::size_t> m_stray{0};
  std::atomic<bench_clock::rep> m_open_at{0};
  std::atomic<bench_clock::rep> m_close_at{0};
};

/// Serves one attempt of `r` on (server, slot) under the fault plan: sleeps (10 ms then throws on
/// the failing server in the window; 5x longer on the slow server in the window; else the drawn
/// service time), logs the attempt and, on success, issues the follow-up through `submit` and
/// records the request's end. @throws injected_timeout for a failed attempt (nothing issued).
template <class Submit>
void serve_faulty(const request& r, std::size_t server, std::size_t slot, std::uint32_t attempt, bool probe,
                  request_stream& stream, fault_run& run, Submit&& submit) {
  tighten_timer_slack();
  const fault_plan& plan = run.plan();
  attempt_record a{r.id,
                   static_cast<std::uint32_t>(server),
                   static_cast<std::uint32_t>(slot),
                   attempt,
                   false,
                   probe,
                   run.in_window(stream),
                   bench_clock::now(),
                   {}};
  if (a.in_window && server == plan.failing_server) {
    std::this_thread::sleep_for(plan.timeout);
    a.failed = true;
    a.end = bench_clock::now();
    run.log(a);
    throw injected_timeout();
  }
  std::chrono::nanoseconds service = stream.service_time(r, server);
  if (a.in_window && server == plan.slow_server) {
    service =
        std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(service.count()) * plan.slow_factor));
  }
  std::this_thread::sleep_for(service);
  if (std::optional<request> next = stream.follow_up()) {
    run.issued(*next);
    submit(*next);
  }
  a.end = bench_clock::now();
  run.log(a);
  run.ended(r, true, attempt, a.end);
}

/// A request that failed for good: records it and issues its follow-up through `submit`.
template <class Submit>
void fail_for_good(const request& r, std::uint32_t attempts, request_stream& stream, fault_run& run, Submit&& submit) {
  if (std::optional<request> next = stream.follow_up()) {
    run.issued(*next);
    submit(*next);
  }
  run.ended(r, false, attempts, bench_clock::now());
}

/// server_pool's own counters of a faulty run (zeros for batch-then-wait).
struct pool_counters {
  bool present = false;
  std::uint64_t accepted = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t final_failures = 0;
  std::uint64_t expired = 0;
  std::uint64_t returned = 0;
  std::uint64_t retried = 0;
  std::uint64_t budget_refusals = 0;
  std::uint64_t failing_ejections = 0;  ///< ejections of the failing server
  std::uint64_t on_failure_calls = 0;   ///< counted in the on_failure callback
};

/// One design's faulty run.
struct faulty_result {
  std::string design;
  scenario_config config;
  fault_plan plan;
  bench_clock::time_point t0{};
  std::chrono::nanoseconds makespan{};
  std::vector<attempt_record> attempts;
  std::vector<request_end> ends;
  bench_clock::time_point window_open{};
  bench_clock::time_point window_close{};
  pool_counters pool;
  std::string error;  ///< "" when every request ended exactly once and the logs are complete
};

/// Runs the faulty stream through batch-then-wait (natural retry) / server_pool (retry + ejection).
faulty_result run_faulty_batch_then_wait(const scenario_config& config, const fault_plan& plan);
faulty_result run_faulty_server_pool(const scenario_config& config, const fault_plan& plan);

/// What the faulty table shows for one run.
struct faulty_metrics {
  std::uint64_t lost = 0;      ///< requests that never ended
  std::uint64_t repeated = 0;  ///< requests that ended more than once
  std::uint64_t succeeded = 0;
  std::uint64_t final_failures = 0;  ///< reported failures (on_failure, or batch-then-wait's own count)
  double makespan_ms = 0;
  double throughput = 0;      ///< requests ended / makespan
  double latency_p50_ms = 0;  ///< first submit to the end of the last attempt
  double latency_p99_ms = 0;
  double window_ms = 0;                          ///< how long the fault window lasted
  double serving_utilisation = 0;                ///< busy share of the other servers' slots within the window
  std::uint64_t attempts = 0;                    ///< all handler calls
  std::uint64_t failing_attempts_in_window = 0;  ///< attempts on the failing server that started in the window
  std::uint64_t after_first_ejection = 0;        ///< ... of which started after its first ejection (see faulty.cpp)
  std::uint64_t probes_in_window = 0;            ///< ... of which were probes
  std::uint64_t non_probes_in_window = 0;        ///< ... of which were not
  double back_after_ms = 0;  ///< window close to the failing server's first attempt after it (-1: none)
  double idle_after_ms = 0;  ///< window close to that attempt, or to the end of the run if none
};

/// @return the metrics of `r`.
faulty_metrics compute_faulty_metrics(const faulty_result& r);

/// Every run of both faulty designs, and the index of each one's median-throughput run.
struct faulty_outcome {
  scenario_config config;
  fault_plan plan;
  std::vector<faulty_result> btw_runs;
  std::vector<faulty_result> pool_runs;
  std::vector<faulty_metrics> btw_metrics;
  std::vector<faulty_metrics> pool_metrics;
  std::size_t btw_median = 0;
  std::size_t pool_median = 0;
};

/// Runs `repeat` interleaved rounds of both designs.
faulty_outcome run_faulty(const scenario_config& config, const fault_plan& plan, std::size_t repeat,
                          std::ostream& progress);

/// Prints the faulty-fleet table.
void print_faulty_table(const faulty_outcome& outcome, std::ostream& out);

/// @return issue 10's faulty-fleet targets, evaluated on `outcome`.
std::vector<target_result> evaluate_faulty_targets(const faulty_outcome& outcome);

}  // namespace flowpool_bench
