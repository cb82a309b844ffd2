// Design 1: the batch-then-wait baseline (batch_then_wait.hpp), S*K slot threads.
#include "batch_then_wait.hpp"
#include "designs.hpp"

#include <utility>

namespace flowpool_bench {

design_result run_batch_then_wait(const scenario_config& config) {
  design_result result;
  result.design = "batch_then_wait";
  result.config = config;
  request_stream stream{config};
  recorder out{config.budget};
  batch_then_wait<request>* self = nullptr;
  batch_then_wait<request> pool{
      batch_then_wait_options{.servers = config.servers, .slots_per_server = config.slots_per_server},
      [&](batch_slot where, request& r) {
        serve(r, where.server, where.slot, where.batch, stream, out,
              [&](const request& next) { (void)self->submit(next); });
      }};
  self = &pool;
  drive_queue_design(pool, stream, out, result);
  return result;
}

}  // namespace flowpool_bench
