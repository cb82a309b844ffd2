// Design 2: flowpool::server_pool, S servers x K slots on one shared bounded queue; a slot that
// finishes takes the next request at once. Server identity: the slot_id the pool passes to the
// handler. Follow-ups are submitted from the handler (never blocks, never lost).
#include "designs.hpp"

#include <flowpool/server_pool.hpp>

#include <utility>

namespace flowpool_bench {

design_result run_server_pool(const scenario_config& config) {
  design_result result;
  result.design = "server_pool";
  result.config = config;
  request_stream stream{config};
  recorder out{config.budget};
  flowpool::server_pool<request>* self = nullptr;
  flowpool::server_pool<request> pool{
      flowpool::server_pool_options{
          .servers = config.servers, .slots_per_server = config.slots_per_server, .name = "scenario"},
      [&](flowpool::slot_id where, request& r) {
        serve(r, where.server, where.slot, 0, stream, out, [&](const request& next) { (void)self->submit(next); });
      }};
  self = &pool;
  drive_queue_design(pool, stream, out, result);
  return result;
}

}  // namespace flowpool_bench
