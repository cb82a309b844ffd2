// Integration test of issue 11: flowpool::server_pool in front of real HTTP server processes on
// loopback (bench/fleet: fleet_server, built on cpp-httplib). A short stream, checked from both
// ends: the driver's records against the servers' own logs. No timing assertions: phases are
// separated by join(), and every loop is bounded in count.
#include <doctest/doctest.h>

#include "fleet.hpp"
#include "server_process.hpp"

#include <flowpool/server_pool.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using namespace flowpool_fleet;
using namespace std::chrono_literals;

// Requests short enough for a sanitizer build, timeouts far beyond any plausible delay there.
fleet_config short_stream(std::size_t budget) {
  fleet_config c;
  c.scenario.servers = 3;
  c.scenario.slots_per_server = 2;
  c.scenario.burst = 30;
  c.scenario.budget = budget;
  c.scenario.min_ms = 0.2;
  c.scenario.max_ms = 0.6;
  c.connect_timeout = 2000ms;
  c.read_timeout = 10000ms;
  c.max_attempts = 3;
  c.eject_after = 2;
  c.eject_for = 20ms;
  c.max_eject_for = 40ms;  // as bench_fleet: one doubling, so a restarted server is back within 40 ms
  return c;
}

struct ignore_sigpipe {
  ignore_sigpipe() { std::signal(SIGPIPE, SIG_IGN); }  // a write to a killed server's socket
};
const ignore_sigpipe k_ignore_sigpipe;

// A server_pool with one keep-alive connection per slot, whose handler records each request's
// driver-side end (by id) so the test can compare it with the servers' logs.
struct fleet_pool {
  using pool_type = flowpool::server_pool<fleet_request, slot_connection>;

  fleet_pool(const fleet_config& config, const std::vector<int>& ports, std::uint32_t run, std::size_t ids)
      : ends(ids) {
    pool = std::make_unique<pool_type>(
        flowpool::server_pool_options{.servers = config.scenario.servers,
                                      .slots_per_server = config.scenario.slots_per_server,
                                      .name = "fleet-test",
                                      .max_attempts = config.max_attempts,
                                      .eject_after = config.eject_after,
                                      .eject_for = config.eject_for,
                                      .max_eject_for = config.max_eject_for},
        [&config, ports](flowpool::slot_id id) { return slot_connection(ports[id.server], config); },
        [this, run](pool_type::context_type& ctx, fleet_request& r) {
          hold(ctx.slot().server);
          const int status = ctx.state().call(r, run);
          if (status == 503) {
            driver_503.fetch_add(1);
          }
          if (status != 200) {
            throw attempt_failed(status);
          }
          ends[r.id].succeeded.fetch_add(1);
        },
        flowpool::server_pool_callbacks<fleet_request>{
            .on_failure = [this](const flowpool::request_failure&,
                                 fleet_request& r) { ends[r.id].failed.fetch_add(1); },
            .on_expired = {}});
  }

  // A failed check must not hang the test: hand back whatever is still queued (every server down
  // would keep it queued for good), so the destructor only waits for the attempts in flight.
  ~fleet_pool() { (void)pool->shutdown_now(); }
  fleet_pool(const fleet_pool&) = delete;
  fleet_pool& operator=(const fleet_pool&) = delete;

  // Ordering aid for the checks that need particular servers to get attempts; it checks nothing
  // itself. Until every server s has started need[s] attempts (counted from this call, which is made
  // while the pool is quiet), each attempt waits in its handler. Held slots take no requests, so the
  // others do: without it, a server whose slots a loaded machine happened not to schedule before the
  // others drained the queue (about 100 ms under TSan) got too few attempts to be ejected, or none.
  // A wait gives up after 20 s (and so do all later ones): the check that needed it then fails.
  void hold_until(std::vector<int> need) {
    const std::lock_guard<std::mutex> lock(m_hold_mutex);
    m_started.assign(need.size(), 0);
    m_need = std::move(need);
  }

  void submit_range(std::uint64_t from, std::uint64_t to) {
    for (std::uint64_t id = from; id < to; ++id) {
      REQUIRE(pool->submit(fleet_request{id, 200 + (id % 5) * 100, 0}));
    }
  }

  struct end_count {
    std::atomic<int> succeeded{0};
    std::atomic<int> failed{0};
  };
  std::vector<end_count> ends;
  std::atomic<int> driver_503{0};

 private:
  void hold(std::size_t server) {
    std::unique_lock<std::mutex> lock(m_hold_mutex);
    if (m_need.empty()) {
      return;
    }
    ++m_started.at(server);
    m_hold_cv.notify_all();
    const auto met = [this] {
      for (std::size_t s = 0; s < m_need.size(); ++s) {
        if (m_started[s] < m_need[s]) {
          return false;
        }
      }
      return true;
    };
    if (met() || !m_hold_cv.wait_for(lock, 20s, met)) {
      m_need.clear();  // met (every later attempt passes), or given up on
    }
  }

