// The fleet comparison (issue 11): the scenario's seeded request stream (bench/scenario/stream.hpp)
// served by real HTTP server processes on loopback, through batch-then-wait, flowpool::server_pool
// and flowpool::thread_pool. This header holds what every design shares: the configuration and
// fault plan, the wire request, one slot's keep-alive connection, the run's records, the fault
// plan's runner and the conservation check that compares the driver's records with the servers' logs.
#pragma once

#include "protocol.hpp"
#include "server_process.hpp"
#include "stream.hpp"

#include <flowpool/server_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace httplib {
class Client;
}

namespace flowpool_fleet {

using flowpool_bench::bench_clock;

/// What happens to the fault server during a run.
enum class fault_kind {
  none,     ///< a healthy run
  kill,     ///< SIGKILL at fault_at, restarted on the same port at heal_at
  fail500,  ///< answers 500 from fault_at to heal_at
  hang,     ///< never answers from fault_at to heal_at (each request costs the client its read timeout)
};

/// @return "none", "kill", "fail500" or "hang".
const char* to_string(fault_kind kind) noexcept;

/// One fleet run's configuration: the scenario, the client's timeouts, the retry policy every
/// design uses, server_pool's ejection settings and the fault plan.
struct fleet_config {
  flowpool_bench::scenario_config scenario;        ///< S, K, burst, budget, service model, seed
  std::chrono::milliseconds connect_timeout{200};  ///< per connection attempt
  std::chrono::milliseconds read_timeout{500};     ///< per request, well above the longest service time
  std::size_t max_attempts = 3;                    ///< server_pool: total tries per request
  /// batch-then-wait and thread_pool: total tries per request. Their natural retry resubmits a
  /// failed request until it succeeds; this only bounds it (a request past it is a final failure).
  std::size_t baseline_max_attempts = 1000;
  std::size_t eject_after = 3;                   ///< server_pool: consecutive failures that eject a server
  std::chrono::milliseconds eject_for{100};      ///< server_pool: first ejection (doubles, up to max_eject_for)
  std::chrono::milliseconds max_eject_for{200};  ///< server_pool: the longest ejection (0: 32 * eject_for)
  fault_kind fault = fault_kind::none;           ///< the fault plan
  std::size_t fault_server = 2;                  ///< which server it hits
  double fault_at = 0.2;                         ///< share of the budget completed when it starts
  double heal_at = 0.6;                          ///< ... and when it ends (restart for kill)
};

/// A request as the fleet designs pass it around.
struct fleet_request {
  std::uint64_t id = 0;
  std::uint64_t service_us = 0;        ///< the drawn service time the server sleeps
  std::uint32_t attempts = 0;          ///< attempts made so far (batch-then-wait and thread_pool count here)
  bench_clock::time_point enqueued{};  ///< when it was handed to the design (its first attempt's queue wait starts)
};

/// One attempt, as the client saw it.
struct attempt_event {
  std::uint64_t id = 0;
  std::uint32_t server = 0;
  std::uint32_t slot = 0;     ///< server * K + slot
  std::uint32_t attempt = 0;  ///< 1-based
  int status = 0;             ///< HTTP status, 0 for a transport error (refused, reset, timeout)
  bench_clock::time_point start{};
  bench_clock::time_point end{};
  bench_clock::time_point enqueued{};  ///< the request's, so a first attempt's queue wait is start - enqueued
};

/// How a request ended on the driver's side.
enum class request_end : std::uint8_t { pending, succeeded, failed };

/// One slot's keep-alive HTTP connection to its server (cpp-httplib Client), with the run's
/// connect and read timeouts. Used by one thread at a time. A broken connection (the server was
/// killed) is reopened by the client on the next call.
class slot_connection {
 public:
  slot_connection(int port, const fleet_config& config);
  ~slot_connection();
  slot_connection(const slot_connection&) = delete;
  slot_connection& operator=(const slot_connection&) = delete;

  /// Sends request `r` of run `run`. @return the HTTP status (200 only if the body names `r.id`),
  /// or 0 for a transport error.
  int call(const fleet_request& r, std::uint32_t run);

