// The non-template half of flowpool::server_pool: option checks, thread names, membership, the
// ejection state machine, the wake-up choice, the retry budget, the counters and the histograms.
// Everything here is guarded by fleet::m_mutex (the pool's one mutex), except the per-slot
// counters and histograms, which their slot writes and stats() reads with relaxed atomics.
#include "flowpool/detail/fleet.hpp"

#include "flowpool/server_pool.hpp"
#include "server_pool/atomic_histogram.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace flowpool {

permanent_error::~permanent_error() = default;

}  // namespace flowpool

namespace flowpool::detail {
namespace {

constexpr std::size_t k_cache_line = 128;              // two lines: Intel's adjacent-line prefetcher pairs them
constexpr std::int64_t k_default_max_multiplier = 32;  // max_eject_for = 0 means 32 * eject_for

[[noreturn]] void bad_option(const std::string& what) {
  throw std::invalid_argument("flowpool::server_pool: options." + what);
}

void require_positive(std::size_t value, const char* field) {
  if (value == 0) {
    bad_option(std::string(field) + " must be at least 1 (got 0)");
  }
}

void validate(const server_pool_options& options) {
  require_positive(options.servers, "servers");
  require_positive(options.slots_per_server, "slots_per_server");
  require_positive(options.queue_capacity, "queue_capacity");
  require_positive(options.max_attempts, "max_attempts");
  constexpr std::size_t k_max = server_pool_options::k_max_threads;
  // Divide instead of multiplying, so a product that overflows std::size_t is caught too.
  if (options.servers > k_max / options.slots_per_server) {
    bad_option("servers * options.slots_per_server must be at most " + std::to_string(k_max) + " threads (got " +
               std::to_string(options.servers) + " * " + std::to_string(options.slots_per_server) + ")");
  }
  if (options.eject_for.count() < 0) {
    bad_option("eject_for must not be negative (got " + std::to_string(options.eject_for.count()) + " ms)");
  }
  if (options.eject_after > 0 && options.eject_for.count() <= 0) {
    bad_option("eject_for must be positive when eject_after is set (got " + std::to_string(options.eject_for.count()) +
               " ms)");
  }
  if (options.max_ejected_percent > 100) {
    bad_option("max_ejected_percent must be at most 100 (got " + std::to_string(options.max_ejected_percent) + ")");
  }
  if (!(options.retry_budget_ratio >= 0.0)) {  // also rejects NaN
    bad_option("retry_budget_ratio must be at least 0 (got " + std::to_string(options.retry_budget_ratio) + ")");
  }
  if (!(options.retry_budget_min_per_second >= 0.0) || std::isinf(options.retry_budget_min_per_second)) {
    bad_option("retry_budget_min_per_second must be finite and at least 0 (got " +
               std::to_string(options.retry_budget_min_per_second) + ")");
  }
  if (options.retry_budget_window.count() <= 0) {
    bad_option("retry_budget_window must be positive (got " + std::to_string(options.retry_budget_window.count()) +
               " ms)");
  }
  constexpr std::chrono::milliseconds k_year = std::chrono::hours(24 * 366);
  if (options.eject_for > k_year) {
    bad_option("eject_for must be at most a year (got " + std::to_string(options.eject_for.count()) + " ms)");
  }
  if (options.max_eject_for.count() < 0 || options.max_eject_for > k_year) {
    bad_option("max_eject_for must be 0 (32 * eject_for) or up to a year (got " +
               std::to_string(options.max_eject_for.count()) + " ms)");
  }
  if (options.max_eject_for.count() > 0 && options.max_eject_for < options.eject_for) {
    bad_option("max_eject_for must be at least eject_for (got " + std::to_string(options.max_eject_for.count()) +
               " ms < " + std::to_string(options.eject_for.count()) + " ms)");
  }
  if (options.retry_budget_window > k_year) {
    bad_option("retry_budget_window must be at most a year (got " +
               std::to_string(options.retry_budget_window.count()) + " ms)");
  }
  if (options.queue_timeout > k_year) {
    bad_option("queue_timeout must be at most a year (got " + std::to_string(options.queue_timeout.count()) + " ms)");
  }
  if (options.queue_timeout.count() < 0) {
    bad_option("queue_timeout must not be negative (got " + std::to_string(options.queue_timeout.count()) + " ms)");
  }
}

}  // namespace

std::string server_pool_thread_name(const std::string& name, slot_id id) {
  return name + '-' + std::to_string(id.server) + '.' + std::to_string(id.slot);
}

struct alignas(k_cache_line) fleet_slot {
  fleet_server* server = nullptr;
  std::size_t index = 0;  // within its server

