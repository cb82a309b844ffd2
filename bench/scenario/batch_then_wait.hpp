// The batch-then-wait baseline of issue 3, the design server_pool replaces: each server takes up
// to K requests from one shared flowpool::bounded_queue, hands one to each of its K slots, waits
// until all K are done, and only then takes the next batch. A slot that finishes early idles until
// its slowest batch-mate ends; that idle time is what the scenario measures.
//
// Mechanics: each server has K slot threads and a std::barrier of K. The barrier's completion step
// (run by the last slot to arrive, while the other K-1 wait) fetches the next batch: a blocking
// get() for the first request, then try_get() for up to K-1 more, so a batch may be partial when
// the queue runs low. The slots then each serve their request (if any) and arrive again.
// Termination: once the queue is shut down and empty, get() returns nullopt, the completion step
// marks the server done and its K slots leave their loops.
#pragma once

#include <flowpool/bounded_queue.hpp>

#include <atomic>
#include <barrier>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace flowpool_bench {

/// Construction parameters of batch_then_wait (the same fields as flowpool::server_pool_options).
struct batch_then_wait_options {
  std::size_t servers = 5;            ///< S
  std::size_t slots_per_server = 2;   ///< K: one thread per slot, S*K threads
  std::size_t queue_capacity = 1024;  ///< outside submit() blocks while this many are queued
};

/// Where a request runs under batch-then-wait.
struct batch_slot {
  std::size_t server;   ///< 0 .. S-1
  std::size_t slot;     ///< 0 .. K-1
  std::uint64_t batch;  ///< 1, 2, ... per server: the requests of one batch share this number
};

/// The batch-then-wait baseline. Thread-safe like server_pool: submit()/join()/shutdown() from any
/// thread; submit() from inside a handler never blocks (force_put), so follow-ups never deadlock.
/// Memory ordering: a submit() happens-before the handler call that receives the request; every
/// handler call of batch n of a server happens-before every handler call of its batch n+1 (the
/// barrier); every handler call happens-before the return of a join() that it helped release.
template <class Request>
class batch_then_wait {
 public:
  /// The request handler: runs on the slot's thread. An exception is caught and counted (failed()).
  using handler_type = std::function<void(batch_slot, Request&)>;

  /// Starts S*K threads. @throws std::invalid_argument for 0 servers, slots or capacity;
  /// std::system_error if a thread cannot start (the started ones are stopped and joined first).
  batch_then_wait(batch_then_wait_options options, handler_type handler)
      : m_options(checked(options)), m_handler(std::move(handler)), m_queue(options.queue_capacity) {
    m_servers.reserve(m_options.servers);
    for (std::size_t s = 0; s < m_options.servers; ++s) {
      m_servers.push_back(std::make_unique<server>(*this, s));
    }
    m_threads.reserve(m_options.servers * m_options.slots_per_server);
    std::size_t server_index = 0;
    std::size_t started = 0;  // slots started in m_servers[server_index]
    try {
      for (; server_index < m_options.servers; ++server_index) {
        for (started = 0; started < m_options.slots_per_server; ++started) {
          m_threads.emplace_back([this, server_index, slot = started] { run_slot(*m_servers[server_index], slot); });
        }
      }
    } catch (...) {
      // The missing slots of the partly started server drop out of its barrier, so its started
      // slots can complete a phase; the completion step then finds the queue shut down and empty.
      m_queue.shutdown();
      for (std::size_t slot = started; slot < m_options.slots_per_server; ++slot) {
        (void)m_servers[server_index]->m_barrier.arrive_and_drop();
      }
      join_threads();
      throw;
    }
  }

  batch_then_wait(const batch_then_wait&) = delete;
  batch_then_wait& operator=(const batch_then_wait&) = delete;

  /// Graceful: every accepted request is still served, then the threads join.
  ~batch_then_wait() {
    m_queue.shutdown();
    join_threads();
  }

