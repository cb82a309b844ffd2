// Unit tests for flowpool::bounded_queue: one case per point of its contract (issue 2), plus the
// fault and bad-input cases of issue 6. Multithreaded cases never sleep to order threads: a thread
// that must be blocked is observed asleep in the kernel (see blocking_call), and every outcome is
// asserted so that it is right whether or not the thread had blocked yet.
#include <doctest/doctest.h>

#include "test_support.hpp"

#include <flowpool/bounded_queue.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#endif

namespace {

using namespace std::chrono_literals;
using flowpool::bounded_queue;
using clock_type = std::chrono::steady_clock;

// How long a helper waits for something that must happen before it declares a hang. Far above
// any legitimate latency, even under ThreadSanitizer on a loaded 2-core machine.
constexpr auto k_hang_limit = 10s;

// Waits until `done()` holds or k_hang_limit passes; returns done(). It detects hangs and waits
// for observable state; it never orders threads.
template <class Pred>
bool eventually(Pred done) {
  return flowpool_test::eventually(done, k_hang_limit);
}

#if defined(__linux__)
// The scheduler state of thread `tid` of this process ('R' running, 'S' asleep, ...), or '?'.
char thread_state(pid_t tid) {
  std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const std::size_t name_end = line.rfind(')');  // the thread name may contain spaces and ')'
  if (name_end == std::string::npos || name_end + 2 >= line.size()) {
    return '?';
  }
  return line[name_end + 2];
}
#endif

// Observes a thread that makes one blocking call. The thread calls entering() just before the
// call and returned() just after it; the test thread calls wait_until_blocked_or_returned() and
// then acts. On Linux "blocked" means asleep in the kernel on several consecutive looks (nothing
// else in these tests holds the queue's mutex at that point, so the sleep is the queue's wait);
// elsewhere (or without a readable /proc) it degrades to "entered and given some time". Either
// way the tests' assertions hold whether or not the thread had blocked, so the probe only makes
// them sharper.
class blocking_call {
 public:
  void entering() noexcept {
#if defined(__linux__)
    m_tid.store(::gettid(), std::memory_order_relaxed);  // published by the release store below
#endif
    m_entered.store(true, std::memory_order_release);  // pairs with: acquire load in the wait
  }

  void returned() noexcept {
    m_returned.store(true, std::memory_order_release);
  }

  [[nodiscard]] bool has_returned() const noexcept {
    return m_returned.load(std::memory_order_acquire);
  }

  void wait_until_blocked_or_returned() const {
    int asleep_in_a_row = 0;
    int looks = 0;
    (void)eventually([&] {
      if (has_returned()) {
        return true;
      }
      if (!m_entered.load(std::memory_order_acquire)) {
        return false;
      }
#if defined(__linux__)
      const char state = thread_state(m_tid.load(std::memory_order_relaxed));
      if (state != '?') {
        asleep_in_a_row = state == 'S' ? asleep_in_a_row + 1 : 0;
        return asleep_in_a_row >= 3;
      }
#endif
      return ++looks >= 10000;  // no way to see the thread's state: give it some time instead
    });
  }

 private:
  std::atomic<bool> m_entered{false};
  std::atomic<bool> m_returned{false};
#if defined(__linux__)
  std::atomic<pid_t> m_tid{0};
#endif
};

// What a blocking call returned, and whether it had already returned before the test acted.
template <class R>
struct outcome {
  R value;
  bool returned_before_act;
};

// For a call that stays blocked after the action that must end it: the thread cannot be released,
// so report and end the process now rather than hang until CTest's timeout (doctest's signal
// handler names the test case).
[[noreturn]] void abort_stuck() {
  std::cout.flush();
  std::fprintf(stderr, "FATAL: a blocking call did not return within %lld s of the action that must end it; aborting\n",
               static_cast<long long>(k_hang_limit.count()));
  std::abort();
}

// Runs `call` on a new thread; once it is blocked (or has returned), runs `act` on this thread;
// then joins the thread and returns what `call` returned.
template <class Call, class Act>
auto call_blocked_then(Call call, Act act) {
  using result_t = std::invoke_result_t<Call&>;
  blocking_call probe;
  std::optional<result_t> result;
  std::thread caller([&] {
    probe.entering();
    result.emplace(call());
    probe.returned();
  });
  probe.wait_until_blocked_or_returned();
  const bool returned_before_act = probe.has_returned();
  act();
  if (!eventually([&] { return probe.has_returned(); })) {
    abort_stuck();
  }
  caller.join();
  return outcome<result_t>{std::move(*result), returned_before_act};
}

// A copyable element whose copy and move constructors both throw while `armed` is set. Its move
// constructor is not noexcept, so the queue copies it where it must not lose it.
struct fragile_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct fragile {
  static inline std::atomic<bool> armed{false};

  explicit fragile(int v) noexcept : value(v) {}
  fragile(const fragile& other) : value(other.value) {
    if (armed.load()) {
      throw fragile_error("fragile: copy constructor armed to throw");
    }
  }
  fragile(fragile&& other) noexcept(false) : value(other.value) {  // NOLINT(performance-noexcept-move-constructor)
    if (armed.load()) {
      throw fragile_error("fragile: move constructor armed to throw");
    }
    other.value = -1;
  }
  fragile& operator=(const fragile&) = delete;
  fragile& operator=(fragile&&) = delete;
  ~fragile() = default;

  int value;
};

// Arms fragile's constructors for the lifetime of the guard.
class armed_scope {
 public:
  armed_scope() noexcept { fragile::armed.store(true); }
  armed_scope(const armed_scope&) = delete;
  armed_scope& operator=(const armed_scope&) = delete;
  ~armed_scope() { fragile::armed.store(false); }
};

// A copyable element whose copy constructor throws exactly once: the first copy of an item that
// holds k_poison after a test has set `budget` to 1. Other values copy freely, so a test can copy
// ordinary items out of the queue without using the throw up. Its move never throws but is not
// noexcept, so get() copies items out (std::move_if_noexcept) while put(T&&) moves them in.
struct throws_once {
  static constexpr int k_poison = 7;
  static inline std::atomic<int> budget{0};

  explicit throws_once(int v) noexcept : value(v) {}
  throws_once(const throws_once& other) : value(other.value) {
    if (other.value == k_poison && budget.exchange(0) != 0) {
      throw fragile_error("throws_once: the one copy armed to throw");
    }
  }
  throws_once(throws_once&& other) noexcept(false)
      : value(other.value) {}  // NOLINT(performance-noexcept-move-constructor)
  throws_once& operator=(const throws_once&) = delete;
  throws_once& operator=(throws_once&&) = delete;
  ~throws_once() = default;

  int value;
};

// A move-only element type whose move may throw is rejected at compile time by bounded_queue's
// static_assert (no strong guarantee is possible for it), so it has no runtime cases here.

// Counts live instances, so a test can check that every element is destroyed exactly once.
struct counted {
  static inline std::atomic<int> live{0};

  explicit counted(int v) noexcept : value(v) { ++live; }
  counted(const counted& other) noexcept : value(other.value) { ++live; }
  counted(counted&& other) noexcept : value(other.value) { ++live; }
  counted& operator=(const counted&) = delete;
  counted& operator=(counted&&) = delete;
  ~counted() { --live; }

  int value;
};

// A string too long for the small-string buffer, so a move really transfers its heap buffer.
std::string long_text(char c) {
  return std::string(100, c);
}

std::vector<int> drain(bounded_queue<int>& q) {
  std::vector<int> out;
  while (auto item = q.try_get()) {
    out.push_back(*item);
  }
  return out;
}

}  // namespace

