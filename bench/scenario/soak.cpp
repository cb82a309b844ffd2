#include "soak.hpp"

#include "process_stats.hpp"
#include "results.hpp"

#include <flowpool/server_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <stdexcept>
#include <thread>

namespace flowpool_bench {
namespace {

constexpr std::uint64_t k_fault_every = 1000;  // request ids k*1000 + 999 throw

bool injected_fault(std::uint64_t id) noexcept {
  return id % k_fault_every == k_fault_every - 1;
}

std::string mib(std::size_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buffer;
}

}  // namespace

int run_soak(const scenario_config& base, double seconds, std::ostream& out) {
  scenario_config config = base;
  config.budget = 0;  // unlimited: the clock ends the stream
  request_stream stream{config};
  std::atomic<std::uint64_t> handled{0};
  flowpool::server_pool<request>* self = nullptr;
  flowpool::server_pool<request> pool{
      flowpool::server_pool_options{
          .servers = config.servers, .slots_per_server = config.slots_per_server, .name = "soak"},
      [&](flowpool::slot_id where, request& r) {
        tighten_timer_slack();
        std::this_thread::sleep_for(stream.service_time(r, where.server));
        if (std::optional<request> next = stream.follow_up()) {
          (void)self->submit(*next);
        }
        handled.fetch_add(1, std::memory_order_relaxed);  // relaxed: a tally read after join()
        if (injected_fault(r.id)) {
          throw std::runtime_error("injected fault");
        }
      }};
  self = &pool;
  const std::size_t rss_start = resident_bytes();
  std::size_t rss_max = rss_start;
  std::size_t rss_warm = 0;  // at the first progress report: queue and buffers have reached their size
  out << "soak: server_pool, " << config.servers << " servers x " << config.slots_per_server << " slots, "
      << config.burst << " requests in flight, " << to_string(config.model) << " service, " << seconds
      << " s; one request in " << k_fault_every << " throws\n";
  out << "  RSS at start: " << mib(rss_start) << "\n" << std::flush;
  const auto t0 = bench_clock::now();
  const auto deadline = t0 + std::chrono::duration_cast<bench_clock::duration>(std::chrono::duration<double>(seconds));
  for (request r : stream.initial_burst()) {
    r.enqueued = bench_clock::now();
    (void)pool.submit(r);
  }
  const auto report_every = std::chrono::duration<double>(seconds >= 50 ? seconds / 10 : 5.0);
  auto next_report = t0 + std::chrono::duration_cast<bench_clock::duration>(report_every);
  while (bench_clock::now() < deadline) {
    std::this_thread::sleep_until(std::min(deadline, next_report));
    rss_max = std::max(rss_max, resident_bytes());
    if (bench_clock::now() >= next_report && bench_clock::now() < deadline) {
      const double elapsed = std::chrono::duration<double>(bench_clock::now() - t0).count();
      const flowpool::server_pool_stats stats = pool.stats();
      if (rss_warm == 0) {
        rss_warm = resident_bytes();
      }
      out << "  " << static_cast<int>(elapsed) << " s: handled " << stats.total_handled() << ", failed "
          << stats.total_failed() << ", queue high water " << stats.queue_high_water_mark << ", RSS "
          << mib(resident_bytes()) << "\n"
          << std::flush;
      next_report += std::chrono::duration_cast<bench_clock::duration>(report_every);
    }
  }
  stream.stop();
  pool.join();
  const double elapsed = std::chrono::duration<double>(bench_clock::now() - t0).count();
  const std::size_t rss_end = resident_bytes();
  rss_max = std::max(rss_max, rss_end);
  const flowpool::server_pool_stats stats = pool.stats();
  const std::uint64_t issued = stream.issued();
  std::uint64_t expected_failures = 0;
  for (std::uint64_t id = 0; id < issued; ++id) {
    expected_failures += injected_fault(id) ? 1 : 0;
  }
  const bool conserved = stats.total_handled() == issued && handled.load(std::memory_order_relaxed) == issued;
  const bool failures_ok = stats.total_failed() == expected_failures;
  out << "  ran " << elapsed << " s: requests issued " << issued << ", handled " << stats.total_handled() << " ("
      << static_cast<double>(issued) / elapsed << " req/s), failures " << stats.total_failed() << " (injected "
      << expected_failures << ")\n";
  out << "  max queue depth " << stats.queue_high_water_mark << " (capacity " << pool.options().queue_capacity << ")\n";
  auto drift = [](std::size_t from, std::size_t to) {
    std::string text(1, to >= from ? '+' : '-');
    text += mib(to >= from ? to - from : from - to);
    return text;
  };
  out << "  RSS at start " << mib(rss_start) << ", at end " << mib(rss_end) << ", max " << mib(rss_max) << ", drift "
      << drift(rss_start, rss_end);
  if (rss_warm != 0) {
    out << "; at the first report " << mib(rss_warm) << ", drift since then " << drift(rss_warm, rss_end);
  }
  out << "\n";
  out << "  " << (conserved ? "PASS" : "FAIL") << "  requests handled = requests issued (none lost, none extra)\n";
  out << "  " << (failures_ok ? "PASS" : "FAIL") << "  failures counted = faults injected\n";
  return conserved && failures_ok ? 0 : 1;
}

}  // namespace flowpool_bench