 private:
  std::unique_ptr<httplib::Client> m_client;
};

/// Thrown by a design's handler for a failed attempt (so server_pool retries it).
struct attempt_failed : std::runtime_error {
  explicit attempt_failed(int status);
  int status;
};

/// What the fault plan saw of server_pool's fault server (sampled while the run lasts).
struct state_sample {
  bench_clock::time_point at{};
  flowpool::server_state state = flowpool::server_state::serving;
  std::uint64_t ejections = 0;
  std::chrono::nanoseconds last_ejection{0};  ///< the length of its latest ejection (server_stats)
};

/// One design's run: the driver's records and the fault plan's timeline.
struct fleet_result {
  std::string design;
  fleet_config config;
  std::uint32_t run = 0;                              ///< the tag in the servers' logs
  bench_clock::time_point t0{};                       ///< just before the first submit
  std::chrono::nanoseconds makespan{};                ///< t0 to the design's join
  std::vector<attempt_event> attempts;                ///< every attempt, by slot then time
  std::vector<request_end> ends;                      ///< by id
  std::uint64_t double_ends = 0;                      ///< ids that ended twice on the driver's side (a bug)
  std::optional<bench_clock::time_point> fault_time;  ///< when the fault started
  std::optional<bench_clock::time_point> heal_time;   ///< when it ended (the restart)
  std::vector<state_sample> samples;                  ///< server_pool only
  std::uint64_t ejections = 0;                        ///< server_pool: the fault server's ejections
  std::string error;                                  ///< a driver failure ("" if none)
};

/// The shared state of one run: the stream, the per-slot attempt logs, the request ends.
class run_context {
 public:
  run_context(const fleet_config& config, std::uint32_t run);
  run_context(const run_context&) = delete;
  run_context& operator=(const run_context&) = delete;

  [[nodiscard]] const fleet_config& config() const noexcept { return m_config; }
  [[nodiscard]] std::uint32_t run() const noexcept { return m_run; }
  /// @return the initial burst.
  [[nodiscard]] std::vector<fleet_request> initial_burst();
  /// Logs an attempt; slot `slot` must only ever be logged from one thread at a time.
  void log_attempt(const attempt_event& e) noexcept;
  /// Ends request `id` (success or final failure) and @return its follow-up, if the budget allows.
  [[nodiscard]] std::optional<fleet_request> finish(std::uint64_t id, bool succeeded) noexcept;
  /// @return requests ended so far. Any thread.
  [[nodiscard]] std::uint64_t finished() const noexcept;
  /// Moves the records into `out`. After the design's join.
  void collect(fleet_result& out);

 private:
  fleet_request wire(const flowpool_bench::request& r) const noexcept;

  fleet_config m_config;
  std::uint32_t m_run;
  flowpool_bench::request_stream m_stream;
  std::vector<std::vector<attempt_event>> m_attempts;  // by slot, single writer each
  std::unique_ptr<std::atomic<std::uint8_t>[]> m_ends;
  std::atomic<std::uint64_t> m_finished{0};
  std::atomic<std::uint64_t> m_double_ends{0};
};

/// Runs the fault plan on the calling thread (which must be the thread that started the fleet)
/// while a design serves: waits for fault_at of the budget, applies the fault, waits for heal_at,
/// heals, then returns; calls `sample` about every millisecond meanwhile (server_pool's state).
/// Bounded: gives up after 120 s. No-op for a healthy run.
void run_fault_plan(run_context& context, local_fleet& fleet, fleet_result& result,
                    const std::function<void(fleet_result&)>& sample);

/// Conservation, from both ends.
struct conservation {
  std::uint64_t succeeded = 0;    ///< driver: requests answered 200
  std::uint64_t failed = 0;       ///< driver: reported final failures
  std::uint64_t lost = 0;         ///< never ended on the driver, or a driver success no server logged
  std::uint64_t duplicates = 0;   ///< server logs: 200 answers beyond the first per id
  std::uint64_t refused_503 = 0;  ///< server logs: 503 answers (over K)
  std::uint64_t driver_503 = 0;   ///< driver: attempts that got 503 (cross-check)
  std::uint64_t stray = 0;        ///< server log lines with an id outside the budget
  std::uint64_t double_ends = 0;  ///< driver ids that ended twice
  [[nodiscard]] bool ok() const noexcept { return lost == 0 && stray == 0 && double_ends == 0; }
};

/// @return the conservation check of `result` against the servers' logs of its run.
conservation check_conservation(const fleet_result& result, const std::vector<std::vector<log_line>>& logs);

/// The designs.
fleet_result run_fleet_batch_then_wait(const fleet_config& config, local_fleet& fleet, std::uint32_t run);
fleet_result run_fleet_server_pool(const fleet_config& config, local_fleet& fleet, std::uint32_t run);
fleet_result run_fleet_thread_pool(const fleet_config& config, local_fleet& fleet, std::uint32_t run);

}  // namespace flowpool_fleet
