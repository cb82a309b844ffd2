// flowpool-redis-worker processes against a real redis-server (test/support/redis_fixture.hpp):
// exactly once with one worker, a SIGKILLed worker among three, a Redis restart mid-stream.
#include <redis_fixture.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using flowpool_test::child_process;
using flowpool_test::poll_until;
using flowpool_test::redis_client;
using flowpool_test::redis_server;
using namespace std::chrono_literals;

void fill(redis_client& c, const std::string& stream, int from, int to, int ms) {
  std::vector<std::vector<std::string>> batch;
  for (int i = from; i < to; ++i) {
    batch.push_back({"XADD", stream, "*", "id", std::to_string(i), "ms", std::to_string(ms)});
    if (batch.size() == 1000) {
      c.pipeline(batch);
      batch.clear();
    }
  }
  c.pipeline(batch);
}

std::unique_ptr<child_process> start_worker(const redis_server& server, const std::string& consumer,
                                            const std::string& stats_file, long long claim_idle_ms = 30000,
                                            bool quiet = true) {
  std::vector<std::string> argv{FLOWPOOL_REDIS_WORKER,
                                "--redis",
                                server.endpoint(),
                                "--stream",
                                "jobs",
                                "--group",
                                "workers",
                                "--consumer",
                                consumer,
                                "--servers",
                                "5",
                                "--slots",
                                "2",
                                "--claim-idle-ms",
                                std::to_string(claim_idle_ms),
                                "--stats"};
  if (quiet) {
    argv.emplace_back("--quiet");
  }
  return std::make_unique<child_process>(argv, stats_file);
}

// The done counts of every id, from the hash HINCRBY wrote.
std::map<std::string, long long> done_counts(redis_client& c) {
  std::map<std::string, long long> out;
  flowpool_test::reply r = c.command({"HGETALL", "jobs:done"});
  for (std::size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
    out[std::string(r->element[i]->str, r->element[i]->len)] =
        std::stoll(std::string(r->element[i + 1]->str, r->element[i + 1]->len));
  }
  return out;
}

int exit_code(child_process& p) {
  const std::optional<int> status = p.wait_exit(30s);
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  return WEXITSTATUS(*status);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_file(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("flowpool-" + std::to_string(getpid()) + "-" + name)).string();
}

}  // namespace

