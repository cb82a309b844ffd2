#include "designs.hpp"

#include <array>

namespace flowpool_bench {

std::span<const design> all_designs() noexcept {
  static constexpr std::array k_designs{
      design{"batch_then_wait", "K slot threads per server; the thread's own (server, slot)", &run_batch_then_wait},
      design{"server_pool", "the slot_id that flowpool::server_pool passes to the handler", &run_server_pool},
      design{"onetbb", "tbb::this_task_arena::current_thread_index(): server = index / K, slot = index % K",
             &run_onetbb},
      design{"thread_pool", "flowpool::thread_pool::this_worker_index(): server = index / K, slot = index % K",
             &run_thread_pool},
  };
  return k_designs;
}

}  // namespace flowpool_bench