  // Guarded by the fleet's mutex.
  std::condition_variable cv;  // this slot sleeps on it alone, so a wake-up names its slot
  enum class phase : unsigned char { starting, ready, failed, running, exited } phase = phase::starting;
  std::exception_ptr failure;  // what its state's constructor threw
  bool listed = false;         // asleep in idle_wait() and not yet woken
  bool woken = false;          // a waker picked it (it counts in m_wakes_pending until it is back)
  bool probing = false;        // its attempt in progress is its server's probe
  bool probe_wake = false;     // it was woken to probe (its server's probe_wake is set for it)
  // The slot thread's own running totals (it is their only writer; kept under the mutex anyway).
  std::int64_t wait_start = 0;  // ns since the epoch when the slot last became idle
  std::int64_t idle_total = 0;
  std::int64_t busy_total = 0;
  std::uint64_t handled_total = 0;
  std::uint64_t failed_total = 0;

  // Read by stats() without the mutex. Single writer (this slot, under the mutex); every access
  // is relaxed: these are tallies that publish no other data, and stats() accepts any recent
  // value (exact once the pool is quiet, which join()'s mutex hand-off orders after the stores).
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::int64_t> busy_ns{0};
  // Idle time, encoded so that one load gives an exact value even mid-wait (times are ns since
  // the epoch):  not waiting: 2 * idle_total;  waiting since t: 2 * (idle_total - t) + 1, so
  // that idle(now) = idle_total + (now - t).
  std::atomic<std::int64_t> idle_mark{1};
  atomic_histogram handler_time;
  atomic_histogram queue_wait;
};

struct fleet_server {
  std::size_t index = 0;
  enum class life : unsigned char { starting, open, aborted } life = life::starting;
  server_state state = server_state::serving;  // meaningful once open
  std::vector<std::unique_ptr<fleet_slot>> slots;
  std::size_t reported = 0;  // slots that called slot_started()
  std::size_t live = 0;      // slots whose thread has not exited (or never started)
  std::size_t listed = 0;    // its slots asleep in idle_wait() and not yet woken
  std::size_t consecutive = 0;
  std::uint64_t ejections = 0;
  std::uint64_t retried = 0;
  // The next ejection lasts min(eject_for * multiplier, max_eject_for). It stops doubling once that
  // reaches max_eject_for, so it stays below 2 * max_eject_for / eject_for (2^36 for a year over 1 ms)
  // and eject_for * multiplier below two years in nanoseconds: no overflow.
  std::int64_t multiplier = 1;
  fleet::clock::duration last_ejection{0};
  fleet::clock::time_point until{};
  bool probe_out = false;   // a slot took the probe and has not reported its result
  bool probe_wake = false;  // a slot was woken to probe: wake no second one for the same probe
};

namespace {

std::int64_t decode_idle(std::int64_t mark, std::int64_t now) noexcept {
  const std::int64_t base = mark >> 1;  // arithmetic shift (C++20): floor(mark / 2)
  const std::int64_t idle = (mark & 1) != 0 ? base + now : base;
  return idle < 0 ? 0 : idle;  // a reader's clock read can trail the writer's by a hair
}

}  // namespace

fleet::fleet(const server_pool_options& options)
    // Validated before any member converts a duration: a huge one would overflow (UBSan).
    : m_capacity((validate(options), options.queue_capacity)),
      m_max_attempts(options.max_attempts),
      m_eject_after(options.eject_after),
      m_eject_for(options.eject_for),
      m_max_eject_for(options.max_eject_for.count() > 0
                          ? std::chrono::nanoseconds(options.max_eject_for)
                          : std::chrono::nanoseconds(options.eject_for) * k_default_max_multiplier),
      m_max_ejected_percent(options.max_ejected_percent),
      m_budget_ratio(options.retry_budget_ratio),
      m_budget_floor_per_second(options.retry_budget_min_per_second),
      m_budget_bucket(std::chrono::nanoseconds(options.retry_budget_window) / static_cast<int>(k_budget_buckets)),
      m_epoch(clock::now()) {
  if (m_budget_bucket.count() <= 0) {
    m_budget_bucket = std::chrono::nanoseconds{1};
  }
  m_servers.reserve(options.servers);
}

fleet::~fleet() = default;

std::int64_t fleet::now_ns(clock::time_point t) const noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - m_epoch).count();
}

