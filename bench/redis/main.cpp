// bench_redis_scaling: 1, 2 and 4 flowpool-redis-worker processes (5 servers x 2 slots each, 1 ms
// service time) share one stream on one local redis-server (unix socket). Prints entries/s, the
// ratio to the ideal (processes x slots / service time), and the source's Redis round trips per
// entry (reads, claims, acks; the handler's own HINCRBY is one more per entry, by design).
// Throughput is measured in steady state, between 10 % and 90 % of the entries done.
// Usage: bench_redis_scaling [--entries-per-process N] [--processes 1,2,4]
#include <redis_fixture.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using flowpool_test::child_process;
using flowpool_test::redis_client;
using flowpool_test::redis_server;

constexpr int k_slots_per_process = 5 * 2;
constexpr double k_service_ms = 1.0;

long long stat_value(const std::string& line, const std::string& key) {
  std::string needle(" ");  // built by appends: GCC 12 -O3 warns falsely (-Wrestrict) on " " + key + "="
  needle.append(key).append("=");
  const std::size_t at = line.find(needle);
  return at == std::string::npos ? -1 : std::stoll(line.substr(at + needle.size()));
}

struct result {
  int processes = 0;
  long long entries = 0;
  double seconds = 0;
  double per_second = 0;
  double ideal = 0;
  double round_trips_per_entry = 0;
  long long duplicates = 0;
};

result run(int processes, long long per_process) {
  redis_server server;
  redis_client c(server.socket());
  const long long total = per_process * processes;
  std::vector<std::vector<std::string>> batch;
  for (long long i = 0; i < total; ++i) {
    batch.push_back({"XADD", "jobs", "*", "id", std::to_string(i), "ms", "1"});
    if (batch.size() == 2000) {
      c.pipeline(batch);
      batch.clear();
    }
  }
  c.pipeline(batch);
  std::vector<std::string> stats_files;
  std::vector<std::unique_ptr<child_process>> workers;
  for (int p = 0; p < processes; ++p) {
    stats_files.push_back((std::filesystem::temp_directory_path() /
                           ("flowpool-bench-redis-" + std::to_string(getpid()) + "-" + std::to_string(p)))
                              .string());
    workers.push_back(std::make_unique<child_process>(
        std::vector<std::string>{FLOWPOOL_REDIS_WORKER, "--redis", server.endpoint(), "--stream", "jobs", "--group",
                                 "g", "--consumer", "w" + std::to_string(p), "--servers", "5", "--slots", "2",
                                 "--stats", "--quiet"},
        stats_files.back()));
  }
  const long long lo = total / 10;
  const long long hi = total - total / 10;
  std::chrono::steady_clock::time_point t_lo{};
  std::chrono::steady_clock::time_point t_hi{};
  const auto give_up = std::chrono::steady_clock::now() + 300s;
  for (;;) {
    const long long done = c.integer({"HLEN", "jobs:done"});
    const auto now = std::chrono::steady_clock::now();
    if (done >= lo && t_lo == std::chrono::steady_clock::time_point{}) {
      t_lo = now;
    }
    if (done >= hi) {
      t_hi = now;
      break;
    }
    if (now > give_up) {
      std::fprintf(stderr, "bench_redis_scaling: timed out at %lld of %lld\n", done, total);
      std::exit(1);
    }
    std::this_thread::sleep_for(1ms);
  }
  while (c.integer({"HLEN", "jobs:done"}) < total || c.pending("jobs", "g") != 0) {
    std::this_thread::sleep_for(2ms);
  }
  long long round_trips = 0;
  for (auto& w : workers) {
    w->signal(SIGTERM);
    w->wait_exit(30s);
  }
  for (const std::string& f : stats_files) {
    std::ifstream in(f);
    std::stringstream s;
    s << in.rdbuf();
    round_trips += std::max(0LL, stat_value(s.str(), "round_trips"));
    std::remove(f.c_str());
  }
  long long handled = 0;
  flowpool_test::reply vals = c.command({"HVALS", "jobs:done"});
  for (std::size_t i = 0; i < vals->elements; ++i) {
    handled += std::stoll(std::string(vals->element[i]->str, vals->element[i]->len));
  }
  result r;
  r.processes = processes;
  r.entries = total;
  r.seconds = std::chrono::duration<double>(t_hi - t_lo).count();
  r.per_second = static_cast<double>(hi - lo) / r.seconds;
  r.ideal = processes * k_slots_per_process * 1000.0 / k_service_ms;
  r.round_trips_per_entry = static_cast<double>(round_trips) / static_cast<double>(total);
  r.duplicates = handled - total;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  long long per_process = 20000;
  std::vector<int> counts{1, 2, 4};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--entries-per-process") {
      per_process = std::stoll(argv[i + 1]);
    } else if (flag == "--processes") {
      counts.clear();
      std::stringstream s(argv[i + 1]);
      std::string item;
      while (std::getline(s, item, ',')) {
        counts.push_back(std::stoi(item));
      }
    }
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::printf(
      "flowpool-redis-worker scaling: %d slots per process (5 servers x 2), %.0f ms per entry, one redis-server\n",
      k_slots_per_process, k_service_ms);
  std::printf(
      "| processes | entries | entries/s | ideal/s | ratio to ideal | source round trips/entry | duplicates |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const int p : counts) {
    const result r = run(p, per_process);
    std::printf("| %d | %lld | %.0f | %.0f | %.2f | %.3f | %lld |\n", r.processes, r.entries, r.per_second, r.ideal,
                r.per_second / r.ideal, r.round_trips_per_entry, r.duplicates);
    std::fflush(stdout);
  }
  return 0;
}