TEST_SUITE("bounded_queue") {
  // ---------------------------------------------------------------------------------------------
  // Construction and observers
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("capacity 0 throws std::invalid_argument whose message names capacity") {
    CHECK_THROWS_AS(bounded_queue<int>(0), std::invalid_argument);
    try {
      bounded_queue<int> q(0);
      FAIL("no exception for capacity 0");
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      CHECK(message.find("capacity") != std::string::npos);
      CHECK(message.find('0') != std::string::npos);
    }
  }

  TEST_CASE("a new queue is empty, open, not full and has nothing unfinished") {
    bounded_queue<int> q(3);
    CHECK(q.capacity() == 3);
    CHECK(q.size() == 0);
    CHECK(q.empty());
    CHECK_FALSE(q.full());
    CHECK(q.unfinished() == 0);
    CHECK_FALSE(q.is_shut_down());
    CHECK(q.high_water_mark() == 0);
  }

  TEST_CASE("size, empty and full follow puts and gets; full means size >= capacity") {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    CHECK(q.size() == 1);
    CHECK_FALSE(q.empty());
    CHECK_FALSE(q.full());
    CHECK(q.put(2));
    CHECK(q.size() == 2);
    CHECK(q.full());
    CHECK(q.get() == 1);
    CHECK(q.size() == 1);
    CHECK_FALSE(q.full());
    CHECK(q.get() == 2);
    CHECK(q.empty());
    CHECK(q.capacity() == 2);
  }

  TEST_CASE("a capacity-1 queue holds exactly one item") {
    bounded_queue<int> q(1);
    CHECK(q.try_put(1));
    CHECK(q.full());
    CHECK_FALSE(q.try_put(2));
    CHECK(q.size() == 1);
    CHECK(q.get() == 1);
    CHECK(q.try_put(3));
    CHECK(q.get() == 3);
  }

  TEST_CASE("a huge capacity allocates nothing up front") {
    bounded_queue<int> q(std::numeric_limits<std::size_t>::max());
    CHECK(q.capacity() == std::numeric_limits<std::size_t>::max());
    CHECK(q.put(1));
    CHECK(q.get() == 1);
  }

  // ---------------------------------------------------------------------------------------------
  // FIFO and storage
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("items come out in FIFO order") {
    bounded_queue<int> q(8);
    for (int i = 0; i < 8; ++i) {
      CHECK(q.put(i));
    }
    for (int i = 0; i < 8; ++i) {
      CHECK(q.get() == i);
    }
    CHECK(q.empty());
  }

  TEST_CASE("FIFO order holds while the storage wraps around many times") {
    bounded_queue<int> q(5);
    int next_in = 0;
    int next_out = 0;
    for (int round = 0; round < 200; ++round) {
      const int puts = 1 + (round % 5);
      for (int i = 0; i < puts && !q.full(); ++i) {
        CHECK(q.try_put(next_in++));
      }
      const int gets = 1 + ((round * 7) % 5);
      for (int i = 0; i < gets && !q.empty(); ++i) {
        CHECK(q.try_get() == next_out++);
      }
    }
    for (int item : drain(q)) {
      CHECK(item == next_out++);
    }
    CHECK(next_out == next_in);
  }

  TEST_CASE("FIFO order holds when the storage grows while wrapped") {
    bounded_queue<int> q(1000);  // storage starts small and doubles on demand
    int next_in = 0;
    int next_out = 0;
    for (int i = 0; i < 12; ++i) {
      CHECK(q.put(next_in++));
    }
    for (int i = 0; i < 10; ++i) {
      CHECK(q.get() == next_out++);
    }
    for (int i = 0; i < 300; ++i) {  // wraps the small buffer, then grows it several times
      CHECK(q.put(next_in++));
    }
    for (int item : drain(q)) {
      CHECK(item == next_out++);
    }
    CHECK(next_out == next_in);
  }

  TEST_CASE("every element is destroyed exactly once: after get, shutdown_now, and with the queue") {
    REQUIRE(counted::live.load() == 0);
    {
      bounded_queue<counted> q(4);
      for (int round = 0; round < 10; ++round) {  // wrap the buffer
        CHECK(q.put(counted{round}));
        CHECK(q.put(counted{round + 100}));
        CHECK(q.get()->value == round);
        CHECK(q.get()->value == round + 100);
      }
      CHECK(counted::live.load() == 0);
      CHECK(q.put(counted{1}));
      CHECK(q.put(counted{2}));
      CHECK(q.force_put(counted{3}));
      CHECK(q.force_put(counted{4}));
      CHECK(q.force_put(counted{5}));  // grows past the capacity
      CHECK(counted::live.load() == 5);
      {
        std::vector<counted> removed = q.shutdown_now();
        CHECK(removed.size() == 5);
        CHECK(counted::live.load() == 5);  // now owned by the vector only
      }
      CHECK(counted::live.load() == 0);
    }
    {
      bounded_queue<counted> q(4);
      CHECK(q.put(counted{1}));
      CHECK(q.put(counted{2}));
      CHECK(counted::live.load() == 2);
    }  // the queue destroys what it still holds
    CHECK(counted::live.load() == 0);
  }

  // ---------------------------------------------------------------------------------------------
  // put / try_put / force_put
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("try_put returns false when full and leaves the queue unchanged") {
    bounded_queue<int> q(2);
    CHECK(q.try_put(1));
    CHECK(q.try_put(2));
    CHECK_FALSE(q.try_put(3));
    const int lvalue = 4;
    CHECK_FALSE(q.try_put(lvalue));
    CHECK(q.size() == 2);
    CHECK(q.unfinished() == 2);
    CHECK(drain(q) == std::vector<int>{1, 2});
  }

  TEST_CASE("a failed try_put on a full queue leaves an rvalue item untouched") {
    bounded_queue<std::string> q(1);
    CHECK(q.put(long_text('a')));
    std::string item = long_text('b');
    // NOLINTBEGIN(bugprone-use-after-move): a failed put leaves the item untouched; that is the point
    CHECK_FALSE(q.try_put(std::move(item)));
    CHECK(item == long_text('b'));
    CHECK_FALSE(q.try_put_for(std::move(item), 1ms));
    CHECK(item == long_text('b'));
    // NOLINTEND(bugprone-use-after-move)
  }

  TEST_CASE("put and try_put copy from lvalues and move from rvalues") {
    bounded_queue<std::string> q(4);
    const std::string original = long_text('c');
    CHECK(q.put(original));
    CHECK(q.try_put(original));
    CHECK(original == long_text('c'));
    CHECK(q.put(long_text('d')));
    CHECK(q.get() == long_text('c'));
    CHECK(q.get() == long_text('c'));
    CHECK(q.get() == long_text('d'));

    bounded_queue<std::unique_ptr<int>> owners(2);
    auto first = std::make_unique<int>(1);
    auto second = std::make_unique<int>(2);
    const int* const first_address = first.get();
    CHECK(owners.put(std::move(first)));
    CHECK(owners.try_put(std::move(second)));
    CHECK(first == nullptr);   // NOLINT(bugprone-use-after-move): a successful rvalue put moves from it
    CHECK(second == nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(owners.get()->get() == first_address);  // moved, not copied
  }

  TEST_CASE("each successful put raises unfinished; the high-water mark records the peak size") {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.try_put(2));
    CHECK(q.try_put_for(3, 0s));
    CHECK(q.unfinished() == 3);
    CHECK(q.high_water_mark() == 3);
    CHECK(q.get() == 1);
    CHECK(q.get() == 2);
    CHECK(q.unfinished() == 3);  // a get does not finish an item
    CHECK(q.high_water_mark() == 3);
    CHECK(q.put(4));
    CHECK(q.high_water_mark() == 3);
  }

  TEST_CASE("force_put exceeds the capacity without blocking and puts stay refused until size < capacity") {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.force_put(3));  // on a full queue: never blocks
    CHECK(q.force_put(4));
    CHECK(q.size() == 4);
    CHECK(q.full());
    CHECK(q.unfinished() == 4);
    CHECK(q.high_water_mark() == 4);
    CHECK_FALSE(q.try_put(5));
    CHECK(q.get() == 1);
    CHECK(q.get() == 2);
    CHECK_FALSE(q.try_put(5));  // size 2 == capacity: still full
    CHECK(q.get() == 3);
    CHECK(q.try_put(5));
    CHECK(drain(q) == std::vector<int>{4, 5});
    CHECK(q.high_water_mark() == 4);
  }

  TEST_CASE("force_put returns false after shutdown and leaves the item untouched") {
    bounded_queue<std::unique_ptr<int>> q(1);
    q.shutdown();
    auto item = std::make_unique<int>(7);
    CHECK_FALSE(q.force_put(std::move(item)));
    REQUIRE(item != nullptr);  // NOLINT(bugprone-use-after-move): untouched on failure
    CHECK(*item == 7);
    CHECK(q.size() == 0);
    CHECK(q.unfinished() == 0);
  }

  TEST_CASE("force_put wakes a getter blocked on an empty queue" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.get(); }, [&] { CHECK(q.force_put(9)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 9);
  }

  // ---------------------------------------------------------------------------------------------
  // Shutdown: checked first, items stay with the caller
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("shutdown is checked first: put and try_put return false on a shut-down full queue" *
            doctest::timeout(20)) {
    bounded_queue<int> q(1);
    CHECK(q.put(1));
    q.shutdown();
    CHECK(q.is_shut_down());
    CHECK_FALSE(q.try_put(2));
    CHECK_FALSE(q.try_put_for(2, 1h));  // must not wait for room
    CHECK_FALSE(q.put(2));              // must not block on the full queue
    const int lvalue = 3;
    CHECK_FALSE(q.put(lvalue));
    CHECK(q.size() == 1);
    CHECK(q.unfinished() == 1);
  }

  TEST_CASE("put on a shut-down queue leaves an lvalue and an rvalue item untouched") {
    bounded_queue<std::string> q(4);
    q.shutdown();
    const std::string lvalue = long_text('l');
    std::string rvalue = long_text('r');
    // NOLINTBEGIN(bugprone-use-after-move): a failed put leaves the item untouched; that is the point
    CHECK_FALSE(q.put(lvalue));
    CHECK_FALSE(q.put(std::move(rvalue)));
    CHECK(rvalue == long_text('r'));
    CHECK_FALSE(q.try_put(lvalue));
    CHECK_FALSE(q.try_put(std::move(rvalue)));
    CHECK(rvalue == long_text('r'));
    CHECK_FALSE(q.try_put_for(lvalue, 1s));
    CHECK_FALSE(q.try_put_for(std::move(rvalue), 1s));
    CHECK(rvalue == long_text('r'));
    CHECK_FALSE(q.force_put(std::move(rvalue)));
    CHECK(rvalue == long_text('r'));
    CHECK(lvalue == long_text('l'));
    // NOLINTEND(bugprone-use-after-move)
    CHECK(q.size() == 0);
    CHECK(q.unfinished() == 0);
  }

  TEST_CASE("put on a shut-down queue leaves a move-only item with the caller") {
    bounded_queue<std::unique_ptr<int>> q(4);
    (void)q.shutdown_now();
    auto item = std::make_unique<int>(42);
    // NOLINTBEGIN(bugprone-use-after-move): a failed put leaves the item untouched; that is the point
    CHECK_FALSE(q.put(std::move(item)));
    CHECK_FALSE(q.try_put(std::move(item)));
    CHECK_FALSE(q.try_put_for(std::move(item), 10ms));
    CHECK_FALSE(q.force_put(std::move(item)));
    REQUIRE(item != nullptr);
    CHECK(*item == 42);
    // NOLINTEND(bugprone-use-after-move)
  }

  TEST_CASE("shutdown is one-way and may be called again") {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    q.shutdown();
    q.shutdown();
    CHECK(q.is_shut_down());
    CHECK(q.get() == 1);
    CHECK(q.get() == std::nullopt);
    q.shutdown();
    CHECK(q.is_shut_down());
    CHECK(q.shutdown_now().empty());
    CHECK(q.shutdown_now().empty());
    CHECK(q.is_shut_down());
  }

  TEST_CASE("get after shutdown drains the remaining items, then returns nullopt without blocking" *
            doctest::timeout(20)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    q.shutdown();
    CHECK(q.get() == 1);
    CHECK(q.try_get() == 2);
    CHECK(q.try_get_for(1h) == 3);
    CHECK(q.get() == std::nullopt);  // at once: a blocking get here would hang the case
    CHECK(q.get() == std::nullopt);
    CHECK(q.try_get_for(1h) == std::nullopt);
    CHECK(q.unfinished() == 3);  // items handed out by get still need task_done
  }

  TEST_CASE("after shutdown_now every get returns nullopt" * doctest::timeout(20)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    const std::vector<int> removed = q.shutdown_now();
    CHECK(removed == std::vector<int>{1, 2});
    CHECK(q.is_shut_down());
    CHECK(q.empty());
    CHECK(q.get() == std::nullopt);
    CHECK(q.try_get() == std::nullopt);
    CHECK(q.try_get_for(1h) == std::nullopt);
    CHECK_FALSE(q.put(3));
  }

  TEST_CASE("shutdown_now returns the queued items in FIFO order, also when the storage has wrapped") {
    bounded_queue<int> q(4);
    CHECK(q.put(0));
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.get() == 0);
    CHECK(q.get() == 1);
    CHECK(q.put(3));
    CHECK(q.put(4));
    CHECK(q.put(5));  // 2..5, wrapped around the 4-slot storage
    CHECK(q.shutdown_now() == std::vector<int>{2, 3, 4, 5});
    CHECK(q.size() == 0);
  }

  TEST_CASE("shutdown_now counts each removed item as done") {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    CHECK(q.get() == 1);  // handed out: still unfinished after shutdown_now
    CHECK(q.unfinished() == 3);
    CHECK(q.shutdown_now().size() == 2);
    CHECK(q.unfinished() == 1);
    CHECK_FALSE(q.join_for(0s));
    q.task_done();
    CHECK(q.unfinished() == 0);
    CHECK(q.join_for(0s));
  }

  TEST_CASE("shutdown_now never lowers unfinished below zero when task_done already ran for queued items") {
    SUBCASE("all queued items already marked done") {
      bounded_queue<int> q(4);
      CHECK(q.put(1));
      CHECK(q.put(2));
      CHECK(q.put(3));
      q.task_done();
      q.task_done();
      q.task_done();
      CHECK(q.unfinished() == 0);
      CHECK(q.shutdown_now().size() == 3);
      CHECK(q.unfinished() == 0);
      CHECK_THROWS_AS(q.task_done(), std::logic_error);
      CHECK(q.unfinished() == 0);
    }
    SUBCASE("some queued items already marked done") {
      bounded_queue<int> q(4);
      CHECK(q.put(1));
      CHECK(q.put(2));
      CHECK(q.put(3));
      q.task_done();
      q.task_done();
      CHECK(q.unfinished() == 1);
      CHECK(q.shutdown_now().size() == 3);
      CHECK(q.unfinished() == 0);
      CHECK(q.join_for(0s));
    }
  }

  TEST_CASE("shutdown_now after shutdown drains what is left") {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    q.shutdown();
    CHECK(q.get() == 1);
    CHECK(q.shutdown_now() == std::vector<int>{2, 3});
    CHECK(q.get() == std::nullopt);
    CHECK(q.unfinished() == 1);
  }

  TEST_CASE("a move-only element type works for put, get, force_put and shutdown_now") {
    bounded_queue<std::unique_ptr<int>> q(3);
    CHECK(q.put(std::make_unique<int>(1)));
    CHECK(q.try_put(std::make_unique<int>(2)));
    CHECK(q.try_put_for(std::make_unique<int>(3), 1s));
    CHECK(q.force_put(std::make_unique<int>(4)));
    std::optional<std::unique_ptr<int>> first = q.get();
    REQUIRE(first.has_value());
    REQUIRE(*first != nullptr);
    CHECK(**first == 1);
    std::optional<std::unique_ptr<int>> second = q.try_get_for(0s);
    REQUIRE(second.has_value());
    CHECK(**second == 2);
    std::vector<std::unique_ptr<int>> rest = q.shutdown_now();
    REQUIRE(rest.size() == 2);
    CHECK(*rest[0] == 3);
    CHECK(*rest[1] == 4);
  }

  // ---------------------------------------------------------------------------------------------
  // task_done / join
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("task_done called too often throws std::logic_error and leaves the count unchanged") {
    bounded_queue<int> q(2);
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    CHECK(q.unfinished() == 0);
    CHECK(q.put(1));
    CHECK(q.get() == 1);
    q.task_done();
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    CHECK(q.unfinished() == 0);  // not wrapped around
    CHECK(q.put(2));
    CHECK(q.unfinished() == 1);  // and counting still works
    CHECK(q.join_for(0s) == false);
    q.task_done();
    CHECK(q.join_for(0s));
  }

  TEST_CASE("task_done's logic_error says what went wrong") {
    bounded_queue<int> q(1);
    try {
      q.task_done();
      FAIL("no exception");
    } catch (const std::logic_error& e) {
      CHECK(std::string(e.what()).find("task_done") != std::string::npos);
    }
  }

  TEST_CASE("join returns at once when nothing is unfinished and may be called again and again" *
            doctest::timeout(20)) {
    bounded_queue<int> q(2);
    q.join();  // fresh queue
    q.join();
    CHECK(q.put(1));
    CHECK(q.get() == 1);
    q.task_done();
    q.join();
    q.join();
    CHECK(q.join_for(0s));
    CHECK(q.put(2));
    CHECK_FALSE(q.join_for(0s));
    CHECK(q.get() == 2);
    q.task_done();
    q.join();
  }

  TEST_CASE("join_for returns false on timeout and true once everything is done") {
    bounded_queue<int> q(2);
    CHECK(q.join_for(0s));
    CHECK(q.join_for(1ms));
    CHECK(q.put(1));
    CHECK_FALSE(q.join_for(0s));
    CHECK_FALSE(q.join_for(1ms));
    CHECK_FALSE(q.join_for(std::chrono::duration<double, std::milli>(2.5)));
    CHECK(q.get() == 1);
    CHECK_FALSE(q.join_for(1ms));  // taken but not done
    q.task_done();
    CHECK(q.join_for(0s));
    CHECK(q.join_for(1h));
  }

  TEST_CASE("join_for returns true when the last task_done happens during the wait" * doctest::timeout(20)) {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    auto joined = call_blocked_then([&] { return q.join_for(5min); },
                                    [&] {
                                      CHECK(q.get() == 1);
                                      q.task_done();
                                    });
    CHECK_FALSE(joined.returned_before_act);
    CHECK(joined.value);
  }

  TEST_CASE("two threads blocked in join are released by consumers' task_done" * doctest::timeout(30)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    std::atomic<int> joined{0};
    blocking_call probe_a;
    blocking_call probe_b;
    std::thread joiner_a([&] {
      probe_a.entering();
      q.join();
      probe_a.returned();
      ++joined;
    });
    std::thread joiner_b([&] {
      probe_b.entering();
      CHECK(q.join_for(5min));
      probe_b.returned();
      ++joined;
    });
    probe_a.wait_until_blocked_or_returned();
    probe_b.wait_until_blocked_or_returned();
    CHECK(joined.load() == 0);  // three items are unfinished
    std::thread consumer([&] {
      for (int i = 0; i < 3; ++i) {
        CHECK(q.get().has_value());
        if (i < 2) {
          q.task_done();
        }
      }
    });
    consumer.join();
    CHECK(joined.load() == 0);  // one item is still unfinished
    q.task_done();
    joiner_a.join();
    joiner_b.join();
    CHECK(joined.load() == 2);
    CHECK(q.unfinished() == 0);
  }

  TEST_CASE("two threads blocked in join are released by shutdown_now removing the items" * doctest::timeout(30)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    CHECK(q.get() == 1);
    q.task_done();
    std::atomic<int> joined{0};
    blocking_call probe_a;
    blocking_call probe_b;
    std::thread joiner_a([&] {
      probe_a.entering();
      q.join();
      probe_a.returned();
      ++joined;
    });
    std::thread joiner_b([&] {
      probe_b.entering();
      CHECK(q.join_for(5min));
      probe_b.returned();
      ++joined;
    });
    probe_a.wait_until_blocked_or_returned();
    probe_b.wait_until_blocked_or_returned();
    CHECK(joined.load() == 0);
    CHECK(q.shutdown_now() == std::vector<int>{2, 3});  // unfinished 2 -> 0: wakes the joiners
    joiner_a.join();
    joiner_b.join();
    CHECK(joined.load() == 2);
  }

  TEST_CASE("join is not released by shutdown_now while an item handed out by get is unfinished" *
            doctest::timeout(30)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.get() == 1);  // not yet done
    blocking_call probe;
    std::atomic<bool> joined{false};
    std::thread joiner([&] {
      probe.entering();
      q.join();
      probe.returned();
      joined = true;
    });
    probe.wait_until_blocked_or_returned();
    CHECK(q.shutdown_now() == std::vector<int>{2});
    CHECK(q.unfinished() == 1);
    CHECK_FALSE(joined.load());
    q.task_done();
    joiner.join();
    CHECK(joined.load());
  }

  TEST_CASE("graceful shutdown does not release join: remaining items still need task_done" * doctest::timeout(20)) {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    q.shutdown();
    CHECK_FALSE(q.join_for(0s));
    CHECK_FALSE(q.join_for(1ms));
    CHECK(q.get() == 1);
    q.task_done();
    CHECK(q.join_for(0s));
  }

  // ---------------------------------------------------------------------------------------------
  // Blocking calls woken by the other side
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a put blocked on a full queue is woken by a get" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    CHECK(q.put(1));
    std::optional<int> got;
    auto added = call_blocked_then([&] { return q.put(2); }, [&] { got = q.get(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK(added.value);
    CHECK(got == 1);
    CHECK(q.get() == 2);
  }

  TEST_CASE("a get blocked on an empty queue is woken by a put" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.get(); }, [&] { CHECK(q.put(5)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 5);
    CHECK(q.empty());
  }

  TEST_CASE("try_get_for succeeds when a put happens during the wait" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.try_get_for(5min); }, [&] { CHECK(q.put(6)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 6);
  }

  TEST_CASE("try_put_for succeeds when a get makes room during the wait" * doctest::timeout(20)) {
    bounded_queue<std::string> q(1);
    CHECK(q.put(long_text('a')));
    std::string item = long_text('b');
    std::optional<std::string> got;
    auto added = call_blocked_then([&] { return q.try_put_for(std::move(item), 5min); }, [&] { got = q.get(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK(added.value);
    CHECK(got == long_text('a'));
    CHECK(q.get() == long_text('b'));
  }

  TEST_CASE("two putters blocked on a full queue both get in as gets make room" * doctest::timeout(30)) {
    bounded_queue<int> q(1);
    CHECK(q.put(0));
    blocking_call probe_a;
    blocking_call probe_b;
    std::thread putter_a([&] {
      probe_a.entering();
      CHECK(q.put(1));
      probe_a.returned();
    });
    std::thread putter_b([&] {
      probe_b.entering();
      CHECK(q.put(2));
      probe_b.returned();
    });
    probe_a.wait_until_blocked_or_returned();
    probe_b.wait_until_blocked_or_returned();
    std::vector<int> got;
    got.reserve(3);
    for (int i = 0; i < 3; ++i) {
      got.push_back(*q.get());  // each get lets exactly one putter in
    }
    putter_a.join();
    putter_b.join();
    REQUIRE(got.size() == 3);
    CHECK(got[0] == 0);
    CHECK(got[1] + got[2] == 3);
    CHECK(q.empty());
  }

  // ---------------------------------------------------------------------------------------------
  // Blocking calls woken by shutdown / shutdown_now
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a put blocked on a full queue is woken by shutdown, returns false and keeps its item" *
            doctest::timeout(20)) {
    bounded_queue<std::string> q(1);
    CHECK(q.put(long_text('a')));
    std::string item = long_text('b');
    auto added = call_blocked_then([&] { return q.put(std::move(item)); }, [&] { q.shutdown(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK_FALSE(added.value);
    CHECK(item == long_text('b'));  // NOLINT(bugprone-use-after-move): untouched on failure
    CHECK(q.size() == 1);
  }

  TEST_CASE("a put blocked on a full queue is woken by shutdown_now and returns false" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    CHECK(q.put(1));
    std::vector<int> removed;
    auto added = call_blocked_then([&] { return q.put(2); }, [&] { removed = q.shutdown_now(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK_FALSE(added.value);  // room was made, but the queue is shut down
    CHECK(removed == std::vector<int>{1});
    CHECK(q.empty());
  }

  TEST_CASE("a try_put_for blocked on a full queue is woken by shutdown and returns false" * doctest::timeout(20)) {
    bounded_queue<std::unique_ptr<int>> q(1);
    CHECK(q.put(std::make_unique<int>(1)));
    auto item = std::make_unique<int>(2);
    auto added = call_blocked_then([&] { return q.try_put_for(std::move(item), 5min); }, [&] { q.shutdown(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK_FALSE(added.value);
    REQUIRE(item != nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(*item == 2);
  }

  TEST_CASE("a try_put_for blocked on a full queue is woken by shutdown_now and returns false" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    CHECK(q.put(1));
    const int lvalue = 2;
    auto added = call_blocked_then([&] { return q.try_put_for(lvalue, 5min); }, [&] { (void)q.shutdown_now(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK_FALSE(added.value);
  }

  TEST_CASE("a get blocked on an empty queue is woken by shutdown and returns nullopt" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.get(); }, [&] { q.shutdown(); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::nullopt);
  }

  TEST_CASE("a get blocked on an empty queue is woken by shutdown_now and returns nullopt" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.get(); }, [&] { CHECK(q.shutdown_now().empty()); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::nullopt);
  }

  TEST_CASE("a try_get_for blocked on an empty queue is woken by shutdown and returns nullopt" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.try_get_for(5min); }, [&] { q.shutdown(); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::nullopt);
  }

  TEST_CASE("a try_get_for blocked on an empty queue is woken by shutdown_now and returns nullopt" *
            doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.try_get_for(5min); }, [&] { (void)q.shutdown_now(); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::nullopt);
  }

  TEST_CASE("a join blocked on queued items is woken by shutdown_now removing them" * doctest::timeout(20)) {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    CHECK(q.put(2));
    auto joined = call_blocked_then(
        [&] {
          q.join();
          return true;
        },
        [&] { CHECK(q.shutdown_now().size() == 2); });
    CHECK_FALSE(joined.returned_before_act);
    CHECK(joined.value);
    CHECK(q.unfinished() == 0);
  }

  TEST_CASE("a join_for blocked on queued items is woken by shutdown_now removing them" * doctest::timeout(20)) {
    bounded_queue<int> q(2);
    CHECK(q.put(1));
    auto joined = call_blocked_then([&] { return q.join_for(5min); }, [&] { CHECK(q.shutdown_now().size() == 1); });
    CHECK_FALSE(joined.returned_before_act);
    CHECK(joined.value);
  }

  TEST_CASE("3 getters, 2 items and a graceful shutdown yield exactly 2 items and 1 nullopt" * doctest::timeout(30)) {
    for (int repeat = 0; repeat < 20; ++repeat) {  // different interleavings of getters, puts and shutdown
      bounded_queue<int> q(4);
      std::atomic<int> items{0};
      std::atomic<int> nullopts{0};
      std::atomic<int> sum{0};
      std::vector<std::thread> getters;
      getters.reserve(3);
      for (int i = 0; i < 3; ++i) {
        getters.emplace_back([&] {
          if (auto item = q.get()) {
            ++items;
            sum += *item;
          } else {
            ++nullopts;
          }
        });
      }
      CHECK(q.put(10));
      CHECK(q.put(20));
      q.shutdown();
      for (auto& getter : getters) {
        getter.join();
      }
      CHECK(items.load() == 2);
      CHECK(nullopts.load() == 1);
      CHECK(sum.load() == 30);
    }
  }

  TEST_CASE("3 getters blocked on an empty queue: 2 puts then shutdown wake all of them" * doctest::timeout(30)) {
    bounded_queue<int> q(4);
    std::atomic<int> items{0};
    std::atomic<int> nullopts{0};
    std::array<blocking_call, 3> probes;
    std::vector<std::thread> getters;
    getters.reserve(probes.size());
    for (auto& probe : probes) {
      getters.emplace_back([&] {
        probe.entering();
        auto item = q.get();
        probe.returned();
        ++(item ? items : nullopts);
      });
    }
    for (auto& probe : probes) {
      probe.wait_until_blocked_or_returned();
    }
    CHECK(items.load() + nullopts.load() == 0);
    CHECK(q.put(1));
    CHECK(q.put(2));
    q.shutdown();
    for (auto& getter : getters) {
      getter.join();
    }
    CHECK(items.load() == 2);
    CHECK(nullopts.load() == 1);
  }

  // ---------------------------------------------------------------------------------------------
  // Timeouts: zero, negative, tiny, huge, floating-point
  // ---------------------------------------------------------------------------------------------

  TEST_CASE_TEMPLATE_DEFINE("a zero or negative timeout makes a single non-blocking attempt", D, non_blocking) {
    // The timeouts come from a function so each type gets several values.
    const std::vector<D> timeouts = [] {
      std::vector<D> out{D::zero(), -D(1), D::min()};
      if constexpr (std::is_floating_point_v<typename D::rep>) {
        out.push_back(D(-0.0));
        out.push_back(D(-std::numeric_limits<typename D::rep>::infinity()));
        out.push_back(D(std::numeric_limits<typename D::rep>::quiet_NaN()));
        out.push_back(D(std::numeric_limits<typename D::rep>::lowest()));
      }
      return out;
    }();
    for (const D& timeout : timeouts) {
      bounded_queue<int> q(1);
      CHECK(q.try_get_for(timeout) == std::nullopt);  // empty: fails at once instead of waiting
      CHECK(q.try_put_for(1, timeout));               // room: succeeds
      CHECK_FALSE(q.try_put_for(2, timeout));         // full: fails at once
      const int lvalue = 3;
      CHECK_FALSE(q.try_put_for(lvalue, timeout));
      CHECK_FALSE(q.join_for(timeout));    // unfinished: fails at once
      CHECK(q.try_get_for(timeout) == 1);  // an item: succeeds
      q.task_done();
      CHECK(q.join_for(timeout));
    }
  }
  TEST_CASE_TEMPLATE_INVOKE(non_blocking, std::chrono::nanoseconds, std::chrono::milliseconds, std::chrono::hours,
                            std::chrono::duration<double>, std::chrono::duration<float, std::milli>,
                            std::chrono::duration<long double, std::ratio<3600>>, std::chrono::years);

  TEST_CASE("a tiny timeout times out on an empty or full queue and succeeds when it need not wait" *
            doctest::timeout(20)) {
    const std::vector<std::function<void(bounded_queue<int>&)>> checks = {
        [](bounded_queue<int>& q) { CHECK(q.try_get_for(1ns) == std::nullopt); },
        [](bounded_queue<int>& q) { CHECK(q.try_get_for(1us) == std::nullopt); },
        [](bounded_queue<int>& q) { CHECK(q.try_get_for(std::chrono::duration<double>(1e-12)) == std::nullopt); },
        [](bounded_queue<int>& q) {
          CHECK(q.try_get_for(std::chrono::duration<double, std::nano>(0.5)) == std::nullopt);
        },
        [](bounded_queue<int>& q) {
          CHECK(q.try_get_for(std::chrono::duration<long long, std::pico>(1)) == std::nullopt);
        },
    };
    for (const auto& check : checks) {
      bounded_queue<int> q(1);
      check(q);
      CHECK(q.try_put_for(7, 1ns));
      CHECK_FALSE(q.try_put_for(8, 1ns));
      CHECK_FALSE(q.try_put_for(8, std::chrono::duration<double>(1e-12)));
      CHECK_FALSE(q.join_for(1ns));
      CHECK(q.try_get_for(1ns) == 7);
      q.task_done();
      CHECK(q.join_for(1ns));
    }
  }

  TEST_CASE("a short floating-point timeout times out") {
    bounded_queue<int> q(1);
    CHECK(q.try_get_for(std::chrono::duration<double, std::milli>(2.5)) == std::nullopt);
    CHECK(q.put(1));
    CHECK_FALSE(q.try_put_for(2, std::chrono::duration<float>(0.002F)));
    CHECK_FALSE(q.join_for(std::chrono::duration<double>(0.002)));
  }

  TEST_CASE("a timed get returns at its deadline although other threads keep waking it" * doctest::timeout(30)) {
    // A noise thread keeps putting an item and taking it straight back: each put wakes the timed
    // getter, which then (usually) finds the queue empty again. With one deadline per call the
    // getter still returns; a wait that restarted its timeout on each wake-up would never end.
    bounded_queue<int> q(1);
    std::atomic<bool> stop{false};
    std::thread noise([&] {
      while (!stop.load()) {
        if (q.try_put(1)) {
          (void)q.try_get();
        }
      }
    });
    blocking_call probe;
    std::thread getter([&] {
      probe.entering();
      (void)q.try_get_for(20ms);  // an item or nullopt: either way it must return
      probe.returned();
    });
    CHECK(eventually([&] { return probe.has_returned(); }));
    stop = true;
    getter.join();  // if it never returned, the case fails above and the timeout catches the hang
    noise.join();
  }

  TEST_CASE_TEMPLATE_DEFINE("a timeout too large for a deadline waits until another thread acts" * doctest::timeout(30),
                            D, forever) {
    const std::vector<D> timeouts = [] {
      std::vector<D> out{D::max()};
      if constexpr (std::is_floating_point_v<typename D::rep>) {
        out.push_back(D(std::numeric_limits<typename D::rep>::infinity()));
        out.push_back(D(static_cast<typename D::rep>(1e30)));
      }
      return out;
    }();
    for (const D& timeout : timeouts) {
      {
        bounded_queue<int> q(1);  // get side
        auto got = call_blocked_then([&] { return q.try_get_for(timeout); }, [&] { CHECK(q.put(11)); });
        CHECK_FALSE(got.returned_before_act);
        CHECK(got.value == 11);
      }
      {
        bounded_queue<int> q(1);  // put side
        CHECK(q.put(1));
        auto added = call_blocked_then([&] { return q.try_put_for(2, timeout); }, [&] { CHECK(q.get() == 1); });
        CHECK_FALSE(added.returned_before_act);
        CHECK(added.value);
        CHECK(q.try_get() == 2);
      }
      {
        bounded_queue<int> q(1);  // join side
        CHECK(q.put(1));
        auto joined = call_blocked_then([&] { return q.join_for(timeout); },
                                        [&] {
                                          CHECK(q.get() == 1);
                                          q.task_done();
                                        });
        CHECK_FALSE(joined.returned_before_act);
        CHECK(joined.value);
      }
      {
        bounded_queue<int> q(1);  // and shutdown still ends such a wait
        auto got = call_blocked_then([&] { return q.try_get_for(timeout); }, [&] { q.shutdown(); });
        CHECK_FALSE(got.returned_before_act);
        CHECK(got.value == std::nullopt);
      }
    }
  }
  TEST_CASE_TEMPLATE_INVOKE(
      forever, std::chrono::nanoseconds, std::chrono::microseconds, std::chrono::milliseconds, std::chrono::seconds,
      std::chrono::hours, std::chrono::years, std::chrono::duration<double>, std::chrono::duration<float, std::milli>,
      std::chrono::duration<long double, std::ratio<3600>>, std::chrono::duration<unsigned long long, std::milli>);

  TEST_CASE("a finite timeout of centuries, up to just below the clock's limit, waits until another thread acts" *
            doctest::timeout(30)) {
    using steady = std::chrono::steady_clock;
    const std::vector<std::function<steady::duration()>> timeouts = {
        [] { return std::chrono::duration_cast<steady::duration>(std::chrono::hours(24 * 365 * 100)); },
        [] { return steady::duration::max() / 2; },
        // The largest deadline that still fits (minus a margin for the time until the call).
        [] { return (steady::time_point::max() - steady::now()) - std::chrono::seconds(1); },
    };
    for (const auto& make_timeout : timeouts) {
      bounded_queue<int> q(1);
      auto got = call_blocked_then([&] { return q.try_get_for(make_timeout()); }, [&] { CHECK(q.put(3)); });
      CHECK_FALSE(got.returned_before_act);
      CHECK(got.value == 3);
      CHECK(q.put(4));
      auto added = call_blocked_then([&] { return q.try_put_for(5, make_timeout()); }, [&] { CHECK(q.get() == 4); });
      CHECK_FALSE(added.returned_before_act);
      CHECK(added.value);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Wake-ups are not lost
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a getter that times out does not swallow a wake-up meant for an untimed getter" * doctest::timeout(60)) {
    // Each round: three timed getters make one try_get_for each with a tiny timeout that expires
    // around the moment the test puts one item, while an untimed getter waits in get(). The item
    // must be received by someone. If a timed getter could consume the notification and then
    // return empty-handed (timeout without re-checking), the item would sit in the queue while
    // the untimed getter sleeps: the round's wait below fails.
    constexpr int k_timed = 3;
    constexpr int k_rounds = 400;
    bounded_queue<int> q(64);
    std::atomic<int> received{0};
    std::atomic<bool> stop{false};
    std::barrier round_start(k_timed + 1);
    std::barrier round_end(k_timed + 1);
    std::atomic<bool> untimed_done{false};
    std::thread untimed([&] {
      while (q.get()) {
        ++received;
      }
      untimed_done = true;
    });
    std::vector<std::thread> timed;
    timed.reserve(k_timed);
    for (int t = 0; t < k_timed; ++t) {
      timed.emplace_back([&, t] {
        for (int round = 0;; ++round) {
          round_start.arrive_and_wait();
          if (stop.load()) {
            return;
          }
          const auto timeout = std::chrono::microseconds((round * 7 + t * 13) % 60);
          if (q.try_get_for(timeout)) {
            ++received;
          }
          round_end.arrive_and_wait();
        }
      });
    }
    bool lost = false;
    for (int round = 0; round < k_rounds && !lost; ++round) {
      round_start.arrive_and_wait();
      for (int spin = 0; spin < (round * 11) % 40; ++spin) {  // vary when the put lands
        std::this_thread::yield();
      }
      CHECK(q.put(round));
      round_end.arrive_and_wait();
      if (!eventually([&] { return received.load() == round + 1; })) {
        lost = true;
        FAIL_CHECK("round " << round << ": the item was not received (queue size " << q.size() << ")");
      }
    }
    stop = true;
    round_start.arrive_and_wait();
    q.shutdown();
    if (lost && !eventually([&] { return untimed_done.load(); })) {
      abort_stuck();  // not even shutdown reaches the untimed getter
    }
    for (auto& thread : timed) {
      thread.join();
    }
    untimed.join();
    CHECK_FALSE(lost);
  }

  TEST_CASE("4 producers x 6 consumers with shutdown mid-stream: every item delivered once, returned or refused" *
            doctest::timeout(60)) {
    constexpr int k_producers = 4;
    constexpr int k_consumers = 6;
    constexpr int k_per_producer = 5000;
    constexpr int k_total = k_producers * k_per_producer;
    bool immediate = false;
    SUBCASE("graceful shutdown") {
      immediate = false;
    }
    SUBCASE("immediate shutdown_now") {
      immediate = true;
    }

    bounded_queue<int> q(16);
    std::vector<std::atomic<int>> delivered(k_total);  // times each item came out of get
    std::vector<int> attempted(k_producers, 0);        // put calls made by each producer
    std::vector<int> refused(k_producers, -1);         // the item whose put returned false
    std::atomic<int> delivered_count{0};
    std::vector<std::thread> threads;
    threads.reserve(k_producers + k_consumers);
    for (int p = 0; p < k_producers; ++p) {
      threads.emplace_back([&, p] {
        for (int i = 0; i < k_per_producer; ++i) {
          const int id = p * k_per_producer + i;
          ++attempted[static_cast<std::size_t>(p)];
          if (!q.put(id)) {
            refused[static_cast<std::size_t>(p)] = id;
            return;
          }
        }
      });
    }
    for (int c = 0; c < k_consumers; ++c) {
      threads.emplace_back([&] {
        while (auto item = q.get()) {
          delivered[static_cast<std::size_t>(*item)].fetch_add(1);
          ++delivered_count;
          q.task_done();
        }
      });
    }
    CHECK(eventually([&] { return delivered_count.load() >= k_total / 4; }));
    std::vector<int> returned;
    if (immediate) {
      returned = q.shutdown_now();
    } else {
      q.shutdown();
    }
    for (auto& thread : threads) {
      thread.join();  // every thread ends
    }

    std::vector<int> handled(k_total, 0);
    long long handled_sum = 0;
    for (int id = 0; id < k_total; ++id) {
      handled[static_cast<std::size_t>(id)] = delivered[static_cast<std::size_t>(id)].load();
      handled_sum += static_cast<long long>(id) * handled[static_cast<std::size_t>(id)];
    }
    for (int id : returned) {
      ++handled[static_cast<std::size_t>(id)];
      handled_sum += id;
    }
    long long attempted_sum = 0;
    int attempted_total = 0;
    int refused_total = 0;
    int wrong = 0;
    for (int p = 0; p < k_producers; ++p) {
      const int made = attempted[static_cast<std::size_t>(p)];
      attempted_total += made;
      for (int i = 0; i < k_per_producer; ++i) {
        const int id = p * k_per_producer + i;
        const bool was_refused = id == refused[static_cast<std::size_t>(p)];
        const int expected = i < made && !was_refused ? 1 : 0;
        wrong += handled[static_cast<std::size_t>(id)] != expected ? 1 : 0;
        attempted_sum += i < made ? id : 0;
        if (was_refused) {
          ++refused_total;
          handled_sum += id;
        }
      }
    }
    CHECK(wrong == 0);  // nothing lost, nothing twice, nothing invented
    CHECK(delivered_count.load() + static_cast<int>(returned.size()) + refused_total == attempted_total);
    CHECK(handled_sum == attempted_sum);
    CHECK(q.unfinished() == 0);
    CHECK(q.join_for(0s));
    if (immediate) {
      CHECK(q.empty());
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Memory ordering (checked by ThreadSanitizer: the payloads below are plain, non-atomic data)
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("what a producer wrote before put is visible to the thread that gets the item" * doctest::timeout(20)) {
    constexpr int k_items = 200;
    std::vector<int> payload(k_items, 0);
    bounded_queue<int> q(4);  // small: producer and consumer alternate, many hand-offs
    std::thread producer([&] {
      for (int i = 0; i < k_items; ++i) {
        payload[static_cast<std::size_t>(i)] = i * 3 + 1;  // plain write, published by put
        CHECK(q.put(i));
      }
    });
    int wrong = 0;
    for (int i = 0; i < k_items; ++i) {
      const std::optional<int> index = q.get();
      REQUIRE(index.has_value());
      wrong += payload[static_cast<std::size_t>(*index)] != *index * 3 + 1 ? 1 : 0;
    }
    producer.join();
    CHECK(wrong == 0);
  }

  TEST_CASE("what consumers wrote before task_done is visible after join returns" * doctest::timeout(20)) {
    constexpr int k_items = 64;
    std::vector<int> results(k_items, 0);
    bounded_queue<int> q(k_items);
    for (int i = 0; i < k_items; ++i) {
      CHECK(q.put(i));
    }
    q.shutdown();  // consumers drain, then stop
    std::vector<std::thread> consumers;
    consumers.reserve(3);
    for (int c = 0; c < 3; ++c) {
      consumers.emplace_back([&] {
        while (auto index = q.get()) {
          results[static_cast<std::size_t>(*index)] = *index + 100;  // plain write, published by task_done
          q.task_done();
        }
      });
    }
    q.join();
    int wrong = 0;
    for (int i = 0; i < k_items; ++i) {
      wrong += results[static_cast<std::size_t>(i)] != i + 100 ? 1 : 0;
    }
    CHECK(wrong == 0);
    for (auto& consumer : consumers) {
      consumer.join();
    }
  }

  TEST_CASE("what a producer wrote before put is visible to the thread that calls shutdown_now" *
            doctest::timeout(20)) {
    constexpr int k_items = 1000;
    std::vector<int> payload(k_items, 0);
    bounded_queue<int> q(k_items);
    std::atomic<int> started{0};
    std::thread producer([&] {
      for (int i = 0; i < k_items; ++i) {
        payload[static_cast<std::size_t>(i)] = 7 * i;  // plain write, published by put
        if (!q.put(i)) {
          return;
        }
        started.store(1, std::memory_order_relaxed);  // only tells the other thread to go; orders nothing
      }
    });
    std::vector<int> removed;
    std::thread other([&] {
      while (started.load(std::memory_order_relaxed) == 0) {
        std::this_thread::yield();
      }
      removed = q.shutdown_now();  // the only synchronisation with the producer's writes
      int wrong = 0;
      for (int index : removed) {
        wrong += payload[static_cast<std::size_t>(index)] != 7 * index ? 1 : 0;
      }
      CHECK(wrong == 0);
    });
    other.join();
    producer.join();
    CHECK_FALSE(removed.empty());
  }

  // ---------------------------------------------------------------------------------------------
  // Element types that throw
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("a put whose copy or move throws adds nothing and leaves the item with the caller" * doctest::timeout(20)) {
    bounded_queue<fragile> q(4);
    CHECK(q.put(fragile{1}));
    {
      const armed_scope armed;
      const fragile lvalue{2};
      fragile rvalue{3};
      // NOLINTBEGIN(bugprone-use-after-move): a throwing move leaves the source as it was
      CHECK_THROWS_AS((void)q.put(lvalue), fragile_error);
      CHECK_THROWS_AS((void)q.put(std::move(rvalue)), fragile_error);
      CHECK_THROWS_AS((void)q.try_put(lvalue), fragile_error);
      CHECK_THROWS_AS((void)q.try_put(std::move(rvalue)), fragile_error);
      CHECK_THROWS_AS((void)q.try_put_for(lvalue, 1s), fragile_error);
      CHECK_THROWS_AS((void)q.try_put_for(std::move(rvalue), 1s), fragile_error);
      CHECK_THROWS_AS((void)q.force_put(std::move(rvalue)), fragile_error);
      CHECK(rvalue.value == 3);
      // NOLINTEND(bugprone-use-after-move)
    }
    CHECK(q.size() == 1);
    CHECK(q.unfinished() == 1);
    CHECK(q.high_water_mark() == 1);
    std::thread other([&] {  // the lock was released: another thread gets in
      CHECK(q.put(fragile{4}));
      CHECK(q.get()->value == 1);
      CHECK(q.get()->value == 4);
    });
    other.join();
    CHECK(q.empty());
  }

  TEST_CASE("a put that throws while the storage grows leaves every queued item intact") {
    bounded_queue<fragile> q(1000);
    int count = 0;
    for (; count < 64; ++count) {  // storage starts small: somewhere here it grows
      CHECK(q.put(fragile{count}));
    }
    // Fill until the next put must grow the storage; armed, that growth copies (move may throw)
    // and throws on the first copy. Whether or not this put grows, nothing may change.
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.put(fragile{count}), fragile_error);
    }
    CHECK(q.size() == 64);
    CHECK(q.unfinished() == 64);
    for (int i = 0; i < 64; ++i) {
      auto item = q.get();
      REQUIRE(item.has_value());
      CHECK(item->value == i);
    }
  }

  TEST_CASE("a get whose copy or move throws leaves the item at the front" * doctest::timeout(20)) {
    bounded_queue<fragile> q(4);
    CHECK(q.put(fragile{1}));
    CHECK(q.put(fragile{2}));
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.get(), fragile_error);
      CHECK_THROWS_AS((void)q.try_get(), fragile_error);
      CHECK_THROWS_AS((void)q.try_get_for(1s), fragile_error);
    }
    CHECK(q.size() == 2);
    CHECK(q.unfinished() == 2);
    std::thread other([&] {
      auto first = q.get();
      REQUIRE(first.has_value());
      CHECK(first->value == 1);  // still at the front, not a moved-from husk
      CHECK(q.get()->value == 2);
    });
    other.join();
  }

  TEST_CASE("a throwing get after shutdown keeps the item for the next get" * doctest::timeout(20)) {
    bounded_queue<fragile> q(2);
    CHECK(q.put(fragile{1}));
    q.shutdown();
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.get(), fragile_error);
    }
    auto item = q.get();
    REQUIRE(item.has_value());
    CHECK(item->value == 1);
    CHECK_FALSE(q.get().has_value());
  }

  TEST_CASE("a throwing shutdown_now leaves the queue shut down with every item still queued" * doctest::timeout(20)) {
    bounded_queue<fragile> q(4);
    CHECK(q.put(fragile{1}));
    CHECK(q.put(fragile{2}));
    CHECK(q.put(fragile{3}));
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.shutdown_now(), fragile_error);
    }
    CHECK(q.is_shut_down());
    CHECK(q.size() == 3);
    CHECK(q.unfinished() == 3);
    std::thread other([&] {  // the lock was released; the items are intact and in order
      CHECK_FALSE(q.put(fragile{4}));
      auto first = q.get();
      REQUIRE(first.has_value());
      CHECK(first->value == 1);
      std::vector<fragile> rest = q.shutdown_now();
      REQUIRE(rest.size() == 2);
      CHECK(rest[0].value == 2);
      CHECK(rest[1].value == 3);
    });
    other.join();
    CHECK(q.unfinished() == 1);
    CHECK(q.get() == std::nullopt);
  }

  TEST_CASE("a getter woken for an item whose copy throws hands the wake-up on to the other sleeping getter" *
            doctest::timeout(60)) {
    // Issue 9, item 2. Two getters sleep in get(); one put wakes one of them; that getter's copy
    // of the item throws, so the item stays queued. The other getter must then receive it without
    // any further put. Old behaviour: the thrower used up the only notify and the other slept on
    // until shutdown. The probes only make the case sharp (both asleep before the put); the
    // assertion holds whatever the scheduling.
    bounded_queue<throws_once> q(4);
    std::atomic<int> got{0};
    std::atomic<int> threw{0};
    std::atomic<int> empty_handed{0};
    std::array<blocking_call, 2> probes;
    auto getter = [&](blocking_call& probe) {
      probe.entering();
      try {
        if (auto item = q.get()) {
          CHECK(item->value == throws_once::k_poison);
          ++got;
        } else {
          ++empty_handed;
        }
      } catch (const fragile_error&) {
        ++threw;
      }
      probe.returned();
    };
    std::thread getter_a(getter, std::ref(probes[0]));
    std::thread getter_b(getter, std::ref(probes[1]));
    probes[0].wait_until_blocked_or_returned();
    probes[1].wait_until_blocked_or_returned();
    throws_once::budget.store(1);
    CHECK(q.put(throws_once{throws_once::k_poison}));  // moved in: the throwing copy is the getter's
    const bool delivered = eventually([&] { return got.load() == 1; });
    CHECK_MESSAGE(delivered, "lost wake-up: threw=" << threw.load() << " got=" << got.load() << " queued=" << q.size()
                                                    << " (a getter still asleep)");
    q.shutdown();  // releases the sleeping getter if the wake-up was lost
    getter_a.join();
    getter_b.join();
    CHECK(threw.load() == 1);
    CHECK(got.load() == 1);
    CHECK(empty_handed.load() == 0);  // even a lost wake-up ends with the item drained after shutdown
    CHECK(q.empty());
    throws_once::budget.store(0);
  }

  TEST_CASE("a putter woken for room whose copy throws hands the wake-up on to the other sleeping putter" *
            doctest::timeout(60)) {
    // The putter-side twin: a full capacity-1 queue, two putters asleep in put(const T&); one get
    // makes room and wakes one of them; that putter's copy into the queue throws, so nothing is
    // added. The other putter must then get in without any further get.
    bounded_queue<throws_once> q(1);
    CHECK(q.put(throws_once{0}));  // not poisoned: the get below copies it out freely
    const throws_once poisoned{throws_once::k_poison};
    std::atomic<int> added{0};
    std::atomic<int> threw{0};
    std::atomic<int> refused{0};
    std::array<blocking_call, 2> probes;
    auto putter = [&](blocking_call& probe) {
      probe.entering();
      try {
        if (q.put(poisoned)) {
          ++added;
        } else {
          ++refused;
        }
      } catch (const fragile_error&) {
        ++threw;
      }
      probe.returned();
    };
    std::thread putter_a(putter, std::ref(probes[0]));
    std::thread putter_b(putter, std::ref(probes[1]));
    probes[0].wait_until_blocked_or_returned();
    probes[1].wait_until_blocked_or_returned();
    throws_once::budget.store(1);
    auto first = q.get();  // makes room for exactly one putter
    REQUIRE(first.has_value());
    CHECK(first->value == 0);
    const bool admitted = eventually([&] { return added.load() == 1; });
    CHECK_MESSAGE(admitted, "lost wake-up: threw=" << threw.load() << " added=" << added.load()
                                                   << " queued=" << q.size() << " (a putter still asleep)");
    q.shutdown();  // releases the sleeping putter if the wake-up was lost
    putter_a.join();
    putter_b.join();
    CHECK(threw.load() == 1);
    CHECK(added.load() == 1);
    CHECK(refused.load() == (admitted ? 0 : 1));
    REQUIRE(q.size() == 1);
    CHECK(q.get()->value == throws_once::k_poison);
    throws_once::budget.store(0);
  }

  // ---------------------------------------------------------------------------------------------
  // emplace, absolute deadlines, stop tokens and the batch forms (issue 15, item 6)
  // ---------------------------------------------------------------------------------------------

  TEST_CASE("emplace constructs the item in place from its arguments and counts it like put") {
    bounded_queue<std::pair<std::string, int>> q(2);
    CHECK(q.emplace(long_text('a'), 1));
    CHECK(q.try_emplace(long_text('b'), 2));
    CHECK_FALSE(q.try_emplace(long_text('c'), 3));  // full
    CHECK(q.unfinished() == 2);
    CHECK(q.high_water_mark() == 2);
    CHECK(q.get() == std::pair{long_text('a'), 1});
    CHECK(q.get() == std::pair{long_text('b'), 2});
  }

  TEST_CASE("emplace leaves rvalue arguments untouched when it returns false") {
    bounded_queue<std::unique_ptr<int>> q(1);
    auto first = std::make_unique<int>(1);
    CHECK(q.emplace(std::move(first)));
    auto second = std::make_unique<int>(2);
    CHECK_FALSE(q.try_emplace(std::move(second)));  // full
    REQUIRE(second != nullptr);                     // NOLINT(bugprone-use-after-move): untouched on failure
    q.shutdown();
    CHECK_FALSE(q.emplace(std::move(second)));
    REQUIRE(second != nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(*second == 2);
  }

  TEST_CASE("an emplace blocked on a full queue is woken by a get, and by shutdown returns false" *
            doctest::timeout(20)) {
    bounded_queue<std::string> q(1);
    CHECK(q.put(long_text('a')));
    std::optional<std::string> got;
    auto added = call_blocked_then([&] { return q.emplace(std::size_t{100}, 'b'); }, [&] { got = q.get(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK(added.value);
    CHECK(got == long_text('a'));
    auto refused = call_blocked_then([&] { return q.emplace(std::size_t{100}, 'c'); }, [&] { q.shutdown(); });
    CHECK_FALSE(refused.returned_before_act);
    CHECK_FALSE(refused.value);
    CHECK(q.get() == long_text('b'));
  }

  TEST_CASE("an emplace whose constructor throws adds nothing") {
    bounded_queue<fragile> q(2);
    const fragile source{1};
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.emplace(source), fragile_error);
      CHECK_THROWS_AS((void)q.try_emplace(source), fragile_error);
    }
    CHECK(q.empty());
    CHECK(q.unfinished() == 0);
    CHECK(q.emplace(source));
    CHECK(q.get()->value == 1);
  }

  TEST_CASE("try_get_until and try_put_until with a past deadline make a single non-blocking attempt") {
    bounded_queue<int> q(1);
    const auto past = clock_type::now() - 1h;
    CHECK_FALSE(q.try_get_until(past).has_value());
    CHECK(q.try_put_until(1, past));  // room: it need not wait
    CHECK_FALSE(q.try_put_until(2, past));
    CHECK(q.try_get_until(past) == 1);
    CHECK_FALSE(q.try_get_until(clock_type::time_point::min()).has_value());
    CHECK_FALSE(q.try_get_until(std::chrono::system_clock::now() - 1s).has_value());
  }

  TEST_CASE("try_get_until and try_put_until return at or after their deadline on any clock") {
    bounded_queue<int> q(1);
    const auto steady_deadline = clock_type::now() + 20ms;
    CHECK_FALSE(q.try_get_until(steady_deadline).has_value());
    CHECK(clock_type::now() >= steady_deadline);
    const auto system_deadline = std::chrono::system_clock::now() + 20ms;
    CHECK_FALSE(q.try_get_until(system_deadline).has_value());
    CHECK(std::chrono::system_clock::now() >= system_deadline - 1ms);  // allows a clock step of 1 ms
    CHECK(q.put(1));
    const auto put_deadline = clock_type::now() + 20ms;
    CHECK_FALSE(q.try_put_until(2, put_deadline));
    CHECK(clock_type::now() >= put_deadline);
  }

  TEST_CASE("a deadline too far away to represent waits until another thread acts" * doctest::timeout(30)) {
    bounded_queue<int> q(1);
    auto got =
        call_blocked_then([&] { return q.try_get_until(clock_type::time_point::max()); }, [&] { CHECK(q.put(3)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 3);
    using coarse = std::chrono::time_point<std::chrono::system_clock, std::chrono::hours>;
    CHECK(q.put(4));
    auto added = call_blocked_then([&] { return q.try_put_until(5, coarse::max()); }, [&] { (void)q.get(); });
    CHECK_FALSE(added.returned_before_act);
    CHECK(added.value);
    CHECK(q.get() == 5);
  }

  TEST_CASE("a try_get_until blocked on an empty queue is woken by a put and by shutdown" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    auto got = call_blocked_then([&] { return q.try_get_until(clock_type::now() + 5min); }, [&] { CHECK(q.put(6)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 6);
    auto none = call_blocked_then([&] { return q.try_get_until(clock_type::now() + 5min); }, [&] { q.shutdown(); });
    CHECK_FALSE(none.returned_before_act);
    CHECK(none.value == std::nullopt);
  }

  TEST_CASE("get with a stop token returns an item that is there, even when stop was already requested") {
    bounded_queue<int> q(2);
    std::stop_source source;
    CHECK(q.put(1));
    CHECK(q.get(source.get_token()) == 1);
    CHECK(q.put(2));
    source.request_stop();
    CHECK(q.get(source.get_token()) == 2);
    CHECK(q.get(source.get_token()) == std::nullopt);  // empty and stopped: returns at once
    CHECK(q.put(3));
    CHECK(q.get(std::stop_token{}) == 3);  // no stop state: exactly get()
  }

  TEST_CASE("a get blocked on an empty queue is woken by a stop request and returns nullopt" * doctest::timeout(20)) {
    bounded_queue<int> q(1);
    std::stop_source source;
    auto got = call_blocked_then([&] { return q.get(source.get_token()); }, [&] { CHECK(source.request_stop()); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::nullopt);
    CHECK_FALSE(q.is_shut_down());  // a stop ends one wait; the queue stays open
    CHECK(q.put(1));
    CHECK(q.get() == 1);
  }

  TEST_CASE("a stop request wakes only its own getter: another blocked get still receives the next item" *
            doctest::timeout(30)) {
    bounded_queue<int> q(1);
    std::stop_source stopped;
    std::stop_source other;
    blocking_call probe;
    std::optional<int> other_got;
    std::thread other_getter([&] {
      probe.entering();
      other_got = q.get(other.get_token());
      probe.returned();
    });
    probe.wait_until_blocked_or_returned();
    auto got = call_blocked_then([&] { return q.get(stopped.get_token()); }, [&] { stopped.request_stop(); });
    CHECK(got.value == std::nullopt);
    CHECK_FALSE(probe.has_returned());  // woken by the notify_all, it re-checked and slept again
    CHECK(q.put(7));
    other_getter.join();
    CHECK(other_got == 7);
  }

  TEST_CASE("a get with a stop token blocked on an empty queue is woken by shutdown and by a put" *
            doctest::timeout(20)) {
    bounded_queue<int> q(1);
    std::stop_source source;
    auto got = call_blocked_then([&] { return q.get(source.get_token()); }, [&] { CHECK(q.put(8)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == 8);
    auto none = call_blocked_then([&] { return q.get(source.get_token()); }, [&] { q.shutdown(); });
    CHECK_FALSE(none.returned_before_act);
    CHECK(none.value == std::nullopt);
  }

  TEST_CASE("a get with a stop token whose copy throws leaves the item at the front") {
    bounded_queue<fragile> q(2);
    CHECK(q.put(fragile{1}));
    const std::stop_source source;
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.get(source.get_token()), fragile_error);
    }
    CHECK(q.size() == 1);
    CHECK(q.get(source.get_token())->value == 1);
  }

  TEST_CASE("put_all appends a range in order, counts each item and returns how many went in") {
    bounded_queue<int> q(8);
    const std::vector<int> items{1, 2, 3, 4, 5};
    CHECK(q.put_all(items.begin(), items.end()) == 5);
    CHECK(q.put_all(items.begin(), items.begin()) == 0);  // an empty range
    CHECK(q.unfinished() == 5);
    CHECK(q.high_water_mark() == 5);
    CHECK(drain(q) == items);
  }

  TEST_CASE("put_all with move iterators moves the items in; try_put_all adds what fits and leaves the rest") {
    bounded_queue<std::string> q(3);
    CHECK(q.put(long_text('a')));
    std::vector<std::string> items{long_text('b'), long_text('c'), long_text('d')};
    const std::size_t added =
        q.try_put_all(std::make_move_iterator(items.begin()), std::make_move_iterator(items.end()));
    CHECK(added == 2);
    CHECK(items[2] == long_text('d'));  // not added: untouched
    CHECK(q.try_put_all(std::make_move_iterator(items.begin() + 2), std::make_move_iterator(items.end())) == 0);
    CHECK(q.get() == long_text('a'));
    CHECK(q.get() == long_text('b'));
    CHECK(q.get() == long_text('c'));
    q.shutdown();
    CHECK(q.try_put_all(items.begin(), items.end()) == 0);
  }

  TEST_CASE("get_up_to takes at most n of the oldest items at once, and blocks only while empty" *
            doctest::timeout(20)) {
    bounded_queue<int> q(8);
    const std::vector<int> items{1, 2, 3, 4, 5};
    CHECK(q.put_all(items.begin(), items.end()) == 5);
    CHECK(q.get_up_to(3) == std::vector<int>{1, 2, 3});
    CHECK(q.get_up_to(10) == std::vector<int>{4, 5});  // does not wait for 10
    CHECK(q.unfinished() == 5);                        // each still needs task_done()
    auto got = call_blocked_then([&] { return q.get_up_to(4); }, [&] { CHECK(q.put(6)); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value == std::vector<int>{6});
    CHECK_THROWS_AS((void)q.get_up_to(0), std::invalid_argument);
  }

  TEST_CASE("get_up_to after shutdown hands out what is left, then returns an empty vector" * doctest::timeout(20)) {
    bounded_queue<int> q(4);
    CHECK(q.put(1));
    CHECK(q.put(2));
    CHECK(q.put(3));
    q.shutdown();
    CHECK(q.get_up_to(2) == std::vector<int>{1, 2});
    CHECK(q.get_up_to(2) == std::vector<int>{3});
    CHECK(q.get_up_to(2).empty());
  }

  TEST_CASE("a get_up_to blocked on an empty queue is woken by shutdown and returns an empty vector" *
            doctest::timeout(20)) {
    bounded_queue<int> q(4);
    auto got = call_blocked_then([&] { return q.get_up_to(3); }, [&] { q.shutdown(); });
    CHECK_FALSE(got.returned_before_act);
    CHECK(got.value.empty());
  }

  TEST_CASE("a put_all blocked on a full queue is woken by gets and ends with every item in" * doctest::timeout(20)) {
    bounded_queue<int> q(2);
    const std::vector<int> items{1, 2, 3, 4, 5};
    std::vector<int> got;
    auto added = call_blocked_then([&] { return q.put_all(items.begin(), items.end()); },
                                   [&] {
                                     while (got.size() < items.size()) {
                                       auto batch = q.get_up_to(2);
                                       got.insert(got.end(), batch.begin(), batch.end());
                                     }
                                   });
    CHECK(added.value == 5);
    CHECK(got == items);
  }

  TEST_CASE("a put_all blocked on a full queue is woken by shutdown, returns how many went in and keeps the rest" *
            doctest::timeout(20)) {
    bounded_queue<std::string> q(2);
    std::vector<std::string> items{long_text('a'), long_text('b'), long_text('c'), long_text('d')};
    auto added = call_blocked_then(
        [&] { return q.put_all(std::make_move_iterator(items.begin()), std::make_move_iterator(items.end())); },
        [&] { q.shutdown(); });
    CHECK_FALSE(added.returned_before_act);
    REQUIRE(added.value == 2);  // the first two filled the queue, then it slept until the shutdown
    CHECK(items[2] == long_text('c'));
    CHECK(items[3] == long_text('d'));  // nothing lost: the rest stay with the caller
    CHECK(q.get_up_to(5) == std::vector<std::string>{long_text('a'), long_text('b')});
  }

  TEST_CASE("a get_up_to that frees several slots wakes several blocked putters" * doctest::timeout(30)) {
    bounded_queue<int> q(3);
    const std::vector<int> first{0, 0, 0};
    CHECK(q.put_all(first.begin(), first.end()) == 3);
    std::array<blocking_call, 3> probes;
    std::vector<std::thread> putters;
    putters.reserve(probes.size());
    for (std::size_t i = 0; i < probes.size(); ++i) {
      putters.emplace_back([&, i] {
        probes[i].entering();
        CHECK(q.put(static_cast<int>(i) + 1));
        probes[i].returned();
      });
    }
    for (auto& probe : probes) {
      probe.wait_until_blocked_or_returned();
    }
    CHECK(q.get_up_to(3) == first);  // one call frees three slots: all three putters get in
    for (auto& putter : putters) {
      putter.join();
    }
    auto rest = q.get_up_to(3);
    std::sort(rest.begin(), rest.end());
    CHECK(rest == std::vector<int>{1, 2, 3});
  }

  TEST_CASE("a put_all whose constructor throws keeps the items before it and leaves the rest with the caller") {
    bounded_queue<throws_once> q(8);
    const std::vector<throws_once> items{throws_once{1}, throws_once{2}, throws_once{throws_once::k_poison},
                                         throws_once{4}};
    throws_once::budget.store(1);
    CHECK_THROWS_AS((void)q.put_all(items.begin(), items.end()), fragile_error);
    throws_once::budget.store(0);
    CHECK(q.size() == 2);
    CHECK(q.unfinished() == 2);
    CHECK(q.get()->value == 1);
    CHECK(q.get()->value == 2);
    CHECK(q.try_put_all(items.begin() + 2, items.end()) == 2);  // the lock was released
    CHECK(q.get()->value == throws_once::k_poison);
  }

  TEST_CASE("a get_up_to whose copy throws removes nothing") {
    bounded_queue<fragile> q(4);
    CHECK(q.put(fragile{1}));
    CHECK(q.put(fragile{2}));
    {
      const armed_scope armed;
      CHECK_THROWS_AS((void)q.get_up_to(2), fragile_error);
    }
    CHECK(q.size() == 2);
    auto all = q.get_up_to(2);
    REQUIRE(all.size() == 2);
    CHECK(all[0].value == 1);
    CHECK(all[1].value == 2);
  }

  TEST_CASE("3 put_all producers x 3 get_up_to consumers with shutdown mid-stream: every item delivered once or kept" *
            doctest::timeout(60)) {
    constexpr int k_producers = 3;
    constexpr int k_consumers = 3;
    constexpr int k_batches = 400;
    constexpr int k_batch = 7;
    constexpr int k_per_producer = k_batches * k_batch;
    constexpr int k_total = k_producers * k_per_producer;
    bounded_queue<int> q(5);  // smaller than a batch: put_all must block mid-batch
    std::vector<std::atomic<int>> delivered(k_total);
    std::vector<int> added(k_producers, 0);  // written by producer p only, read after join
    std::atomic<int> delivered_count{0};
    std::vector<std::thread> threads;
    threads.reserve(k_producers + k_consumers);
    for (int p = 0; p < k_producers; ++p) {
      threads.emplace_back([&, p] {
        for (int b = 0; b < k_batches; ++b) {
          std::vector<int> batch(k_batch);
          for (int i = 0; i < k_batch; ++i) {
            batch[static_cast<std::size_t>(i)] = p * k_per_producer + b * k_batch + i;
          }
          const std::size_t in = q.put_all(batch.begin(), batch.end());
          added[static_cast<std::size_t>(p)] += static_cast<int>(in);
          if (in != batch.size()) {
            return;  // shut down: the rest of this batch and the later ones stay here
          }
        }
      });
    }
    for (int c = 0; c < k_consumers; ++c) {
      threads.emplace_back([&, c] {
        const std::size_t n = static_cast<std::size_t>(c) + 2;
        for (auto batch = q.get_up_to(n); !batch.empty(); batch = q.get_up_to(n)) {
          CHECK(batch.size() <= n);
          for (int id : batch) {
            delivered[static_cast<std::size_t>(id)].fetch_add(1);
            ++delivered_count;
            q.task_done();
          }
        }
      });
    }
    CHECK(eventually([&] { return delivered_count.load() >= k_total / 3; }));
    q.shutdown();
    for (auto& thread : threads) {
      thread.join();
    }
    int wrong = 0;
    int added_total = 0;
    for (int p = 0; p < k_producers; ++p) {
      const int made = added[static_cast<std::size_t>(p)];
      added_total += made;
      for (int i = 0; i < k_per_producer; ++i) {
        const int id = p * k_per_producer + i;
        const int expected = i < made ? 1 : 0;  // the first `made` of each producer, each exactly once
        wrong += delivered[static_cast<std::size_t>(id)].load() != expected ? 1 : 0;
      }
    }
    CHECK(wrong == 0);
    CHECK(delivered_count.load() == added_total);
    CHECK(q.unfinished() == 0);
    CHECK(q.empty());
  }
}
