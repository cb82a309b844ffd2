// A request stream on flowpool::server_pool: 3 servers with 2 slots each. Every slot keeps its own
// connection to its server; a handler may submit a follow-up request (that submit never blocks,
// even on a full queue), and join() waits for the follow-ups too.
#include <flowpool/server_pool.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <thread>

namespace {

// Stands in for a connection to one server. Each is used by exactly one slot thread, so it needs
// no lock. Server s answers in (s + 1) * 100 microseconds: server 2 is three times slower than 0.
struct connection {
  std::size_t server = 0;
  long sent = 0;

  void send(int payload) {
    ++sent;
    (void)payload;
    std::this_thread::sleep_for(std::chrono::microseconds(100 * (server + 1)));  // simulated I/O
  }
};

}  // namespace

int main() {
  constexpr std::size_t k_servers = 3;
  constexpr std::size_t k_slots = 2;
  std::array<std::array<connection, k_slots>, k_servers> connections{};
  for (std::size_t s = 0; s < k_servers; ++s) {
    for (connection& c : connections[s]) {
      c.server = s;
    }
  }

  //! [server_pool]
  struct request {
    int payload;
    int follow_ups;  // how many more requests this one leads to
  };
  std::atomic<long> sum{0};

  flowpool::server_pool<request> pool(
      {.servers = k_servers, .slots_per_server = k_slots, .queue_capacity = 8, .name = "example"},
      // The handler: called once per request, on the thread of slot `id`.
      [&](flowpool::slot_id id, request& r) {
        connections[id.server][id.slot].send(r.payload);  // this slot's connection: no lock needed
        sum.fetch_add(r.payload, std::memory_order_relaxed);
        if (r.follow_ups > 0) {
          // From a handler, submit() never blocks and ignores the capacity: a follow-up.
          (void)pool.submit(request{r.payload, r.follow_ups - 1});
        }
      });

  for (int i = 1; i <= 20; ++i) {
    if (!pool.submit(request{i, 4})) {  // blocks while 8 requests wait (backpressure)
      return 1;                         // only after a shutdown
    }
  }
  pool.join();  // the 20 requests and their 80 follow-ups have all been handled
  const flowpool::server_pool_stats stats = pool.stats();
  for (std::size_t s = 0; s < k_servers; ++s) {
    std::printf("server %zu handled %llu requests\n", s, static_cast<unsigned long long>(stats.servers[s].handled));
  }
  //! [server_pool]

  // join() made every handler call visible here, so the connections can be read without a lock.
  long sent = 0;
  for (const auto& server : connections) {
    for (const connection& c : server) {
      sent += c.sent;
    }
  }
  const bool ok =
      stats.total_handled() == 100 && stats.total_failed() == 0 && sent == 100 && sum.load() == 5L * (20 * 21 / 2);
  std::printf("handled %llu, sum %ld: %s\n", static_cast<unsigned long long>(stats.total_handled()), sum.load(),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