  /// Queues `r`. From a handler of this pool: never blocks (the queue may exceed its capacity).
  /// Elsewhere: blocks while the queue is full. @return false once shut down (`r` untouched).
  [[nodiscard]] bool submit(Request&& r) {
    if (t_current == this) {
      return m_queue.force_put(std::move(r));
    }
    return m_queue.put(std::move(r));
  }

  /// As submit(Request&&), with a copy of `r`.
  [[nodiscard]] bool submit(const Request& r) {
    Request copy(r);
    return submit(std::move(copy));
  }

  /// Blocks until every submitted request, follow-ups included, has been served.
  void join() noexcept { m_queue.join(); }

  /// No new requests; queued ones are still served, then the slot threads end.
  void shutdown() noexcept { m_queue.shutdown(); }

  /// @return handler calls that threw.
  [[nodiscard]] std::uint64_t failed() const noexcept {
    return m_failed.load(std::memory_order_relaxed);  // relaxed: a statistic
  }

  /// @return the options the pool was built with.
  [[nodiscard]] const batch_then_wait_options& options() const noexcept { return m_options; }

 private:
  struct server;

  // std::barrier needs a nothrow-invocable completion type.
  struct fetch_step {
    server* m_server;
    void operator()() noexcept { m_server->m_owner.fetch_batch(*m_server); }
  };

  struct server {
    server(batch_then_wait& owner, std::size_t index)
        : m_owner(owner),
          m_index(index),
          m_batch(owner.m_options.slots_per_server),
          m_barrier(static_cast<std::ptrdiff_t>(owner.m_options.slots_per_server), fetch_step{this}) {}

    batch_then_wait& m_owner;
    const std::size_t m_index;
    // Written by the completion step, read by the slots after the barrier; the barrier phase
    // orders the two (the completion step happens-before every arrive_and_wait() return).
    std::vector<std::optional<Request>> m_batch;
    std::uint64_t m_batch_number = 0;
    bool m_done = false;
    std::barrier<fetch_step> m_barrier;
  };

  static const batch_then_wait_options& checked(const batch_then_wait_options& options) {
    if (options.servers == 0) {
      throw std::invalid_argument("batch_then_wait: servers must be at least 1 (got 0)");
    }
    if (options.slots_per_server == 0) {
      throw std::invalid_argument("batch_then_wait: slots_per_server must be at least 1 (got 0)");
    }
    if (options.queue_capacity == 0) {
      throw std::invalid_argument("batch_then_wait: queue_capacity must be at least 1 (got 0)");
    }
    return options;
  }

  // The barrier's completion step: every slot of `s` has finished the previous batch.
  void fetch_batch(server& s) noexcept {
    std::optional<Request> first = m_queue.get();  // blocks: the K slots of s are all idle now
    if (!first) {
      s.m_done = true;
      return;
    }
    s.m_batch[0] = std::move(first);
    for (std::size_t i = 1; i < s.m_batch.size(); ++i) {
      s.m_batch[i] = m_queue.try_get();
      if (!s.m_batch[i]) {
        break;
      }
    }
    ++s.m_batch_number;
  }

  void run_slot(server& s, std::size_t slot) {
    for (;;) {
      s.m_barrier.arrive_and_wait();
      if (s.m_done) {
        return;
      }
      std::optional<Request>& item = s.m_batch[slot];
      if (!item) {
        continue;  // a partial batch: this slot idles until the batch ends
      }
      t_current = this;
      try {
        m_handler(batch_slot{s.m_index, slot, s.m_batch_number}, *item);
      } catch (...) {
        m_failed.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
      }
      t_current = nullptr;
      item.reset();
      m_queue.task_done();
    }
  }

  void join_threads() noexcept {
    for (std::thread& t : m_threads) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  static inline thread_local const batch_then_wait* t_current = nullptr;

  batch_then_wait_options m_options;
  handler_type m_handler;
  flowpool::bounded_queue<Request> m_queue;
  std::vector<std::unique_ptr<server>> m_servers;
  std::vector<std::thread> m_threads;
  std::atomic<std::uint64_t> m_failed{0};
};

}  // namespace flowpool_bench
