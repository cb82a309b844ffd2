// A flaky fleet on flowpool::server_pool: 4 servers with 2 slots each, every slot with its own
// connection (per-slot state, built on the slot's thread). Server 1 fails every call: its requests
// are retried on other servers, and after 3 failures in a row it is ejected (its slots sleep)
// until a probe succeeds. A request that can never succeed throws permanent_error and goes to
// on_failure, with the request, without a retry. Nothing is lost: every request succeeds or is
// reported.
#include <flowpool/server_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// Stands in for a keep-alive connection to one server; used by exactly one slot thread.
class connection {
 public:
  explicit connection(flowpool::slot_id id) : m_server(id.server) {}
  connection(const connection&) = delete;  // a real connection is not copyable
  connection& operator=(const connection&) = delete;

  std::string call(int payload) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // simulated round trip
    if (m_server == 1) {
      throw std::runtime_error("server 1: connection reset");  // a server that is down
    }
    return "answer " + std::to_string(payload);
  }

 private:
  std::size_t m_server;
};

}  // namespace

int main() {
  //! [flaky_fleet]
  struct request {
    int payload;
  };
  std::atomic<int> answered{0};
  std::vector<int> dead_letters;  // written only by on_failure; read after join()
  std::mutex dead_mutex;

  flowpool::server_pool_callbacks<request> callbacks;
  callbacks.on_failure = [&](const flowpool::request_failure& failure, request& r) {
    const std::lock_guard<std::mutex> lock(dead_mutex);
    dead_letters.push_back(r.payload);  // the request itself, before it is destroyed
    (void)failure.reason;               // attempts_exhausted, permanent_error, retry_budget, ...
  };

  flowpool::server_pool<request, connection> pool(
      {.servers = 4,
       .slots_per_server = 2,
       .name = "fleet",
       .max_attempts = 3,                                   // a request is tried at most 3 times, on other servers
       .eject_after = 3,                                    // 3 failures in a row eject a server...
       .eject_for = std::chrono::seconds(1)},               // ...for 1 s, doubling while its probes fail
      [](flowpool::slot_id id) { return connection(id); },  // one connection per slot, on its thread
      [&](flowpool::slot_context<request, connection>& ctx, request& r) {
        if (r.payload % 50 == 0) {
          throw flowpool::permanent_error("payload rejected");  // never retried
        }
        (void)ctx.state().call(r.payload);  // this slot's own connection: no lock needed
        answered.fetch_add(1, std::memory_order_relaxed);
      },
      std::move(callbacks));

  for (int i = 1; i <= 200; ++i) {
    if (!pool.submit(request{i})) {
      return 1;  // only after a shutdown
    }
  }
  pool.join();  // every request has succeeded or been reported
  const flowpool::server_pool_stats stats = pool.stats();
  std::printf("answered %d, failed for good %zu, server 1: %s after %llu attempts, %llu retries in all\n",
              answered.load(), dead_letters.size(), flowpool::to_string(stats.servers[1].state),
              static_cast<unsigned long long>(stats.servers[1].handled),
              static_cast<unsigned long long>(stats.total_retried()));
  //! [flaky_fleet]

  // 4 payloads (50, 100, 150, 200) are rejected; everything else is answered by servers 0, 2, 3.
  const bool ok = answered.load() == 196 && dead_letters.size() == 4 && stats.succeeded == 196 &&
                  stats.final_failures == 4 && stats.servers[1].state == flowpool::server_state::ejected &&
                  stats.servers[1].ejections >= 1 && stats.accepted == 200;
  std::printf("%s\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