// ---- Membership ----

std::size_t fleet::begin_server(std::size_t slots) {
  if (slots == 0) {
    throw std::invalid_argument("flowpool::server_pool::add_server(): slots must be at least 1 (got 0)");
  }
  constexpr std::size_t k_max = server_pool_options::k_max_threads;
  if (slots > k_max) {  // before allocating anything: a huge count must not become a huge allocation
    throw std::invalid_argument("flowpool::server_pool::add_server(): " + std::to_string(slots) +
                                " slots is more than k_max_threads (" + std::to_string(k_max) + ")");
  }
  auto server = std::make_unique<fleet_server>();
  server->slots.reserve(slots);
  for (std::size_t i = 0; i < slots; ++i) {
    auto slot = std::make_unique<fleet_slot>();
    slot->server = server.get();
    slot->index = i;
    server->slots.push_back(std::move(slot));
  }
  server->live = slots;
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (slots > k_max - m_live_slots) {
    throw std::invalid_argument("flowpool::server_pool::add_server(): " + std::to_string(slots) +
                                " more slots would make " + std::to_string(m_live_slots) + " + " +
                                std::to_string(slots) + " live slot threads, more than k_max_threads (" +
                                std::to_string(k_max) + ")");
  }
  server->index = m_servers.size();
  const std::int64_t now = now_ns(clock::now());
  for (auto& slot : server->slots) {
    slot->wait_start = now;
    slot->idle_mark.store(2 * (0 - now) + 1, std::memory_order_relaxed);  // relaxed: a tally (see fleet_slot)
  }
  m_servers.push_back(std::move(server));  // the only step that can throw under the lock: then nothing changed
  m_live_slots += slots;
  return m_servers.size() - 1;
}

fleet_slot& fleet::slot_of(std::size_t server, std::size_t slot) noexcept {
  // Only the membership holder calls this, and only it appends to m_servers: no concurrent writer.
  return *m_servers[server]->slots[slot];
}

bool fleet::slot_started(fleet_slot& slot, std::exception_ptr failure) noexcept {
  lock_type lock(m_mutex);
  fleet_server& server = *slot.server;
  slot.phase = failure ? fleet_slot::phase::failed : fleet_slot::phase::ready;
  slot.failure = std::move(failure);
  ++server.reported;
  m_started.notify_all();
  if (slot.phase == fleet_slot::phase::failed) {
    return false;
  }
  slot.cv.wait(lock, [&] { return server.life != fleet_server::life::starting; });
  if (server.life != fleet_server::life::open) {
    return false;
  }
  slot.phase = fleet_slot::phase::running;
  return true;
}

std::exception_ptr fleet::await_started(std::size_t server, std::size_t started) noexcept {
  lock_type lock(m_mutex);
  fleet_server& s = *m_servers[server];
  m_started.wait(lock, [&] { return s.reported >= started; });
  for (const auto& slot : s.slots) {
    if (slot->failure) {
      return slot->failure;
    }
  }
  return nullptr;
}

