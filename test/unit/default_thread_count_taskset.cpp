// Run only under `taskset -c 0` (test/CMakeLists.txt): with one CPU in the affinity mask, the
// default thread count is 1, whatever std::thread::hardware_concurrency() says (issue 14).
#include <doctest/doctest.h>

#include <flowpool/thread_pool.hpp>

#include <cstddef>

using flowpool::pool_options;
using flowpool::thread_pool;

TEST_SUITE("default thread count under taskset") {
  TEST_CASE("with an affinity mask of one CPU the default thread count is 1" * doctest::timeout(30)) {
    CHECK(thread_pool::default_thread_count() == 1);
    thread_pool zero{pool_options{.threads = 0}};
    CHECK(zero.thread_count() == 1);
    thread_pool by_default;
    CHECK(by_default.thread_count() == 1);
    CHECK(zero.submit([] { return 5; }).get() == 5);
  }
}