  std::mutex m_hold_mutex;
  std::condition_variable m_hold_cv;
  std::vector<int> m_need;     // m_hold_mutex
  std::vector<int> m_started;  // m_hold_mutex

 public:
  std::unique_ptr<pool_type> pool;  // declared last: destroyed (its slots joined) before what they use
};

// Conservation of ids [from, to) of run `run`: each succeeded exactly once on the driver, each
// logged with 200 by at least one server; counts the 503s and duplicates in the logs.
struct both_ends {
  std::size_t lost = 0;                // no driver end, a driver end twice, or a success no server logged
  std::size_t failed = 0;              // reported final failures
  std::size_t duplicates = 0;          // 200s logged beyond the first
  std::size_t refused = 0;             // 503s logged
  std::vector<std::size_t> served_by;  // 200s per server
};

both_ends check(const fleet_pool& p, const local_fleet& fleet, std::uint32_t run, std::uint64_t from,
                std::uint64_t to) {
  both_ends out;
  out.served_by.assign(fleet.size(), 0);
  std::vector<int> logged(p.ends.size(), 0);
  const std::vector<std::vector<log_line>> logs = fleet.logs(run);
  for (std::size_t s = 0; s < logs.size(); ++s) {
    for (const log_line& l : logs[s]) {
      REQUIRE(l.id < logged.size());
      if (l.status == 200) {
        ++logged[l.id];
        ++out.served_by[s];
      } else if (l.status == 503) {
        ++out.refused;
      }
    }
  }
  for (std::uint64_t id = from; id < to; ++id) {
    const int ok = p.ends[id].succeeded.load();
    const int failed = p.ends[id].failed.load();
    out.failed += failed == 1 && ok == 0 ? 1 : 0;
    out.lost += (ok + failed != 1 || (ok == 1 && logged[id] == 0)) ? 1 : 0;
    out.duplicates += logged[id] > 1 ? static_cast<std::size_t>(logged[id] - 1) : 0;
  }
  return out;
}

}  // namespace

