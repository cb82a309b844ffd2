// flowpool::parallel_for_blocked: body(b, e) on sub-ranges that cover [first, last) exactly
// once. The inner loop is a plain for loop, so it can keep state (here a running maximum) per
// piece and the compiler can vectorise it.
#include <flowpool/parallel_for.hpp>
#include <flowpool/thread_pool.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <vector>

int main() {
  flowpool::thread_pool pool(2);

  //! [parallel_for_blocked]
  std::vector<float> in(1 << 20);
  std::vector<float> out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<float>(i % 1000);
  }
  std::atomic<float> largest{0.0F};
  flowpool::parallel_for_blocked(pool, 0, in.size(), [&](std::size_t b, std::size_t e) {
    float piece_max = 0.0F;  // per piece: no sharing inside the loop
    for (std::size_t i = b; i != e; ++i) {
      out[i] = std::sqrt(in[i]);
      piece_max = std::max(piece_max, out[i]);
    }
    float seen = largest.load(std::memory_order_relaxed);  // relaxed: read after the return
    while (seen < piece_max && !largest.compare_exchange_weak(seen, piece_max, std::memory_order_relaxed)) {
    }
  });

  // An explicit grain: no piece is longer than 1000 indices.
  std::atomic<std::size_t> longest{0};
  flowpool::parallel_for_blocked(
      pool, 0, 100000,
      [&longest](int b, int e) {
        const auto n = static_cast<std::size_t>(e - b);
        std::size_t seen = longest.load(std::memory_order_relaxed);  // relaxed: read after the return
        while (seen < n && !longest.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
        }
      },
      1000);
  //! [parallel_for_blocked]

  const bool ok = largest.load() == std::sqrt(999.0F) && longest.load() <= 1000 && out[4] == 2.0F;
  std::printf("largest root %.3f, longest piece %zu: %s\n", static_cast<double>(largest.load()), longest.load(),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