void fleet::open_server(std::size_t server) noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  fleet_server& s = *m_servers[server];
  s.life = fleet_server::life::open;
  s.state = server_state::serving;
  ++m_serving;
  m_active_slots += s.slots.size();
  m_opened = m_servers.size();
  for (auto& slot : s.slots) {
    slot->cv.notify_one();  // it waits in slot_started()
  }
}

void fleet::abort_server(std::size_t server) noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  fleet_server& s = *m_servers[server];
  s.life = fleet_server::life::aborted;
  for (auto& slot : s.slots) {
    slot->cv.notify_one();
  }
}

void fleet::remove_server(std::size_t server) noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  m_live_slots -= m_servers[server]->live;  // the slots whose thread never started
  m_servers.pop_back();                     // it is the last: begin..remove is serialised
}

void fleet::drain_server(std::size_t server) {
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (server >= m_opened) {
    throw std::invalid_argument("flowpool::server_pool::drain_server(): no server " + std::to_string(server) +
                                " (the pool has " + std::to_string(m_opened) + ")");
  }
  fleet_server& s = *m_servers[server];
  if (s.state == server_state::draining || s.state == server_state::drained) {
    return;
  }
  bool other = false;
  for (std::size_t i = 0; i < m_opened && !other; ++i) {
    const server_state st = m_servers[i]->state;
    other = i != server && (st == server_state::serving || st == server_state::ejected);
  }
  if (!other) {
    throw std::logic_error("flowpool::server_pool::drain_server(" + std::to_string(server) +
                           "): it is the last server that is serving or ejected, so the queue would have no one "
                           "to serve it; add a server first, or shut down");
  }
  if (s.state == server_state::serving) {
    --m_serving;
  } else {
    --m_ejected;
  }
  m_active_slots -= s.slots.size();
  s.state = s.live == 0 ? server_state::drained : server_state::draining;
  wake_all();  // its slots exit; requests that avoided some other server may now have a taker
}

unsigned char fleet::state(std::size_t server) const {
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (server >= m_opened) {
    throw std::invalid_argument("flowpool::server_pool::state(): no server " + std::to_string(server) +
                                " (the pool has " + std::to_string(m_opened) + ")");
  }
  return static_cast<unsigned char>(m_servers[server]->state);
}

std::size_t fleet::server_count() const noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  return m_opened;
}

std::size_t fleet::live_slots() const noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  return m_live_slots;
}

std::size_t fleet::active_slots() const noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  return m_active_slots;
}

bool fleet::has_exited(const fleet_slot& slot) noexcept {
  return slot.phase == fleet_slot::phase::exited;
}

// ---- Submitting ----

bool fleet::wait_for_room(lock_type& lock, bool bypass, clock::time_point until) {
  if (m_shutdown) {
    return false;
  }
  if (bypass || m_queued < m_capacity) {
    return true;
  }
  if (until == clock::time_point::min()) {
    return false;
  }
  ++m_waiting_submitters;
  while (!m_shutdown && m_queued >= m_capacity) {
    if (until == clock::time_point::max()) {
      m_room.wait(lock);
    } else if (m_room.wait_until(lock, until) == std::cv_status::timeout) {
      break;  // a notification consumed with the timeout still finds the room below
    }
  }
  --m_waiting_submitters;
  return !m_shutdown && m_queued < m_capacity;
}

void fleet::room_unused() noexcept {
  if (m_waiting_submitters > 0 && m_queued < m_capacity) {
    m_room.notify_one();
  }
}

fleet_slot* fleet::pushed(clock::time_point now) noexcept {
  ++m_queued;
  ++m_unfinished;
  ++m_accepted;
  m_high_water = std::max(m_high_water, m_queued);
  budget_rotate(now);
  ++m_budget_requests[m_budget_head];
  // One wake-up in flight at a time: a woken slot takes this entry if it is still there, and each
  // taker wakes the next sleeper while entries remain (serve()), so a burst still reaches every
  // slot, one hand-off at a time, while a stream that slots keep up with wakes no one needlessly.
  return m_wakes_pending == 0 ? wake_for(k_no_server) : nullptr;
}

