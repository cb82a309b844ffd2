// The non-template part of flowpool::redis::stream_source: a reader thread (XREADGROUP, XAUTOCLAIM,
// recovery of its own pending list) and an acknowledger thread (dead letters, XACK), each with its
// own connection, sharing one mutex with the pool's slots (completed()/failed()).
//
// Memory model: every field below marked "m_mutex" is read and written only under `mutex`; there
// are no atomics. The pool's submit gives the reader -> handler edge; the mutex gives the handler
// (completed/failed) -> acknowledger edge, so an XACK is always sent after its handler returned.

#include "connection.hpp"

#include <flowpool/redis/stream_source.hpp>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

namespace flowpool::redis::detail {

namespace {

using clock = std::chrono::steady_clock;

// A reply that is an error Redis will keep giving (no retry helps): the source stops.
class fatal_reply : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool is_fatal_error(const std::string& text) {
  return text.starts_with("NOGROUP") || text.starts_with("WRONGTYPE") || text.starts_with("ERR");
}

// Throws for an error reply: fatal_reply for errors that stay, io_failure (retry) for the others
// (LOADING after a restart, BUSY, OOM, READONLY...).
void check_reply(const redisReply* r, const std::string& what) {
  const std::string text = error_text(r);
  if (text.empty()) {
    return;
  }
  if (is_fatal_error(text)) {
    throw fatal_reply(what + ": " + text);
  }
  throw io_failure(what + ": " + text);
}

std::string str(const redisReply* r) {
  return std::string(r->str, r->len);
}

// One entry of an XREADGROUP/XAUTOCLAIM reply; `deleted` when Redis no longer has its fields.
struct raw_entry {
  stream_entry entry;
  bool deleted = false;
};

void parse_entries(const redisReply* list, std::vector<raw_entry>& out) {
  if (list == nullptr || list->type != REDIS_REPLY_ARRAY) {
    return;
  }
  for (std::size_t i = 0; i < list->elements; ++i) {
    const redisReply* e = list->element[i];
    if (e == nullptr || e->type != REDIS_REPLY_ARRAY || e->elements < 1 || e->element[0]->type != REDIS_REPLY_STRING) {
      continue;  // XAUTOCLAIM of Redis 6.2 may list a deleted entry as nil: it drops it from the PEL itself
    }
    raw_entry r;
    r.entry.id = str(e->element[0]);
    const redisReply* fields = e->elements >= 2 ? e->element[1] : nullptr;
    if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) {
      r.deleted = true;
    } else {
      for (std::size_t k = 0; k + 1 < fields->elements; k += 2) {
        r.entry.fields.emplace_back(str(fields->element[k]), str(fields->element[k + 1]));
      }
    }
    out.push_back(std::move(r));
  }
}

const char* reason_name(failure_reason reason) {
  switch (reason) {
    case failure_reason::attempts_exhausted:
      return "attempts_exhausted";
    case failure_reason::permanent_error:
      return "permanent_error";
    case failure_reason::retry_budget:
      return "retry_budget";
    case failure_reason::shut_down:
      return "shut_down";
    case failure_reason::out_of_memory:
      return "out_of_memory";
  }
  return "unknown";
}

std::string describe(const std::exception_ptr& error) {
  if (!error) {
    return "unknown error";
  }
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "a non-std exception";
  }
}