TEST_SUITE("flowpool-redis-worker") {
  TEST_CASE("one worker handles 10,000 entries exactly once and exits 0 on SIGTERM" * doctest::timeout(120)) {
    redis_server server;
    redis_client c(server.socket());
    fill(c, "jobs", 0, 10000, 0);
    const std::string stats = temp_file("one.stats");
    auto worker = start_worker(server, "w1", stats);
    REQUIRE(poll_until([&] { return c.integer({"HLEN", "jobs:done"}) == 10000; }, 90s));
    REQUIRE(poll_until([&] { return c.pending("jobs", "workers") == 0; }, 20s));
    worker->signal(SIGTERM);
    CHECK(exit_code(*worker) == 0);
    const auto done = done_counts(c);
    CHECK(done.size() == 10000);
    long long total = 0;
    for (const auto& [id, n] : done) {
      total += n;
    }
    CHECK(total == 10000);  // exactly once: no duplicates without a crash
    CHECK(c.integer({"XLEN", "jobs:dead"}) == 0);
    const std::string s = read_file(stats);
    MESSAGE("worker: " << s);
    CHECK(s.find("acked=10000") != std::string::npos);
    std::remove(stats.c_str());
  }

  TEST_CASE("three workers share 30,000 entries; one is SIGKILLed mid-stream and nothing is lost" *
            doctest::timeout(180)) {
    redis_server server;
    redis_client c(server.socket());
    fill(c, "jobs", 0, 30000, 1);
    std::vector<std::string> stats{temp_file("k1.stats"), temp_file("k2.stats"), temp_file("k3.stats")};
    std::vector<std::unique_ptr<child_process>> workers;
    // The claim idle time is the one timing bound of this case: a living worker's entry held longer
    // than it is claimed and handled twice, and the killed worker's entries are claimed once idle that
    // long, so XPENDING below must run within it of the kill. At 1 s, a one-second stall of a worker or
    // of this thread (possible under TSan on a loaded 2-core machine) would break
    // `duplicates <= killed_pending`; 3 s triples that margin for about two seconds of test time.
    constexpr long long k_claim_idle_ms = 3000;
    for (int i = 0; i < 3; ++i) {
      workers.push_back(
          start_worker(server, "w" + std::to_string(i + 1), stats[static_cast<std::size_t>(i)], k_claim_idle_ms));
    }
    // Mid-stream: a third done, so every worker is busy.
    REQUIRE(poll_until([&] { return c.integer({"HLEN", "jobs:done"}) >= 10000; }, 120s));
    workers[1]->signal(SIGKILL);
    REQUIRE(workers[1]->wait_exit(10s).has_value());
    // What the dead worker had read and not acknowledged: the most it can be handled twice.
    flowpool_test::reply consumers = c.command({"XPENDING", "jobs", "workers", "-", "+", "100000", "w2"});
    const long long killed_pending =
        consumers->type == REDIS_REPLY_ARRAY ? static_cast<long long>(consumers->elements) : -1;
    REQUIRE(poll_until([&] { return c.integer({"HLEN", "jobs:done"}) == 30000; }, 120s));
    REQUIRE(poll_until([&] { return c.pending("jobs", "workers") == 0; }, 30s));
    workers[0]->signal(SIGTERM);
    workers[2]->signal(SIGTERM);
    CHECK(exit_code(*workers[0]) == 0);
    CHECK(exit_code(*workers[2]) == 0);
    const auto done = done_counts(c);
    CHECK(done.size() == 30000);
    long long total = 0;
    for (const auto& [id, n] : done) {
      CHECK(n >= 1);
      total += n;
    }
    const long long duplicates = total - 30000;
    MESSAGE("killed worker had " << killed_pending << " entries pending; duplicates: " << duplicates);
    MESSAGE("w1: " << read_file(stats[0]));
    MESSAGE("w3: " << read_file(stats[2]));
    CHECK(duplicates >= 0);
    CHECK(duplicates <= killed_pending);  // only the killed worker's unacknowledged entries run twice
    // What it held: at most queue + slots unfinished (30) plus the acknowledgements not yet sent.
    CHECK(killed_pending < 1000);
    for (const std::string& s : stats) {
      std::remove(s.c_str());
    }
  }

  TEST_CASE("redis-server SIGKILLed and restarted mid-stream: nothing is lost" * doctest::timeout(180)) {
    redis_server server(true);  // AOF, fsync always: what Redis acknowledged survives the kill
    {
      redis_client c(server.socket());
      fill(c, "jobs", 0, 5000, 1);
    }
    const std::string stats = temp_file("restart.stats");
    auto worker = start_worker(server, "w1", stats, 30000, false);  // its retried errors go to the test's log
    {
      redis_client c(server.socket());
      REQUIRE(poll_until([&] { return c.integer({"HLEN", "jobs:done"}) >= 1000; }, 60s));
    }
    server.kill();
    std::this_thread::sleep_for(200ms);  // the outage: the worker's commands fail meanwhile
    server.start();
    redis_client c(server.socket());
    REQUIRE(poll_until([&] { return c.integer({"HLEN", "jobs:done"}) == 5000; }, 120s));
    REQUIRE(poll_until([&] { return c.pending("jobs", "workers") == 0; }, 30s));
    worker->signal(SIGTERM);
    CHECK(exit_code(*worker) == 0);
    long long total = 0;
    for (const auto& [id, n] : done_counts(c)) {
      CHECK(n >= 1);
      total += n;
    }
    const std::string s = read_file(stats);
    MESSAGE("duplicates after the restart: " << total - 5000 << "; worker: " << s);
    CHECK(s.find("reconnects=0 ") == std::string::npos);  // it did lose and regain its connections
    CHECK(c.integer({"XLEN", "jobs:dead"}) == 0);
    std::remove(stats.c_str());
  }
}