fleet_slot* fleet::requeued(std::size_t avoid) noexcept {
  ++m_queued;
  m_high_water = std::max(m_high_water, m_queued);
  return wake_for(avoid);
}

// ---- Slots ----

slot_gate fleet::gate(fleet_slot& slot, clock::time_point now) noexcept {
  const fleet_server& server = *slot.server;
  if (server.state == server_state::draining || server.state == server_state::drained) {
    return slot_gate::exit;
  }
  // Graceful shutdown waits for the attempts in flight too: a failed one may come back as a retry.
  if (m_shutdown && m_queued == 0 && (m_shutdown_now || m_unfinished == 0)) {
    return slot_gate::exit;
  }
  if (server.state == server_state::ejected) {
    return now < server.until || server.probe_out ? slot_gate::wait : slot_gate::probe;
  }
  return slot_gate::serve;
}

bool fleet::serving_other_than(std::size_t server) const noexcept {
  const std::size_t self = server < m_servers.size() && m_servers[server]->state == server_state::serving ? 1 : 0;
  return m_serving > self;
}

bool fleet::may_take(const fleet_slot& slot, std::size_t avoid) const noexcept {
  return avoid != slot.server->index || !serving_other_than(avoid);
}

void fleet::idle_wait(lock_type& lock, fleet_slot& slot) noexcept {
  fleet_server& server = *slot.server;
  slot.listed = true;
  ++server.listed;
  ++m_listed;
  // An ejected server's slots sleep until the ejection ends (no polling); everyone else until woken.
  // Once the ejection has ended (a probe is due but nothing is queued for it), the wait is untimed:
  // a timed wait on a past deadline would return at once, and the slot would spin.
  const clock::time_point until = server.until;
  const bool timed = server.state == server_state::ejected && !server.probe_out && clock::now() < until;
  while (!slot.woken) {
    if (!timed) {
      slot.cv.wait(lock);
    } else if (slot.cv.wait_until(lock, until) == std::cv_status::timeout) {
      break;
    }
  }
  if (slot.woken) {
    slot.woken = false;
    --m_wakes_pending;
    if (slot.probe_wake) {
      slot.probe_wake = false;
      server.probe_wake = false;
    }
  } else {
    slot.listed = false;
    --server.listed;
    --m_listed;
  }
}

void fleet::took(fleet_slot& slot, bool probe) noexcept {
  --m_queued;
  if (m_waiting_submitters > 0 && m_queued < m_capacity) {
    m_room.notify_one();  // one place freed, one submitter
  }
  if (probe) {
    slot.probing = true;
    slot.server->probe_out = true;
  }
}

// The record_* members run on the slot's own thread without the mutex: the slot is the only writer
// of its totals, and stats() reads only the atomics (relaxed, see fleet_slot). A join()er still sees
// the final values: each record_* is sequenced before the locked finished()/expired() that counts
// the request done.
void fleet::record_take(fleet_slot& slot, bool runs, clock::time_point now,
                        std::chrono::nanoseconds waited) const noexcept {
  slot.idle_total += now_ns(now) - slot.wait_start;
  slot.idle_mark.store(2 * slot.idle_total, std::memory_order_relaxed);  // relaxed: a tally (see fleet_slot)
  if (runs) {
    slot.queue_wait.record(waited);
  }
}

void fleet::record_attempt(fleet_slot& slot, attempt_outcome outcome, clock::time_point started,
                           std::chrono::nanoseconds handler_time, clock::time_point ended) const noexcept {
  // Relaxed stores (here and below): single-writer tallies, see fleet_slot.
  slot.handled.store(++slot.handled_total, std::memory_order_relaxed);
  if (outcome != attempt_outcome::succeeded) {
    slot.failed.store(++slot.failed_total, std::memory_order_relaxed);
  }
  slot.handler_time.record(handler_time);
  record_busy(slot, started, ended);
}

