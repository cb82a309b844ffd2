// What one design's run of the scenario produces (a record per request) and the metrics derived
// from it. Records are written by the serving threads, one slot per request id, and read only after
// the design's join/wait, which orders every write before the read.
#pragma once

#include "stream.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/prctl.h>

namespace flowpool_bench {

/// Sets the calling thread's timer slack to 1 ns (once per thread), so a simulated-I/O sleep
/// overshoots by the scheduler's wake-up latency only, not by Linux's default 50 us slack. Every
/// design's serving threads get the same treatment.
inline void tighten_timer_slack() noexcept {
  static thread_local const bool k_done = [] { return ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0; }();
  (void)k_done;
}

/// One served request.
struct request_record {
  std::uint64_t id = 0;
  std::uint32_t server = 0;
  std::uint32_t slot = 0;
  std::uint64_t batch = 0;  ///< batch-then-wait only; 0 elsewhere
  bench_clock::time_point enqueued{};
  bench_clock::time_point start{};  ///< handler entry
  bench_clock::time_point end{};    ///< handler exit (after the sleep and the follow-up's submit)
};

/// Collects one record per request id and counts how often each id was served.
class recorder {
 public:
  /// @param budget the number of request ids (the scenario's budget; must be > 0).
  explicit recorder(std::size_t budget)
      : m_records(budget), m_served(std::make_unique<std::atomic<std::uint32_t>[]>(budget)), m_size(budget) {}

  /// Stores `r`. Any thread; lock-free; each id should be recorded once.
  void record(const request_record& r) noexcept {
    if (r.id >= m_size) {
      m_out_of_range.fetch_add(1, std::memory_order_relaxed);  // relaxed: checked after join
      return;
    }
    // relaxed: only the count matters; the record itself is read after the design's join.
    if (m_served[r.id].fetch_add(1, std::memory_order_relaxed) == 0) {
      m_records[r.id] = r;
    }
  }

  /// @return "" if every id in [0, budget) was served exactly once, else what went wrong.
  /// Call after the design's join/wait.
  [[nodiscard]] std::string check() const {
    std::size_t missing = 0;
    std::size_t repeated = 0;
    for (std::size_t i = 0; i < m_size; ++i) {
      const std::uint32_t n = m_served[i].load(std::memory_order_relaxed);  // relaxed: after join
      missing += n == 0 ? 1 : 0;
      repeated += n > 1 ? 1 : 0;
    }
    const std::size_t stray = m_out_of_range.load(std::memory_order_relaxed);  // relaxed: after join
    if (missing == 0 && repeated == 0 && stray == 0) {
      return {};
    }
    return std::to_string(missing) + " requests never served, " + std::to_string(repeated) +
           " served more than once, " + std::to_string(stray) + " ids beyond the budget";
  }

  /// @return the records, indexed by id. Call after the design's join/wait.
  [[nodiscard]] std::vector<request_record> take() { return std::move(m_records); }

