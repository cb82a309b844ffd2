// The non-template part of flowpool::server_pool: option checks and thread names.
#include "flowpool/server_pool.hpp"

#include <stdexcept>
#include <string>

namespace flowpool::detail {
namespace {

void require_positive(std::size_t value, const char* field) {
  if (value == 0) {
    throw std::invalid_argument(std::string("flowpool::server_pool: options.") + field + " must be at least 1 (got 0)");
  }
}

}  // namespace

void validate_server_pool_options(const server_pool_options& options) {
  require_positive(options.servers, "servers");
  require_positive(options.slots_per_server, "slots_per_server");
  require_positive(options.queue_capacity, "queue_capacity");
  constexpr std::size_t k_max = server_pool_options::k_max_threads;
  // Divide instead of multiplying, so a product that overflows std::size_t is caught too.
  if (options.servers > k_max / options.slots_per_server) {
    throw std::invalid_argument("flowpool::server_pool: options.servers * options.slots_per_server must be at most " +
                                std::to_string(k_max) + " threads (got " + std::to_string(options.servers) + " * " +
                                std::to_string(options.slots_per_server) + ")");
  }
}

std::string server_pool_thread_name(const std::string& name, slot_id id) {
  return name + '-' + std::to_string(id.server) + '.' + std::to_string(id.slot);
}

}  // namespace flowpool::detail
