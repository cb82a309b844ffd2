// Design 3: oneTBB. A tbb::task_arena of S*K slots (one reserved for the main thread, which joins
// the work in task_group::wait()), global_control raised so the arena gets its S*K-1 workers, and
// one task_group task per request; a follow-up is run() from inside the task that produced it.
// Server identity: tbb::this_task_arena::current_thread_index() is the thread's slot in the arena,
// 0 .. S*K-1 and stable while it is in the arena; server = index / K, slot = index % K.
#include "designs.hpp"

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <thread>

namespace flowpool_bench {
namespace {

struct tbb_run {
  const scenario_config& config;
  request_stream& stream;
  recorder& out;
  tbb::task_group& group;

  void spawn(request r) {
    group.run([this, r] {  // task_group runs a const callable, so serve a copy
      request mine = r;
      const int index = tbb::this_task_arena::current_thread_index();
      const auto i = index < 0 ? std::size_t{0} : static_cast<std::size_t>(index);
      serve(mine, i / config.slots_per_server, i % config.slots_per_server, 0, stream, out,
            [this](const request& next) { spawn(next); });
    });
  }
};

}  // namespace

design_result run_onetbb(const scenario_config& config) {
  design_result result;
  result.design = "onetbb";
  result.config = config;
  const std::size_t threads = config.slots();
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, threads);
  tbb::task_arena arena(static_cast<int>(threads), 1);
  // Warm-up outside the timed region: bring the arena's workers up (each blocks briefly so the
  // iterations spread over the threads).
  arena.execute([&] {
    tbb::parallel_for(std::size_t{0}, threads * 4,
                      [](std::size_t) { std::this_thread::sleep_for(std::chrono::microseconds(200)); });
  });
  request_stream stream{config};
  recorder out{config.budget};
  tbb::task_group group;
  tbb_run run{config, stream, out, group};
  const std::vector<request> burst = stream.initial_burst();
  arena.execute([&] {
    result.t0 = bench_clock::now();
    for (request r : burst) {
      r.enqueued = bench_clock::now();
      run.spawn(r);
    }
    group.wait();
    result.makespan = bench_clock::now() - result.t0;
  });
  result.error = out.check();
  result.records = out.take();
  return result;
}

}  // namespace flowpool_bench
