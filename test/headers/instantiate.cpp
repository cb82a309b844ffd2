// Instantiates the public templates the way users do, so that the strict-warnings check
// (cmake/check_headers.cmake) sees their bodies too, not only the declarations. It is compiled
// with -fsyntax-only and never run.
#include <flowpool/flowpool.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace strict_check {

// A plain function as a server_pool handler (it decays to a pointer; the header's emptiness check
// must not draw -Waddress on it).
inline void plain_handler(flowpool::slot_id, int&) {}

struct request {
  int payload = 0;
};

int use_everything();  // declared first: -Wmissing-prototypes

int use_everything() {
  flowpool::bounded_queue<std::string> texts(4);
  (void)texts.put(std::string("a"));
  const std::string lvalue = "b";
  (void)texts.try_put(lvalue);
  (void)texts.try_put_for(std::string("c"), std::chrono::milliseconds(1));
  std::optional<std::string> got = texts.try_get_for(std::chrono::milliseconds(1));
  texts.task_done();
  (void)texts.join_for(std::chrono::milliseconds(1));
  std::vector<std::string> left = texts.shutdown_now();

  flowpool::bounded_queue<std::unique_ptr<int>> owned(2);
  (void)owned.put(std::make_unique<int>(1));
  std::optional<std::unique_ptr<int>> one = owned.get();

  flowpool::thread_pool pool{{.threads = 2, .queue_capacity = 16, .name = "strict"}};
  std::future<int> answer = pool.submit([](int x) { return x + 1; }, 41);
  pool.post([] {});
  const auto copied = [] {};
  pool.post(copied);
  (void)pool.try_post([] {});

  flowpool::task_group group(pool);
  std::atomic<std::uint64_t> total{0};
  group.run([&total] { total.fetch_add(1); });
  group.cancel();
  (void)group.is_canceling();
  group.wait();

  std::vector<double> values(100, 1.0);
  flowpool::parallel_for(pool, 0, values.size(), [&values](std::size_t i) { values[i] *= 2.0; });
  flowpool::parallel_for(pool, std::int64_t{-5}, std::int64_t{5}, [](std::int64_t) {});
  flowpool::parallel_for_blocked(pool, std::size_t{0}, values.size(), [&values](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) {
      values[i] += 1.0;
    }
  });
  const double sum = flowpool::parallel_reduce(
      pool, 0, values.size(), 0.0, [&values](std::size_t i) { return values[i]; },
      [](double a, double b) { return a + b; });
  flowpool::parallel_invoke(
      pool, [] {}, [] {});
  pool.wait_idle();
  (void)pool.wait_idle_for(std::chrono::milliseconds(1));

  flowpool::server_pool<request> servers(
      {.servers = 2, .slots_per_server = 1, .queue_capacity = 4, .name = "s"},
      [&total](flowpool::slot_id, request& r) { total.fetch_add(static_cast<std::uint64_t>(r.payload)); });
  (void)servers.submit(request{1});
  servers.join();

  // The fleet paths: per-slot state, the context handler, callbacks, deadlines, membership, stats.
  flowpool::server_pool_callbacks<request> callbacks;
  callbacks.on_failure = [&total](const flowpool::request_failure& f, request& r) {
    total.fetch_add(f.attempts + static_cast<std::uint64_t>(r.payload));
  };
  callbacks.on_expired = [&total](request&) { total.fetch_add(1); };
  flowpool::server_pool<request, std::unique_ptr<int>> fleet(
      {.servers = 1, .slots_per_server = 1, .max_attempts = 2, .eject_after = 1},
      [](flowpool::slot_id) { return std::make_unique<int>(0); },
      [](flowpool::slot_context<request, std::unique_ptr<int>>& ctx, request& r) {
        ++*ctx.state();
        if (r.payload < 0 && ctx.attempt() == 1) {
          throw flowpool::permanent_error("negative");
        }
      },
      std::move(callbacks));
  (void)fleet.submit(request{-1}, flowpool::queue_deadline::in(std::chrono::seconds(1)));
  (void)fleet.try_submit(request{2});
  (void)fleet.add_server(1);
  fleet.drain_server(1);
  fleet.join();
  flowpool::server_pool<int> by_function({.servers = 1, .slots_per_server = 1}, plain_handler);
  (void)by_function.submit(1);
  by_function.join();
  const std::size_t queued_now = by_function.queued();
  const flowpool::server_pool_stats fleet_stats = fleet.stats();
  const auto fleet_sum = fleet_stats.queue_wait.p99().count() + fleet_stats.total_handler_time().p50().count() +
                         static_cast<std::chrono::nanoseconds::rep>(fleet.server_count()) +
                         (fleet.state(0) == flowpool::server_state::serving ? 1 : 0) +
                         static_cast<std::chrono::nanoseconds::rep>(queued_now);

  return answer.get() + static_cast<int>(sum) + static_cast<int>(fleet_sum % 2) + static_cast<int>(left.size()) +
         (got ? 1 : 0) + (one ? 1 : 0);
}

}  // namespace strict_check