void validate(const stream_source_options& o) {
  auto bad = [](const std::string& field, const std::string& why) {
    throw std::invalid_argument("flowpool::redis::stream_source_options::" + field + ": " + why);
  };
  if (o.stream.empty()) {
    bad("stream", "must not be empty");
  }
  if (o.group.empty()) {
    bad("group", "must not be empty");
  }
  if (o.consumer.empty()) {
    bad("consumer", "must not be empty");
  }
  if (!endpoint::parse(o.redis)) {
    bad("redis", "'" + o.redis + "' is neither unix:PATH nor HOST:PORT");
  }
  if (o.group_start_id.empty()) {
    bad("group_start_id", "must not be empty (use 0 or $)");
  }
  if (o.max_read == 0) {
    bad("max_read", "must be at least 1");
  }
  if (o.ack_batch == 0) {
    bad("ack_batch", "must be at least 1");
  }
  if (o.block.count() <= 0) {
    bad("block", "must be positive, is " + std::to_string(o.block.count()) + " ms");
  }
  const std::pair<const char*, std::chrono::milliseconds> durations[] = {
      {"claim_idle", o.claim_idle},
      {"claim_interval", o.claim_interval},
      {"ack_delay", o.ack_delay},
      {"connect_timeout", o.connect_timeout},
      {"command_timeout", o.command_timeout},
      {"backoff_min", o.backoff_min},
      {"backoff_max", o.backoff_max},
      {"shutdown_flush_timeout", o.shutdown_flush_timeout}};
  for (const auto& [name, value] : durations) {
    if (value.count() < 0) {
      bad(name, "must not be negative, is " + std::to_string(value.count()) + " ms");
    }
  }
  if (o.connect_timeout.count() == 0 || o.command_timeout.count() == 0) {
    bad(o.connect_timeout.count() == 0 ? "connect_timeout" : "command_timeout", "must be positive");
  }
  if (o.backoff_min > o.backoff_max) {
    bad("backoff_min", "must not exceed backoff_max");
  }
}

// Exponential backoff between backoff_min and backoff_max.
class backoff {
 public:
  backoff(std::chrono::milliseconds lo, std::chrono::milliseconds hi) noexcept : m_lo(lo), m_hi(hi), m_next(lo) {}
  std::chrono::milliseconds next() noexcept {
    const std::chrono::milliseconds now = m_next;
    m_next = std::min(m_hi, std::max(m_next * 2, std::chrono::milliseconds(1)));
    return now;
  }
  void reset() noexcept { m_next = m_lo; }

 private:
  std::chrono::milliseconds m_lo;
  std::chrono::milliseconds m_hi;
  std::chrono::milliseconds m_next;
};

struct dead_letter {
  stream_entry entry;
  std::string reason;
  std::string error;
  std::size_t attempts = 0;
};

enum class stop_mode : unsigned char { none, graceful, immediate };

// hiredis writes with write(2): a write to a connection whose server died raises SIGPIPE, which
// would kill the process. The source's own threads block it, so the write fails with EPIPE and the
// connection is retried; the signal stays pending on that thread only, where it is never delivered.
void block_sigpipe_on_this_thread() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

struct source_core::impl {
  impl(stream_source_options o, source_sink& s)
      : options(std::move(o)),
        where(*endpoint::parse(options.redis)),
        dead_stream(options.dead_letter_stream.empty() ? options.stream + ":dead" : options.dead_letter_stream),
        sink(s),
        reader_conn(where, options.connect_timeout, options.block + options.command_timeout),
        acker_conn(where, options.connect_timeout, options.command_timeout),
        claim_interval(options.claim_interval.count() > 0
                           ? options.claim_interval
                           : std::max(options.claim_idle / 2, std::chrono::milliseconds(1))) {}

  // ---- immutable after construction ----
  const stream_source_options options;
  const endpoint where;
  const std::string dead_stream;
  source_sink& sink;
  connection reader_conn;  // reader thread only (and the constructor, before it starts)
  connection acker_conn;   // acknowledger thread only
  const std::chrono::milliseconds claim_interval;

  // ---- shared: guarded by m_mutex ----
  mutable std::mutex mutex;
  std::condition_variable reader_cv;  // reader waits for room / stop; completed() and shutdown*() notify
  std::condition_variable acker_cv;   // acker waits for work / stop
  stop_mode stop = stop_mode::none;
  bool acker_stop = false;
  bool reader_done = false;              // the reader finished and the pool was joined
  std::size_t in_pool = 0;               // entries submitted to the pool whose request has not finished
  std::size_t overflow_count = 0;        // entries read that the pool refused for now (reader's overflow)
  std::size_t slots_cache = 1;           // sink.slots(), refreshed by the reader (completed() must not call the pool)
  std::size_t capacity_cache = 1;        // sink.capacity()
  std::unordered_set<std::string> held;  // ids read and not yet acked or left pending
  // A reply that lists entries this consumer may already have had (its own pending list, a claim)
  // can list one it held when the command was sent and has released since (acknowledged, or left
  // pending) before take() gets to it; take() would then see an id it does not hold and hand the
  // entry out a second time, in a living process. So while such a reply is on its way, released
  // ids are kept here too, and take() skips them like held ones.
  bool collect_released = false;
  std::unordered_set<std::string> released_meanwhile;
  std::vector<std::string> acks;   // to XACK
  clock::time_point oldest_ack{};  // when acks became non-empty
  std::vector<dead_letter> dead;   // to XADD to the dead-letter stream, then XACK
  stream_source_stats st;
  std::exception_ptr fatal;