TEST_SUITE("fleet (real HTTP servers on loopback)") {
  TEST_CASE("server_pool answers every request of a stream exactly once, and no server is ever asked beyond K" *
            doctest::timeout(60)) {
    const fleet_config config = short_stream(400);
    local_fleet fleet(default_server_program(), config.scenario.servers, config.scenario.slots_per_server);
    fleet_pool p(config, fleet.ports(), 1, 400);
    p.hold_until({1, 1, 1});  // so that every server takes part, whatever the scheduling
    p.submit_range(0, 400);
    REQUIRE(p.pool->join_for(60s));
    const both_ends b = check(p, fleet, 1, 0, 400);
    CHECK(b.lost == 0);
    CHECK(b.failed == 0);
    CHECK(b.duplicates == 0);
    CHECK(b.refused == 0);
    CHECK(p.driver_503.load() == 0);
    for (std::size_t s = 0; s < fleet.size(); ++s) {
      CHECK(b.served_by[s] > 0);  // every server took part
    }
  }

  TEST_CASE("the seeded stream with its follow-ups through the bench driver is conserved from both ends" *
            doctest::timeout(60)) {
    const fleet_config config = short_stream(300);
    local_fleet fleet(default_server_program(), config.scenario.servers, config.scenario.slots_per_server);
    const fleet_result r = run_fleet_server_pool(config, fleet, 7);
    const conservation c = check_conservation(r, fleet.logs(7));
    CHECK(r.error.empty());
    CHECK(c.ok());
    CHECK(c.succeeded == 300);
    CHECK(c.failed == 0);
    CHECK(c.lost == 0);
    CHECK(c.refused_503 == 0);
    CHECK(c.driver_503 == 0);
  }

  TEST_CASE("a server killed mid-stream loses no request; after its restart on the same port it serves again" *
            doctest::timeout(90)) {
    const fleet_config config = short_stream(0);
    local_fleet fleet(default_server_program(), config.scenario.servers, config.scenario.slots_per_server);
    constexpr std::uint64_t k_phase = 200;
    constexpr std::size_t k_rounds = 2000;  // bound on the recovery phase's rounds
    fleet_pool p(config, fleet.ports(), 1, 2 * k_phase + k_rounds * 10);
    // Phase 1: all three servers serve.
    p.submit_range(0, k_phase);
    REQUIRE(p.pool->join_for(60s));
    // Phase 2: server 1 is dead (SIGKILL). Its failed attempts are retried on the others.
    p.hold_until({0, 2, 0});  // server 1 gets the eject_after = 2 attempts that eject it
    fleet[1].kill();
    p.submit_range(k_phase, 2 * k_phase);
    REQUIRE(p.pool->join_for(60s));
    const flowpool::server_pool_stats during = p.pool->stats();
    CHECK(during.servers[1].ejections >= 1);
    CHECK(during.final_failures == 0);
    // Phase 3: server 1 starts again on its old port; rounds of requests until a probe finds it
    // back and it serves (bounded by count, not by time).
    p.hold_until({});
    fleet[1].restart();
    const std::uint64_t before = p.pool->stats().servers[1].succeeded();
    std::uint64_t next = 2 * k_phase;
    bool back = false;
    for (std::size_t round = 0; round < k_rounds && !back; ++round) {
      p.submit_range(next, next + 10);
      next += 10;
      REQUIRE(p.pool->join_for(60s));
      back = p.pool->stats().servers[1].succeeded() > before;
    }
    CHECK(back);
    CHECK(p.pool->stats().servers[1].state == flowpool::server_state::serving);
    const both_ends b = check(p, fleet, 1, 0, next);
    CHECK(b.lost == 0);
    CHECK(b.failed == 0);
    CHECK(b.refused == 0);
    CHECK(p.driver_503.load() == 0);
    CHECK(b.served_by[1] > 0);
  }

  TEST_CASE("a server answering 500 is ejected and its requests complete on the others" * doctest::timeout(60)) {
    const fleet_config config = short_stream(0);
    local_fleet fleet(default_server_program(), config.scenario.servers, config.scenario.slots_per_server);
    REQUIRE(fleet[0].set_mode(server_mode::fail500));
    fleet_pool p(config, fleet.ports(), 1, 300);
    p.hold_until({2, 0, 0});  // server 0 gets the eject_after = 2 attempts that eject it
    p.submit_range(0, 300);
    REQUIRE(p.pool->join_for(60s));
    const flowpool::server_pool_stats stats = p.pool->stats();
    CHECK(stats.servers[0].ejections >= 1);
    CHECK(stats.servers[0].succeeded() == 0);
    CHECK(stats.final_failures == 0);
    const both_ends b = check(p, fleet, 1, 0, 300);
    CHECK(b.lost == 0);
    CHECK(b.failed == 0);
    CHECK(b.served_by[0] == 0);
  }

  TEST_CASE("a server that hangs costs each attempt the read timeout, is ejected, and its requests complete elsewhere" *
            doctest::timeout(90)) {
    fleet_config config = short_stream(0);
    config.read_timeout = 300ms;  // each hung attempt ends here
    local_fleet fleet(default_server_program(), config.scenario.servers, config.scenario.slots_per_server);
    REQUIRE(fleet[2].set_mode(server_mode::hang));
    fleet_pool p(config, fleet.ports(), 1, 300);
    p.hold_until({0, 0, 2});  // both slots of server 2 hang on an attempt: two failures eject it
    p.submit_range(0, 300);
    REQUIRE(p.pool->join_for(60s));
    const flowpool::server_pool_stats stats = p.pool->stats();
    REQUIRE(fleet[2].set_mode(server_mode::ok));  // lets the hung handlers go
    CHECK(stats.servers[2].ejections >= 1);
    CHECK(stats.servers[2].succeeded() == 0);
    CHECK(stats.final_failures == 0);
    const both_ends b = check(p, fleet, 1, 0, 300);
    CHECK(b.lost == 0);
    CHECK(b.failed == 0);
    CHECK(b.duplicates == 0);  // a hung request is never served
    CHECK(b.refused == 0);
    CHECK(b.served_by[2] == 0);
  }

  TEST_CASE("the server processes die with their parent" * doctest::timeout(60)) {
    int report[2];
    REQUIRE(::pipe(report) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // The child: start a fleet, report its ports and log folder, then wait to be killed.
      ::close(report[0]);
      try {
        local_fleet fleet(default_server_program(), 2, 1);
        std::string line = fleet.dir();
        for (int port : fleet.ports()) {
          line += " " + std::to_string(port);
        }
        line += "\n";
        (void)!::write(report[1], line.data(), line.size());
        for (;;) {
          ::pause();
        }
      } catch (...) {
        ::_exit(1);
      }
    }
    ::close(report[1]);
    std::string line;
    char ch = 0;
    while (line.size() < 4096 && ::read(report[0], &ch, 1) == 1 && ch != '\n') {
      line += ch;
    }
    ::close(report[0]);
    ::kill(child, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    std::vector<std::string> words;
    std::string word;
    for (char c : line + " ") {
      if (c == ' ') {
        if (!word.empty()) {
          words.push_back(word);
        }
        word.clear();
      } else {
        word += c;
      }
    }
    REQUIRE(words.size() == 3);
    std::filesystem::remove_all(words[0]);  // the killed child could not
    for (std::size_t i = 1; i < words.size(); ++i) {
      const int port = std::stoi(words[i]);
      // The server gets SIGKILL when its parent dies; until the kernel has torn it down a connect
      // may still succeed, so try again for a while. Bounded by time, not by a count of tries: a
      // count of quick tries could run out before a loaded machine scheduled the dying server.
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      bool refused = false;
      while (!refused && std::chrono::steady_clock::now() < give_up) {
        httplib::Client client("127.0.0.1", port);
        client.set_connection_timeout(1s);
        refused = !client.Get("/");
        if (!refused) {
          std::this_thread::yield();
        }
      }
      CHECK(refused);
    }
  }
}