void fleet::record_busy(fleet_slot& slot, clock::time_point started, clock::time_point ended) const noexcept {
  slot.busy_total += std::chrono::duration_cast<std::chrono::nanoseconds>(ended - started).count();
  slot.busy_ns.store(slot.busy_total, std::memory_order_relaxed);  // relaxed: a tally (see fleet_slot)
  slot.wait_start = now_ns(ended);
  slot.idle_mark.store(2 * (slot.idle_total - slot.wait_start) + 1, std::memory_order_relaxed);  // as above
}

bool fleet::wake_wanted() const noexcept {
  return m_listed > 0 && m_queued > m_wakes_pending;
}

bool fleet::can_take_now(const fleet_server& server, std::size_t avoid, bool other_serving,
                         clock::time_point now) const noexcept {
  if (server.life != fleet_server::life::open || server.listed == 0) {
    return false;
  }
  if (avoid == server.index && other_serving) {
    return false;
  }
  if (server.state == server_state::serving) {
    return true;
  }
  return server.state == server_state::ejected && !server.probe_out && !server.probe_wake && now >= server.until;
}

fleet_slot* fleet::wake_in(fleet_server& server) noexcept {
  for (auto& slot : server.slots) {
    if (slot->listed) {
      slot->listed = false;
      slot->woken = true;
      --server.listed;
      --m_listed;
      ++m_wakes_pending;
      return slot.get();
    }
  }
  return nullptr;  // unreachable while server.listed > 0
}

fleet_slot* fleet::wake_for(std::size_t avoid) noexcept {
  if (m_listed == 0) {
    return nullptr;
  }
  const bool other_serving = avoid != k_no_server && serving_other_than(avoid);
  const std::size_t n = m_opened;
  if (m_ejected > 0) {
    // A server whose ejection has ended probes first, so that it gets back into rotation.
    const clock::time_point now = clock::now();
    for (std::size_t i = 0; i < n; ++i) {
      fleet_server& server = *m_servers[i];
      if (server.state == server_state::ejected && can_take_now(server, avoid, other_serving, now)) {
        fleet_slot* slot = wake_in(server);
        slot->probe_wake = true;  // one wake-up per due probe: the others go to serving servers
        server.probe_wake = true;
        return slot;
      }
    }
  }
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (m_wake_cursor + k) % n;  // round robin, so light load spreads over servers
    fleet_server& server = *m_servers[i];
    if (server.state == server_state::serving && can_take_now(server, avoid, other_serving, clock::time_point{})) {
      m_wake_cursor = i + 1;
      return wake_in(server);
    }
  }
  return nullptr;
}

void fleet::wake_all() noexcept {
  for (std::size_t i = 0; i < m_opened; ++i) {
    fleet_server& server = *m_servers[i];
    while (server.listed > 0) {
      wake_in(server)->cv.notify_one();  // under the lock: a rare event (state change, shutdown)
    }
  }
}

void fleet::eject(fleet_server& server, clock::time_point now) noexcept {
  if (server.state == server_state::serving) {
    --m_serving;
    ++m_ejected;
    server.state = server_state::ejected;
  }
  const std::chrono::nanoseconds doubled = m_eject_for * server.multiplier;
  server.last_ejection = std::min(doubled, m_max_eject_for);
  server.until = now + server.last_ejection;
  if (doubled < m_max_eject_for) {
    server.multiplier *= 2;
  }
  ++server.ejections;
  server.consecutive = 0;
  wake_all();  // its sleeping slots now sleep until `until`; other servers may take what avoided it
}