  // ---- threads ----
  std::thread reader;
  std::thread acker;
  std::mutex join_mutex;  // serialises join()

  void event(const std::string& text) noexcept {
    if (options.on_event) {
      try {
        options.on_event(text);
      } catch (...) {  // documented: must not throw; dropped
      }
    }
  }

  void note_held() noexcept {  // m_mutex held
    st.held = held.size();
    st.held_high_water = std::max(st.held_high_water, st.held);
    st.in_pool = in_pool + overflow_count;
    st.in_pool_high_water = std::max(st.in_pool_high_water, st.in_pool);
  }

  void release(const std::string& id) noexcept {  // m_mutex held; the one way out of `held`
    if (held.erase(id) != 0 && collect_released) {
      try {
        released_meanwhile.insert(id);
      } catch (...) {  // bad_alloc: take() may hand it out again (at least once, not lost)
      }
    }
  }

  // Whether take() must skip entry `id` of the reply it is given: held, or released since the
  // command was sent.
  [[nodiscard]] bool ours_already(const std::string& id) const {  // m_mutex held
    return held.contains(id) || released_meanwhile.contains(id);
  }

  // From before a command that may list entries we had (own pending list, claim) until its reply
  // was taken: collects the ids released meanwhile (see released_meanwhile).
  class collecting_released {
   public:
    explicit collecting_released(impl& s) : m_s(s) {
      const std::lock_guard<std::mutex> lock(m_s.mutex);
      m_s.released_meanwhile.clear();
      m_s.collect_released = true;
    }
    collecting_released(const collecting_released&) = delete;
    collecting_released& operator=(const collecting_released&) = delete;
    ~collecting_released() {
      const std::lock_guard<std::mutex> lock(m_s.mutex);
      m_s.collect_released = false;
      m_s.released_meanwhile.clear();
    }

   private:
    impl& m_s;
  };

  [[nodiscard]] std::size_t room() const noexcept {  // m_mutex held
    const std::size_t total = capacity_cache + slots_cache;
    const std::size_t used = in_pool + overflow_count;
    return used >= total ? 0 : total - used;
  }
  [[nodiscard]] bool wants_read() const noexcept {  // m_mutex held
    const std::size_t r = room();
    const std::size_t refill = std::max<std::size_t>(1, (capacity_cache + slots_cache) / 2);
    return r >= refill || (r > 0 && in_pool < slots_cache);
  }

  // ---- constructor-time checks (reader_conn, before the threads start) ----
  void check_stream() {
    try {
      reader_conn.open();
    } catch (const io_failure& e) {
      throw connection_error(std::string("flowpool::redis::stream_source: ") + e.what());
    }
    try {
      if (options.create_group) {
        reply_ptr r = reader_conn.command(
            {"XGROUP", "CREATE", options.stream, options.group, options.group_start_id, "MKSTREAM"});
        const std::string err = error_text(r.get());
        if (!err.empty() && !err.starts_with("BUSYGROUP")) {
          throw stream_error("flowpool::redis::stream_source: cannot create group '" + options.group + "' on stream '" +
                             options.stream + "': " + err);
        }
      }
      const std::string type = string_of(reader_conn.command({"TYPE", options.stream}).get());
      if (type == "none") {
        throw stream_error("flowpool::redis::stream_source: unknown stream '" + options.stream +
                           "' (it does not exist; create it, or set create_group)");
      }
      if (type != "stream") {
        throw stream_error("flowpool::redis::stream_source: key '" + options.stream + "' is a " + type +
                           ", not a stream");
      }
      reply_ptr groups = reader_conn.command({"XINFO", "GROUPS", options.stream});
      check_group_listed(groups.get());
      const std::string dead_type = string_of(reader_conn.command({"TYPE", dead_stream}).get());
      if (dead_type != "none" && dead_type != "stream") {
        throw stream_error("flowpool::redis::stream_source: the dead-letter key '" + dead_stream + "' is a " +
                           dead_type + ", not a stream");
      }
    } catch (const io_failure& e) {
      throw connection_error(std::string("flowpool::redis::stream_source: ") + e.what());
    }
  }

