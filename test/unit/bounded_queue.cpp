#include <doctest/doctest.h>

#include <flowpool/bounded_queue.hpp>

TEST_SUITE("bounded_queue") {
  TEST_CASE("items come out in FIFO order") {
    flowpool::bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.get() == 1);
    CHECK(q.get() == 2);
  }
}