failure_decision fleet::decide(fleet_slot& slot, attempt_outcome outcome, std::size_t attempt, bool retry_possible,
                               clock::time_point now) noexcept {
  fleet_server& server = *slot.server;
  const bool was_probe = slot.probing;
  slot.probing = false;
  if (was_probe) {
    server.probe_out = false;
  }
  if (outcome == attempt_outcome::permanent) {
    // The server answered; the request was bad. Like a success for the ejection state machine.
    server.consecutive = 0;
    if (was_probe && server.state == server_state::ejected) {
      server.state = server_state::serving;
      --m_ejected;
      ++m_serving;
      server.multiplier = 1;
      wake_all();
    }
    return failure_decision::final_permanent;
  }
  ++server.consecutive;
  if (was_probe) {
    if (server.state == server_state::ejected && !m_shutdown) {
      eject(server, now);  // again, for twice as long
    }
  } else if (m_eject_after > 0 && !m_shutdown && server.state == server_state::serving &&
             server.consecutive >= m_eject_after) {
    const std::size_t eligible = m_serving + m_ejected;  // servers that are not draining
    const std::size_t cap = std::max<std::size_t>(1, eligible * m_max_ejected_percent / 100);
    if (m_ejected + 1 <= cap) {
      eject(server, now);
    }
  }
  if (attempt >= m_max_attempts) {
    return failure_decision::final_attempts;
  }
  if (m_shutdown_now) {
    return failure_decision::final_shut_down;
  }
  if (!retry_possible) {
    return failure_decision::final_no_memory;
  }
  if (!budget_allows(now)) {
    ++m_budget_refusals;
    return failure_decision::final_budget;
  }
  ++server.retried;
  return failure_decision::retry;
}

void fleet::finished(fleet_slot& slot, attempt_outcome outcome, bool final) noexcept {
  fleet_server& server = *slot.server;
  if (outcome == attempt_outcome::succeeded) {
    server.consecutive = 0;
    if (slot.probing) {
      slot.probing = false;
      server.probe_out = false;
      if (server.state == server_state::ejected) {
        server.state = server_state::serving;
        --m_ejected;
        ++m_serving;
        server.multiplier = 1;  // its next ejection starts at eject_for again
        wake_all();
      }
    }
  }
  if (final) {
    if (outcome == attempt_outcome::succeeded) {
      ++m_succeeded;
    } else {
      ++m_final_failures;
    }
    done_one();
  }
}

void fleet::expired() noexcept {
  ++m_expired;
  done_one();
}

void fleet::slot_exited(fleet_slot& slot) noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  fleet_server& server = *slot.server;
  slot.phase = fleet_slot::phase::exited;
  --server.live;
  --m_live_slots;
  if (server.state == server_state::draining && server.live == 0) {
    server.state = server_state::drained;
  }
}

void fleet::done_one() noexcept {
  --m_unfinished;
  if (m_unfinished == 0) {
    m_idle.notify_all();
    if (m_shutdown) {
      wake_all();  // the slots waiting for a possible retry may exit now
    }
  }
}

// ---- Retry budget ----

void fleet::budget_rotate(clock::time_point now) noexcept {
  const std::int64_t bucket = now_ns(now) / m_budget_bucket.count();
  if (bucket <= m_budget_bucket_start) {
    return;
  }
  const std::int64_t steps = std::min<std::int64_t>(bucket - m_budget_bucket_start, k_budget_buckets);
  for (std::int64_t i = 0; i < steps; ++i) {
    m_budget_head = (m_budget_head + 1) % k_budget_buckets;
    m_budget_requests[m_budget_head] = 0;
    m_budget_retries[m_budget_head] = 0;
  }
  m_budget_bucket_start = bucket;
}

bool fleet::budget_allows(clock::time_point now) noexcept {
  if (std::isinf(m_budget_ratio)) {
    return true;
  }
  budget_rotate(now);
  std::uint64_t requests = 0;
  std::uint64_t retries = 0;
  for (std::size_t i = 0; i < k_budget_buckets; ++i) {
    requests += m_budget_requests[i];
    retries += m_budget_retries[i];
  }
  const double window_seconds =
      std::chrono::duration<double>(m_budget_bucket * static_cast<int>(k_budget_buckets)).count();
  const double allowed = m_budget_floor_per_second * window_seconds + m_budget_ratio * static_cast<double>(requests);
  if (static_cast<double>(retries) + 1.0 > allowed) {
    return false;
  }
  ++m_budget_retries[m_budget_head];
  return true;
}