  void check_group_listed(const redisReply* groups) const {
    const std::string err = error_text(groups);
    if (!err.empty()) {
      throw stream_error("flowpool::redis::stream_source: XINFO GROUPS " + options.stream + ": " + err);
    }
    if (groups->type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < groups->elements; ++i) {
        const redisReply* g = groups->element[i];
        for (std::size_t k = 0; g != nullptr && g->type == REDIS_REPLY_ARRAY && k + 1 < g->elements; k += 2) {
          if (string_of(g->element[k]) == "name" && string_of(g->element[k + 1]) == options.group) {
            return;
          }
        }
      }
    }
    throw stream_error("flowpool::redis::stream_source: stream '" + options.stream + "' has no consumer group '" +
                       options.group + "' (create it with XGROUP CREATE, or set create_group)");
  }

  // ---- reader thread ----
  std::deque<stream_entry> overflow;  // reader only; its size is mirrored in overflow_count

  void reader_main() noexcept {
    backoff delay(options.backoff_min, options.backoff_max);
    std::optional<std::string> recover = std::string("0");  // first re-read this consumer's own pending list
    std::string claim_cursor = "0-0";
    clock::time_point next_claim = options.claim_idle.count() > 0 ? clock::now() : clock::time_point::max();
    bool ever_connected = true;  // the constructor connected
    for (;;) {
      {
        const std::size_t slots = sink.slots();
        const std::size_t capacity = sink.capacity();
        std::lock_guard<std::mutex> lock(mutex);
        slots_cache = std::max<std::size_t>(1, slots);
        capacity_cache = capacity;
        if (stop != stop_mode::none) {
          break;
        }
      }
      if (!overflow.empty()) {
        resubmit_overflow(false);
        if (!overflow.empty()) {
          wait_for_room(clock::now() + std::chrono::milliseconds(50));
          continue;
        }
      }
      try {
        if (!reader_conn.is_open()) {
          reader_conn.open();
          if (ever_connected) {
            std::lock_guard<std::mutex> lock(mutex);
            ++st.reconnects;
          }
          ever_connected = true;
          recover = std::string("0");  // a lost reply may have delivered entries to us
          event("reader: reconnected to " + where.to_string());
        }
        std::size_t room_now = 0;
        bool read_ok = false;
        {
          std::lock_guard<std::mutex> lock(mutex);
          // The stop is checked again under the lock that reads the room: a shutdown_now() since the
          // check at the top (e.g. while resubmit_overflow() ran) emptied the pool, and a read
          // decided on the room that freed would deliver entries to a consumer that is stopping;
          // they would stay pending in Redis until claimed elsewhere.
          if (stop != stop_mode::none) {
            continue;  // the top of the loop stops
          }
          room_now = room();
          read_ok = wants_read();
        }
        const std::size_t count = std::min(room_now, options.max_read);
        if (count > 0 && clock::now() >= next_claim) {
          if (claim(count, claim_cursor)) {
            next_claim = clock::now() + claim_interval;
          }
        } else if (count > 0 && recover) {
          if (!recover_step(count, *recover)) {
            recover.reset();
          }
        } else if (read_ok) {
          read_new(count);
        } else {
          wait_for_room(next_claim);
        }
        delay.reset();
      } catch (const io_failure& e) {
        reader_conn.close();
        const std::chrono::milliseconds wait = delay.next();
        event(std::string("reader: ") + e.what() + "; retrying in " + std::to_string(wait.count()) + " ms");
        std::unique_lock<std::mutex> lock(mutex);
        ++st.redis_errors;
        reader_cv.wait_for(lock, wait, [&] { return stop != stop_mode::none; });
      } catch (const fatal_reply& e) {
        event(std::string("reader: fatal: ") + e.what());
        std::lock_guard<std::mutex> lock(mutex);
        ++st.redis_errors;
        if (!fatal) {
          fatal = std::make_exception_ptr(stream_error(std::string("flowpool::redis::stream_source: ") + e.what()));
        }
        stop = stop_mode::immediate;
      } catch (...) {  // std::bad_alloc: back off and try again; nothing read is dropped
        std::unique_lock<std::mutex> lock(mutex);
        ++st.redis_errors;
        reader_cv.wait_for(lock, delay.next(), [&] { return stop != stop_mode::none; });
      }
    }
    finish_reading();
  }

  void wait_for_room(clock::time_point until) {
    std::unique_lock<std::mutex> lock(mutex);
    const std::size_t in_pool_before = in_pool;
    auto ready = [&] {
      return stop != stop_mode::none || (overflow_count == 0 ? wants_read() : in_pool < in_pool_before);
    };
    if (until == clock::time_point::max()) {
      reader_cv.wait(lock, ready);
    } else {
      reader_cv.wait_until(lock, until, ready);
    }
  }

  // XREADGROUP ... > : new entries.
  void read_new(std::size_t count) {
    reply_ptr r =
        reader_conn.command({"XREADGROUP", "GROUP", options.group, options.consumer, "COUNT", std::to_string(count),
                             "BLOCK", std::to_string(options.block.count()), "STREAMS", options.stream, ">"});
    count_round_trip();
    check_reply(r.get(), "XREADGROUP");
    std::vector<raw_entry> entries;
    if (r->type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* s = r->element[i];
        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2) {
          parse_entries(s->element[1], entries);
        }
      }
    }
    take(entries, &stream_source_stats::read);
  }

  // XREADGROUP ... <cursor>: this consumer's own pending entries after `cursor`. False when done.
  bool recover_step(std::size_t count, std::string& cursor) {
    const collecting_released collecting(*this);
    reply_ptr r = reader_conn.command({"XREADGROUP", "GROUP", options.group, options.consumer, "COUNT",
                                       std::to_string(count), "STREAMS", options.stream, cursor});
    count_round_trip();
    check_reply(r.get(), "XREADGROUP (own pending entries)");
    std::vector<raw_entry> entries;
    if (r->type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* s = r->element[i];
        if (s->type == REDIS_REPLY_ARRAY && s->elements == 2) {
          parse_entries(s->element[1], entries);
        }
      }
    }
    if (entries.empty()) {
      return false;
    }
    cursor = entries.back().entry.id;
    take(entries, &stream_source_stats::recovered);
    return true;
  }

  // XAUTOCLAIM: entries idle longer than claim_idle at any consumer. True when the scan is complete.
  bool claim(std::size_t count, std::string& cursor) {
    const collecting_released collecting(*this);
    reply_ptr r =
        reader_conn.command({"XAUTOCLAIM", options.stream, options.group, options.consumer,
                             std::to_string(options.claim_idle.count()), cursor, "COUNT", std::to_string(count)});
    count_round_trip();
    check_reply(r.get(), "XAUTOCLAIM");
    std::vector<raw_entry> entries;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
      cursor = string_of(r->element[0]);
      parse_entries(r->element[1], entries);
    } else {
      cursor = "0-0";
    }
    take(entries, &stream_source_stats::claimed);
    if (cursor.empty() || cursor == "0-0") {
      cursor = "0-0";
      return true;
    }
    return false;
  }

  void count_round_trip() {
    std::lock_guard<std::mutex> lock(mutex);
    ++st.round_trips;
  }

  // Hands read entries to the pool (skipping those already held), in order.
  void take(std::vector<raw_entry>& entries, std::uint64_t stream_source_stats::*counter) {
    for (raw_entry& r : entries) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stop == stop_mode::immediate) {
          // Not submitted, not held: it stays pending in Redis for another consumer.
          if (!ours_already(r.entry.id)) {
            ++(st.*counter);
            ++st.left_pending;
          }
          continue;
        }
        if (ours_already(r.entry.id)) {
          continue;  // already ours (e.g. re-listed by a recovery or a claim of our own entries)
        }
        ++(st.*counter);
        held.insert(r.entry.id);
        if (r.deleted) {  // gone from the stream: only its pending-list record is left; ack it
          push_ack(r.entry.id);
          note_held();
          continue;
        }
        if (!overflow.empty()) {  // keep the order: behind what the pool already refused
          overflow.push_back(std::move(r.entry));
          ++overflow_count;
          note_held();
          continue;
        }
        ++in_pool;  // before the submit: its handler may finish before offer() returns
        note_held();
      }
      offer_one(r.entry, false);
    }
  }

  // Offers one held entry whose in_pool count was taken. Reader thread only.
  void offer_one(stream_entry& e, bool wait) {
    std::string error;
    const offer_result res = sink.offer(e, wait, error);
    std::lock_guard<std::mutex> lock(mutex);
    if (res == offer_result::accepted) {
      ++st.submitted;
      return;
    }
    --in_pool;
    switch (res) {
      case offer_result::full:
        overflow.push_back(std::move(e));
        ++overflow_count;
        break;
      case offer_result::malformed:
        ++st.malformed;
        dead.push_back(dead_letter{std::move(e), "malformed", std::move(error), 0});
        acker_cv.notify_one();
        break;
      case offer_result::closed:  // the pool was shut down under the source: stop reading
        release(e.id);
        ++st.left_pending;
        if (stop == stop_mode::none) {
          stop = stop_mode::immediate;
        }
        break;
      case offer_result::accepted:
        break;
    }
    note_held();
  }

  void resubmit_overflow(bool wait) {
    while (!overflow.empty()) {
      stream_entry e = std::move(overflow.front());
      overflow.pop_front();
      {
        std::lock_guard<std::mutex> lock(mutex);
        --overflow_count;
        ++in_pool;
      }
      const std::size_t before = overflow.size();
      offer_one(e, wait);
      if (overflow.size() > before) {  // refused again: it went to the back; put it in front
        std::rotate(overflow.rbegin(), overflow.rbegin() + 1, overflow.rend());
        return;
      }
    }
  }

  void finish_reading() noexcept {
    reader_conn.close();
    stop_mode mode = stop_mode::none;
    {
      std::lock_guard<std::mutex> lock(mutex);
      mode = stop;
    }
    if (mode == stop_mode::graceful) {
      resubmit_overflow(true);  // blocks for room: the slots drain the queue
      sink.shutdown_pool();
    } else {
      leave_pending_now();
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const stream_entry& e : overflow) {  // only left if the pool closed under us
        release(e.id);
        ++st.left_pending;
      }
      overflow_count = 0;
      note_held();
    }
    overflow.clear();
    sink.join_pool();  // every request finished: each was completed() or failed()
    std::lock_guard<std::mutex> lock(mutex);
    acker_stop = true;
    reader_done = true;
    acker_cv.notify_one();
  }

  // The pool's shutdown_now(); its returned entries stay pending in Redis.
  std::size_t leave_pending_now() noexcept {
    std::vector<std::string> ids;
    try {
      ids = sink.shutdown_pool_now();
    } catch (...) {  // bad_alloc: nothing was taken out; the queued entries will run
      sink.shutdown_pool();
      return 0;
    }
    std::lock_guard<std::mutex> lock(mutex);
    for (const std::string& id : ids) {
      release(id);
    }
    in_pool -= std::min(in_pool, ids.size());
    st.left_pending += ids.size();
    note_held();
    reader_cv.notify_one();
    return ids.size();
  }

  // ---- from the slots ----
  void push_ack(const std::string& id) {  // m_mutex held; may throw bad_alloc
    acks.push_back(id);
    if (acks.size() == 1) {
      oldest_ack = clock::now();
      acker_cv.notify_one();  // arms its ack_delay timer
    } else if (acks.size() == options.ack_batch) {
      acker_cv.notify_one();
    }
  }

  void after_finish() noexcept {  // m_mutex held; one request left the pool
    --in_pool;
    note_held();
    if (overflow_count > 0 || wants_read() || in_pool == 0) {
      reader_cv.notify_one();
    }
  }

  // ---- acknowledger thread ----
  void acker_main() noexcept {
    backoff delay(options.backoff_min, options.backoff_max);
    clock::time_point give_up = clock::time_point::max();
    bool ever_connected = false;
    for (;;) {
      std::vector<std::string> batch;
      std::vector<dead_letter> letters;
      {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
          if (acker_stop && give_up == clock::time_point::max()) {
            give_up = clock::now() + options.shutdown_flush_timeout;
          }
          if (!dead.empty() || acks.size() >= options.ack_batch || (acker_stop && !acks.empty())) {
            break;
          }
          if (!acks.empty()) {
            const clock::time_point due = oldest_ack + options.ack_delay;
            if (clock::now() >= due) {
              break;
            }
            acker_cv.wait_until(lock, due);
          } else if (acker_stop) {
            return;  // everything delivered
          } else {
            acker_cv.wait(lock);
          }
        }
        batch.swap(acks);
        letters.swap(dead);
      }
      try {
        if (!acker_conn.is_open()) {
          acker_conn.open();
          if (ever_connected) {
            std::lock_guard<std::mutex> lock(mutex);
            ++st.reconnects;
          }
          ever_connected = true;
        }
        flush(batch, letters);
        delay.reset();
      } catch (const io_failure& e) {
        acker_conn.close();
        {
          std::lock_guard<std::mutex> lock(mutex);
          ++st.redis_errors;
          // Put them back in front, for the next try; dead letters already written are in `batch`.
          batch.insert(batch.end(), std::make_move_iterator(acks.begin()), std::make_move_iterator(acks.end()));
          acks.swap(batch);
          if (!acks.empty()) {
            oldest_ack = clock::now() - options.ack_delay;  // due again after the backoff
          }
          letters.insert(letters.end(), std::make_move_iterator(dead.begin()), std::make_move_iterator(dead.end()));
          dead.swap(letters);
          if (acker_stop && clock::now() >= give_up) {
            abandon();  // Redis stayed away: they remain pending, to be claimed
            return;
          }
        }
        const std::chrono::milliseconds wait = delay.next();
        event(std::string("acknowledger: ") + e.what() + "; retrying in " + std::to_string(wait.count()) + " ms");
        std::this_thread::sleep_for(wait);
      } catch (const fatal_reply& e) {
        event(std::string("acknowledger: fatal: ") + e.what());
        std::lock_guard<std::mutex> lock(mutex);
        ++st.redis_errors;
        if (!fatal) {
          fatal = std::make_exception_ptr(stream_error(std::string("flowpool::redis::stream_source: ") + e.what()));
        }
        for (const std::string& id : batch) {
          release(id);
        }
        st.left_pending += batch.size();
        note_held();
        if (stop == stop_mode::none) {
          stop = stop_mode::immediate;
          reader_cv.notify_one();
        }
      } catch (...) {  // bad_alloc building a command: put back and retry later
        std::lock_guard<std::mutex> lock(mutex);
        acks.insert(acks.begin(), batch.begin(), batch.end());
      }
    }
  }

  void abandon() noexcept {  // m_mutex held
    for (const std::string& id : acks) {
      release(id);
    }
    for (const dead_letter& d : dead) {
      release(d.entry.id);
    }
    st.left_pending += acks.size() + dead.size();
    acks.clear();
    dead.clear();
    note_held();
  }

  // Writes the dead letters (one round trip), then acknowledges `batch` plus the dead letters Redis
  // confirmed (one more). On io_failure, `batch` holds what still needs acknowledging and
  // `letters` what still needs writing.
  void flush(std::vector<std::string>& batch, std::vector<dead_letter>& letters) {
    if (!letters.empty()) {
      std::vector<command_args> cmds;
      cmds.reserve(letters.size());
      for (const dead_letter& d : letters) {
        command_args a{"XADD",
                       dead_stream,
                       "*",
                       "entry",
                       d.entry.id,
                       "reason",
                       d.reason,
                       "error",
                       d.error,
                       "attempts",
                       std::to_string(d.attempts),
                       "consumer",
                       options.consumer};
        for (const auto& [f, v] : d.entry.fields) {
          a.push_back(f);
          a.push_back(v);
        }
        cmds.push_back(std::move(a));
      }
      std::vector<reply_ptr> replies = acker_conn.pipeline(cmds);
      {
        std::lock_guard<std::mutex> lock(mutex);
        ++st.round_trips;
      }
      for (std::size_t i = 0; i < letters.size(); ++i) {
        const std::string err = error_text(replies[i].get());
        std::lock_guard<std::mutex> lock(mutex);
        if (err.empty()) {
          ++st.dead_lettered;
          batch.push_back(letters[i].entry.id);
        } else {  // e.g. the dead-letter key has the wrong type: leave it pending, report it
          ++st.redis_errors;
          ++st.left_pending;
          release(letters[i].entry.id);
          note_held();
          event("acknowledger: cannot write the dead letter of " + letters[i].entry.id + " to " + dead_stream + ": " +
                err + " (left pending)");
        }
      }
      letters.clear();
    }
    if (batch.empty()) {
      return;
    }
    command_args a{"XACK", options.stream, options.group};
    a.insert(a.end(), batch.begin(), batch.end());
    reply_ptr r = acker_conn.command(a);
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++st.round_trips;
    }
    check_reply(r.get(), "XACK");
    std::lock_guard<std::mutex> lock(mutex);
    for (const std::string& id : batch) {
      release(id);
    }
    st.acked += batch.size();
    note_held();
    batch.clear();
  }
};

