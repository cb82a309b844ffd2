// flowpool::parallel_for: body(i) for every i in [first, last), split adaptively across the pool's
// workers. Each index is visited exactly once, so writing out[i] needs no synchronisation, and
// everything the bodies wrote is visible once parallel_for returns.
#include <flowpool/parallel_for.hpp>
#include <flowpool/thread_pool.hpp>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <vector>

int main() {
  flowpool::thread_pool pool(2);  // two workers

  //! [parallel_for]
  std::vector<double> in(1 << 20);
  std::vector<double> out(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<double>(i);
  }

  flowpool::parallel_for(pool, std::size_t{0}, in.size(), [&](std::size_t i) {
    out[i] = std::sqrt(in[i]);  // each i exactly once: no two bodies write the same element
  });
  // Returns when every body has run; out[] is complete and visible here.

  bool rethrown = false;
  try {
    flowpool::parallel_for(pool, 0, 100, [](int i) {
      if (i == 42) {
        throw std::domain_error("bad element 42");
      }
    });
  } catch (const std::domain_error&) {
    rethrown = true;  // a body's exception reaches the caller of parallel_for
  }
  //! [parallel_for]

  for (std::size_t i = 0; i < in.size(); ++i) {
    if (out[i] != std::sqrt(in[i])) {
      std::printf("wrong result at %zu\n", i);
      return 1;
    }
  }
  std::printf("%zu square roots computed; exception rethrown: %s\n", out.size(), rethrown ? "yes" : "no");
  return rethrown ? 0 : 1;
}