// ---- Shutdown and join ----

void fleet::shutdown() noexcept {
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (m_shutdown) {
    return;
  }
  m_shutdown = true;
  end_ejections();
  m_room.notify_all();
  wake_all();
}

void fleet::end_ejections() noexcept {
  // After shutdown the queue drains on every server: a dead fleet must not make the destructor wait
  // one probe per ejection period per request. A failed attempt is still retried on another server.
  for (std::size_t i = 0; i < m_opened; ++i) {
    fleet_server& server = *m_servers[i];
    if (server.state == server_state::ejected) {
      server.state = server_state::serving;
      --m_ejected;
      ++m_serving;
    }
  }
}

void fleet::shut_down_now(std::size_t returned) noexcept {
  if (!m_shutdown) {
    m_shutdown = true;
    end_ejections();
  }
  m_shutdown_now = true;
  m_queued -= returned;  // the template removed every queued entry: m_queued is 0 now
  m_unfinished -= returned;
  m_returned += returned;
  m_room.notify_all();
  if (m_unfinished == 0) {
    m_idle.notify_all();
  }
  wake_all();
}

void fleet::join(lock_type& lock) noexcept {
  m_idle.wait(lock, [&] { return m_unfinished == 0; });
}

bool fleet::join_until(lock_type& lock, clock::time_point until) noexcept {
  if (until == clock::time_point::max()) {
    join(lock);
    return true;
  }
  return m_idle.wait_until(lock, until, [&] { return m_unfinished == 0; });
}

void fleet::notify(fleet_slot* slot) noexcept {
  if (slot != nullptr) {
    slot->cv.notify_one();  // its record lives as long as the pool, so this is safe after the unlock
  }
}

// ---- Stats ----

void fleet::fill_stats(server_pool_stats& out) const {
  std::vector<const fleet_slot*> slots;
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    out.servers.resize(m_opened);
    for (std::size_t i = 0; i < m_opened; ++i) {
      const fleet_server& server = *m_servers[i];
      server_stats& s = out.servers[i];
      s.slots = server.slots.size();
      s.state = server.state;
      s.ejections = server.ejections;
      s.last_ejection = server.last_ejection;
      s.retried = server.retried;
      for (const auto& slot : server.slots) {
        slots.push_back(slot.get());
      }
    }
    out.queue_high_water_mark = m_high_water;
    out.queued = m_queued;
    out.unfinished = m_unfinished;
    out.accepted = m_accepted;
    out.succeeded = m_succeeded;
    out.final_failures = m_final_failures;
    out.expired = m_expired;
    out.returned = m_returned;
    out.retry_budget_refusals = m_budget_refusals;
  }
  // The records outlive the pool's use of them (append-only), so they can be read unlocked.
  out.slots.reserve(slots.size());
  const std::int64_t now = now_ns(clock::now());
  for (const fleet_slot* slot : slots) {
    slot_stats s;
    s.id = slot_id{slot->server->index, slot->index};
    // Relaxed: single-writer tallies that publish no other data (see fleet_slot).
    s.handled = slot->handled.load(std::memory_order_relaxed);
    s.failed = slot->failed.load(std::memory_order_relaxed);
    s.busy = std::chrono::nanoseconds(slot->busy_ns.load(std::memory_order_relaxed));
    s.idle = std::chrono::nanoseconds(decode_idle(slot->idle_mark.load(std::memory_order_relaxed), now));
    server_stats& server = out.servers[s.id.server];
    server.handled += s.handled;
    server.failed += s.failed;
    server.busy += s.busy;
    slot->handler_time.add_to(server.handler_time);
    slot->queue_wait.add_to(out.queue_wait);
    out.slots.push_back(s);
  }
}

}  // namespace flowpool::detail