source_core::source_core(stream_source_options options, source_sink& sink) {
  validate(options);
  m_impl = std::make_unique<impl>(std::move(options), sink);
  m_impl->check_stream();
}

source_core::~source_core() {
  if (m_impl) {
    shutdown();
    try {
      join();
    } catch (...) {  // reported by join() to whoever called it; nothing to do here
    }
  }
}

void source_core::start() {
  impl& s = *m_impl;
  s.slots_cache = std::max<std::size_t>(1, s.sink.slots());
  s.capacity_cache = s.sink.capacity();
  s.acker = std::thread([&s] {
    block_sigpipe_on_this_thread();
    s.acker_main();
  });
  try {
    s.reader = std::thread([&s] {
      block_sigpipe_on_this_thread();
      s.reader_main();
    });
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.acker_stop = true;
      s.acker_cv.notify_one();
    }
    s.acker.join();
    throw;
  }
}

void source_core::completed(const std::string& id) noexcept {
  impl& s = *m_impl;
  std::lock_guard<std::mutex> lock(s.mutex);
  ++s.st.succeeded;
  try {
    s.push_ack(id);
  } catch (...) {  // bad_alloc: not acknowledged; it stays pending and is claimed again later
    s.release(id);
    ++s.st.left_pending;
  }
  s.after_finish();
}