 private:
  std::vector<request_record> m_records;
  std::unique_ptr<std::atomic<std::uint32_t>[]> m_served;
  std::size_t m_size;
  std::atomic<std::size_t> m_out_of_range{0};
};

/// Serves `r` on (server, slot) the same way in every design: sleeps its service time (simulated
/// I/O), submits its follow-up (if the budget allows) through `submit`, and records the handler's
/// actual start and end, so sleep overshoot counts as busy time.
template <class Submit>
void serve(request& r, std::size_t server, std::size_t slot, std::uint64_t batch, request_stream& stream, recorder& out,
           Submit&& submit) {
  tighten_timer_slack();
  const bench_clock::time_point start = bench_clock::now();
  std::this_thread::sleep_for(stream.service_time(r, server));
  if (std::optional<request> next = stream.follow_up()) {
    submit(*next);
  }
  out.record(request_record{r.id, static_cast<std::uint32_t>(server), static_cast<std::uint32_t>(slot), batch,
                            r.enqueued, start, bench_clock::now()});
}

/// One design's run of one scenario.
struct design_result {
  std::string design;  ///< e.g. "server_pool"
  scenario_config config;
  bench_clock::time_point t0{};         ///< just before the first submit
  std::chrono::nanoseconds makespan{};  ///< t0 to the return of the design's join/wait
  std::vector<request_record> records;  ///< by id
  std::string error;                    ///< "" when every request was served exactly once
};

/// Metrics of one design_result (issue 3's list).
struct design_metrics {
  double makespan_ms = 0;
  double throughput = 0;   ///< requests / s
  double utilisation = 0;  ///< busy slot-time / (slots x makespan), 0..1
  double wait_p50_ms = 0;  ///< queue wait: enqueue to handler entry
  double wait_p99_ms = 0;
  double overshoot_us = 0;              ///< mean handler time minus mean drawn service time (sleep overshoot)
  std::vector<double> share;            ///< fraction of requests each server handled
  std::vector<std::uint64_t> handled;   ///< requests each server handled
  std::vector<double> mean_handler_ms;  ///< mean measured handler time on each server
};

inline double to_ms(std::chrono::nanoseconds d) noexcept {
  return std::chrono::duration<double, std::milli>(d).count();
}

/// @return the p-quantile (0..1) of `values` by the nearest-rank method; 0 when empty.
inline double quantile(std::vector<double> values, double p) {
  if (values.empty()) {
    return 0.0;
  }
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
  return values[rank == 0 ? 0 : rank - 1];
}

/// @return the metrics of `result`.
inline design_metrics compute_metrics(const design_result& result) {
  design_metrics m;
  m.makespan_ms = to_ms(result.makespan);
  const std::size_t n = result.records.size();
  m.throughput = m.makespan_ms > 0 ? static_cast<double>(n) / (m.makespan_ms / 1000.0) : 0.0;
  std::chrono::nanoseconds busy{};
  double drawn_ms = 0;
  std::vector<double> waits;
  waits.reserve(n);
  m.handled.assign(result.config.servers, 0);
  m.mean_handler_ms.assign(result.config.servers, 0.0);
  for (const request_record& r : result.records) {
    busy += r.end - r.start;
    drawn_ms += base_service_ms(result.config, r.id) * slowdown(result.config, r.server);
    waits.push_back(to_ms(r.start - r.enqueued));
    if (r.server < m.handled.size()) {
      ++m.handled[r.server];
      m.mean_handler_ms[r.server] += to_ms(r.end - r.start);
    }
  }
  const double capacity_ms = static_cast<double>(result.config.slots()) * m.makespan_ms;
  m.utilisation = capacity_ms > 0 ? to_ms(busy) / capacity_ms : 0.0;
  m.overshoot_us = n == 0 ? 0.0 : (to_ms(busy) - drawn_ms) / static_cast<double>(n) * 1000.0;
  m.wait_p50_ms = quantile(waits, 0.50);
  m.wait_p99_ms = quantile(std::move(waits), 0.99);
  for (std::size_t s = 0; s < m.handled.size(); ++s) {
    m.mean_handler_ms[s] = m.handled[s] == 0 ? 0.0 : m.mean_handler_ms[s] / static_cast<double>(m.handled[s]);
  }
  for (std::uint64_t h : m.handled) {
    m.share.push_back(n == 0 ? 0.0 : static_cast<double>(h) / static_cast<double>(n));
  }
  return m;
}

/// @return each server's share of the total measured speed (1 / mean handler time), which includes
/// the sleep overshoot that the nominal speed share leaves out; servers that handled nothing count 0.
inline std::vector<double> measured_speed_shares(const design_metrics& m) {
  std::vector<double> shares;
  double total = 0.0;
  for (double ms : m.mean_handler_ms) {
    shares.push_back(ms > 0 ? 1.0 / ms : 0.0);
    total += shares.back();
  }
  for (double& x : shares) {
    x = total > 0 ? x / total : 0.0;
  }
  return shares;
}

/// @return each server's share of the total speed: (1/slowdown(i)) / sum_j (1/slowdown(j)).
inline std::vector<double> speed_shares(const scenario_config& config) {
  std::vector<double> shares;
  double total = 0.0;
  for (std::size_t s = 0; s < config.servers; ++s) {
    shares.push_back(1.0 / slowdown(config, s));
    total += shares.back();
  }
  for (double& x : shares) {
    x /= total;
  }
  return shares;
}

}  // namespace flowpool_bench
