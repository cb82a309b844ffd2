#include "fleet.hpp"

#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <thread>
#include <utility>

namespace flowpool_fleet {

const char* to_string(fault_kind kind) noexcept {
  switch (kind) {
    case fault_kind::none:
      return "none";
    case fault_kind::kill:
      return "kill";
    case fault_kind::fail500:
      return "fail500";
    case fault_kind::hang:
      return "hang";
  }
  return "?";
}

slot_connection::slot_connection(int port, const fleet_config& config)
    : m_client(std::make_unique<httplib::Client>("127.0.0.1", port)) {
  m_client->set_keep_alive(true);
  m_client->set_tcp_nodelay(true);
  m_client->set_connection_timeout(config.connect_timeout);
  m_client->set_read_timeout(config.read_timeout);
  m_client->set_write_timeout(config.read_timeout);
}

slot_connection::~slot_connection() = default;

int slot_connection::call(const fleet_request& r, std::uint32_t run) {
  const httplib::Result result = m_client->Get(work_target(run, r.id, r.service_us));
  if (!result) {
    return -static_cast<int>(result.error());
  }
  if (result->status != 200) {
    return result->status;
  }
  // The body is "<id> <server>": an answer for another id would be a broken connection reuse.
  std::uint64_t id = 0;
  const std::string& body = result->body;
  const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), id);
  (void)end;
  return ec == std::errc() && id == r.id ? 200 : -100;
}

attempt_failed::attempt_failed(int code)
    : std::runtime_error(code == 0 ? "transport error" : "HTTP " + std::to_string(code)), status(code) {}

run_context::run_context(const fleet_config& config, std::uint32_t run)
    : m_config(config),
      m_run(run),
      m_stream(config.scenario),
      m_attempts(config.scenario.slots()),
      m_ends(std::make_unique<std::atomic<std::uint8_t>[]>(config.scenario.budget)) {
  const std::size_t per_slot = 2 * config.scenario.budget / config.scenario.slots() + 64;
  for (auto& v : m_attempts) {
    v.reserve(per_slot);
  }
}

fleet_request run_context::wire(const flowpool_bench::request& r) const noexcept {
  return fleet_request{r.id, static_cast<std::uint64_t>(r.base_service.count() / 1000), 0, r.enqueued};
}

std::vector<fleet_request> run_context::initial_burst() {
  std::vector<fleet_request> out;
  for (const flowpool_bench::request& r : m_stream.initial_burst()) {
    out.push_back(wire(r));
  }
  return out;
}

void run_context::log_attempt(const attempt_event& e) noexcept {
  try {
    m_attempts[e.slot].push_back(e);
  } catch (...) {  // out of memory: the attempt is missing from the chart, nothing else
  }
}

std::optional<fleet_request> run_context::finish(std::uint64_t id, bool succeeded) noexcept {
  if (id < m_config.scenario.budget) {
    const auto end = static_cast<std::uint8_t>(succeeded ? request_end::succeeded : request_end::failed);
    std::uint8_t expected = static_cast<std::uint8_t>(request_end::pending);
    // relaxed: each id's cell is its own; the records are read after the design's join.
    if (!m_ends[id].compare_exchange_strong(expected, end, std::memory_order_relaxed)) {
      m_double_ends.fetch_add(1, std::memory_order_relaxed);
    }
  }
  m_finished.fetch_add(1, std::memory_order_relaxed);  // relaxed: progress for the fault plan only
  if (std::optional<flowpool_bench::request> next = m_stream.follow_up()) {
    return wire(*next);
  }
  return std::nullopt;
}

std::uint64_t run_context::finished() const noexcept {
  return m_finished.load(std::memory_order_relaxed);  // relaxed: a progress figure
}

void run_context::collect(fleet_result& out) {
  out.attempts.clear();
  for (auto& v : m_attempts) {
    out.attempts.insert(out.attempts.end(), v.begin(), v.end());
    v.clear();
  }
  out.ends.resize(m_config.scenario.budget);
  for (std::size_t i = 0; i < out.ends.size(); ++i) {
    out.ends[i] = static_cast<request_end>(m_ends[i].load(std::memory_order_relaxed));  // relaxed: after join
  }
  out.double_ends = m_double_ends.load(std::memory_order_relaxed);
}

void run_fault_plan(run_context& context, local_fleet& fleet, fleet_result& result,
                    const std::function<void(fleet_result&)>& sample) {
  const fleet_config& c = context.config();
  if (c.fault == fault_kind::none) {
    return;
  }
  const auto budget = static_cast<double>(c.scenario.budget);
  const auto fault_after = static_cast<std::uint64_t>(c.fault_at * budget);
  const auto heal_after = static_cast<std::uint64_t>(c.heal_at * budget);
  server_process& target = fleet[c.fault_server];
  const auto give_up = bench_clock::now() + std::chrono::seconds(120);
  bool faulted = false;
  // Polls about every millisecond: the plan needs no precise timing, and the driver thread's
  // wake-ups cost little next to S*K slot threads on sockets.
  while (bench_clock::now() < give_up) {
    const std::uint64_t done = context.finished();
    if (!faulted && done >= fault_after) {
      result.fault_time = bench_clock::now();
      if (c.fault == fault_kind::kill) {
        target.kill();
      } else {
        (void)target.set_mode(c.fault == fault_kind::fail500 ? server_mode::fail500 : server_mode::hang);
      }
      faulted = true;
    }
    if (faulted && done >= heal_after) {
      if (c.fault == fault_kind::kill) {
        target.restart();
      } else {
        (void)target.set_mode(server_mode::ok);
      }
      result.heal_time = bench_clock::now();
      if (sample) {
        sample(result);
      }
      return;
    }
    if (sample) {
      sample(result);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  result.error = "fault plan: the run did not reach its heal point within 120 s";
  if (c.fault == fault_kind::kill && !target.running()) {
    target.restart();
  } else if (c.fault != fault_kind::kill) {
    (void)target.set_mode(server_mode::ok);
  }
}

conservation check_conservation(const fleet_result& result, const std::vector<std::vector<log_line>>& logs) {
  conservation c;
  const std::size_t budget = result.ends.size();
  std::vector<std::uint32_t> served(budget, 0);
  for (const std::vector<log_line>& server : logs) {
    for (const log_line& l : server) {
      if (l.id >= budget) {
        ++c.stray;
        continue;
      }
      if (l.status == 200) {
        ++served[l.id];
      } else if (l.status == 503) {
        ++c.refused_503;
      }
    }
  }
  for (std::size_t id = 0; id < budget; ++id) {
    switch (result.ends[id]) {
      case request_end::pending:
        ++c.lost;
        break;
      case request_end::succeeded:
        ++c.succeeded;
        c.lost += served[id] == 0 ? 1 : 0;  // an answer no server logged
        break;
      case request_end::failed:
        ++c.failed;
        break;
    }
    c.duplicates += served[id] > 1 ? served[id] - 1 : 0;
  }
  for (const attempt_event& e : result.attempts) {
    c.driver_503 += e.status == 503 ? 1 : 0;
  }
  c.double_ends = result.double_ends;
  return c;
}

}  // namespace flowpool_fleet