void source_core::failed(stream_entry& entry, const request_failure& failure) noexcept {
  impl& s = *m_impl;
  const bool final_outcome =
      failure.reason == failure_reason::attempts_exhausted || failure.reason == failure_reason::permanent_error;
  std::string error;
  try {
    error = describe(failure.error);
  } catch (...) {  // bad_alloc: an empty text
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  if (final_outcome) {
    try {
      s.dead.emplace_back();  // the only step that can throw: the entry is still intact on failure
      s.dead.back() = dead_letter{std::move(entry), reason_name(failure.reason), std::move(error), failure.attempts};
      s.acker_cv.notify_one();
    } catch (...) {
      s.release(entry.id);
      ++s.st.left_pending;
    }
  } else {  // not retried only because retrying was impossible now: leave it for a later claim
    s.release(entry.id);
    ++s.st.left_pending;
  }
  s.after_finish();
}

void source_core::shutdown() noexcept {
  impl& s = *m_impl;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.stop == stop_mode::none) {
    s.stop = stop_mode::graceful;
  }
  s.reader_cv.notify_one();
}

std::size_t source_core::shutdown_now() {
  impl& s = *m_impl;
  // The pool is emptied under the source mutex, in the same critical section that sets the stop:
  // the reader sees the stop when it next decides on a read (under that mutex, with the room), so it
  // starts no read afterwards (one already on its way leaves its entries pending, in take()), its
  // finish_reading() finds the pool empty, and this call counts every entry it left pending. (One lock order:
  // source mutex, then the pool's; the pool never calls back while holding its own.)
  std::lock_guard<std::mutex> lock(s.mutex);
  const std::vector<std::string> ids = s.sink.shutdown_pool_now();  // bad_alloc: nothing changed
  s.stop = stop_mode::immediate;
  for (const std::string& id : ids) {
    s.release(id);
  }
  s.in_pool -= std::min(s.in_pool, ids.size());
  s.st.left_pending += ids.size();
  s.note_held();
  s.reader_cv.notify_one();
  return ids.size();
}

void source_core::join() {
  impl& s = *m_impl;
  std::lock_guard<std::mutex> guard(s.join_mutex);
  if (s.reader.joinable()) {
    s.reader.join();
  }
  if (s.acker.joinable()) {
    s.acker.join();
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fatal) {
    std::rethrow_exception(s.fatal);
  }
}

bool source_core::stopped() const noexcept {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  return m_impl->reader_done;
}

stream_source_stats source_core::stats() const {
  std::lock_guard<std::mutex> lock(m_impl->mutex);
  return m_impl->st;
}

const stream_source_options& source_core::options() const noexcept {
  return m_impl->options;
}

}  // namespace flowpool::redis::detail
