/// @file
/// @brief flowpool::redis::stream_source: one consumer of a Redis Streams consumer group feeding a
/// flowpool::server_pool, with acknowledgement only after each entry's final outcome.
#pragma once

#include <flowpool/redis/stream_entry.hpp>
#include <flowpool/server_pool.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace flowpool::redis {

/// @brief Configuration of a stream_source: an aggregate, so designated initializers work.
///
/// The constructor checks every field and throws `std::invalid_argument` naming the first bad one:
/// an empty `stream`, `group` or `consumer`; a `redis` endpoint that `endpoint::parse` rejects; a
/// zero `max_read` or `ack_batch`; a negative duration, a `block` of 0 (it would not block), or
/// `backoff_min > backoff_max`.
struct stream_source_options {
  /// Where Redis listens: `unix:/path/to/socket` or `host:port` (see `endpoint::parse`).
  std::string redis = "127.0.0.1:6379";
  /// The stream key to read.
  std::string stream;
  /// The consumer group.
  std::string group;
  /// This consumer's name within the group. Give every process its own name; a process restarted
  /// under the same name first re-reads the entries that name still has pending.
  std::string consumer;
  /// If the group does not exist, create it (`XGROUP CREATE ... MKSTREAM`, at `group_start_id`)
  /// instead of failing. An existing group is used as it is.
  bool create_group = false;
  /// Where a group created by `create_group` starts: `0` = the whole stream, `$` = only new entries.
  std::string group_start_id = "0";
  /// The stream dead letters go to; empty = `<stream>:dead`.
  std::string dead_letter_stream;
  /// The most entries one read asks for (`COUNT`); a read never asks for more than the pool has room for.
  std::size_t max_read = 256;
  /// How long one `XREADGROUP` waits for new entries (`BLOCK`). It bounds how long `shutdown()`
  /// waits for the reader to notice. Positive.
  std::chrono::milliseconds block{100};
  /// Entries pending (delivered, not acknowledged) longer than this, at any consumer of the group,
  /// are claimed with `XAUTOCLAIM` and handled here: this is how a dead process's entries are taken
  /// over. It must exceed the longest time an entry can spend in a living process (queue wait plus
  /// every attempt), or living consumers' entries are claimed too and handled twice. 0 = never claim.
  std::chrono::milliseconds claim_idle{30000};
  /// How often to run the claim; 0 = every `claim_idle / 2`.
  std::chrono::milliseconds claim_interval{0};
  /// Acknowledgements are sent once this many are waiting...
  std::size_t ack_batch = 64;
  /// ... or once the oldest has waited this long, whichever comes first.
  std::chrono::milliseconds ack_delay{5};
  /// Timeout of one connection attempt.
  std::chrono::milliseconds connect_timeout{2000};
  /// Timeout of one command's reply (for `XREADGROUP`, on top of `block`).
  std::chrono::milliseconds command_timeout{5000};
  /// First wait after a failed connection or command; doubles on each failure in a row...
  std::chrono::milliseconds backoff_min{10};
  /// ... up to this.
  std::chrono::milliseconds backoff_max{1000};
  /// After shutdown, how long to keep trying to deliver the last acknowledgements and dead letters
  /// while Redis is unreachable. Entries not acknowledged by then stay pending (and are claimed
  /// later by another consumer): handled twice, never lost.
  std::chrono::milliseconds shutdown_flush_timeout{10000};
  /// Optional: told about every failure the source retries or gives up on (a lost connection, an
  /// error reply, a dead letter that could not be written), as one line of text. Called on the
  /// source's two threads, possibly at the same time; it must not throw and should be quick (e.g.
  /// print it). Empty = silent (`stats()` still counts).
  std::function<void(const std::string&)> on_event = nullptr;
};

/// @brief Counters of a stream_source, returned by `stream_source::stats()`.
///
/// Conservation, once the source has stopped (`join()` returned): every entry it took (`read +
/// recovered + claimed`) was acknowledged (`acked`), deliberately left pending (`left_pending`), or
/// is still `held` (only if the last flush gave up). An entry taken twice (e.g. one it left pending
/// and claimed again later) counts twice.
struct stream_source_stats {
  std::uint64_t read = 0;           ///< New entries read (`XREADGROUP ... >`).
  std::uint64_t recovered = 0;      ///< Entries of this consumer's own pending list re-read after a (re)connect.
  std::uint64_t claimed = 0;        ///< Entries claimed from other consumers (`XAUTOCLAIM`).
  std::uint64_t submitted = 0;      ///< Entries handed to the pool as requests.
  std::uint64_t succeeded = 0;      ///< Requests whose handler returned.
  std::uint64_t dead_lettered = 0;  ///< Entries written to the dead-letter stream (malformed ones included).
  std::uint64_t malformed = 0;      ///< Entries the parser rejected (never given to a handler).
  std::uint64_t acked = 0;          ///< Entries acknowledged (`XACK` confirmed).
  std::uint64_t left_pending = 0;   ///< Entries deliberately left unacknowledged (see stream_source).
  std::uint64_t round_trips = 0;    ///< Round trips to Redis (a pipeline counts once), both connections.
  std::uint64_t reconnects = 0;     ///< Connections re-established after a failure.
  std::uint64_t redis_errors = 0;   ///< Failed commands or connections (each is retried with backoff).
  std::size_t held = 0;             ///< Entries read and not yet acknowledged or left pending, now.
  std::size_t held_high_water = 0;  ///< The largest `held` so far (finished entries awaiting their XACK included).
  std::size_t in_pool =
      0;  ///< Of `held`, those not finished yet: in the pool (queued or running) or refused by it for now.
  std::size_t in_pool_high_water = 0;  ///< The largest `in_pool` so far: at most the pool's `queue_capacity` + slots.
};

/// @brief The source stopped because of an error it cannot retry (`stream_source::join()` throws
/// it), or the constructor found the stream or group unusable. The message says which, and quotes
/// Redis's own error text where there is one. Causes: the stream does not exist (and
/// `create_group` is off), the key is not a stream, the group does not exist or cannot be created,
/// the group was destroyed while reading (`NOGROUP`).
class stream_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief Redis could not be reached: thrown by the constructor when the first connection fails
/// (later failures are retried with backoff and never thrown).
class connection_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief A request of a stream_source's pool: the stream entry and what the parser made of it.
/// @tparam Body what the parser returns.
template <class Body>
struct stream_message {
  stream_entry entry;  ///< The entry as read (its id and fields); the id is empty for a follow-up.
  Body body;           ///< The parsed request.
};

namespace detail {

// What the source core (non-template, lib/redis/src) needs from the typed part: hand an entry to
// the pool, and the pool's size and shutdown. Called on the reader thread only.
enum class offer_result : unsigned char { accepted, full, malformed, closed };

class source_sink {
 public:
  // Parses `e` and queues it. accepted: `e` was moved from. full/closed: `e` is unchanged.
  // malformed: `e` is unchanged and `error` says why. `wait` = block for room (graceful shutdown).
  virtual offer_result offer(stream_entry& e, bool wait, std::string& error) noexcept = 0;
  [[nodiscard]] virtual std::size_t capacity() const noexcept = 0;
  [[nodiscard]] virtual std::size_t slots() const noexcept = 0;
  virtual void shutdown_pool() noexcept = 0;
  // shutdown_now() of the pool: the ids of the stream entries it handed back.
  virtual std::vector<std::string> shutdown_pool_now() = 0;
  virtual void join_pool() noexcept = 0;

  source_sink() = default;
  source_sink(const source_sink&) = delete;
  source_sink& operator=(const source_sink&) = delete;
  source_sink(source_sink&&) = delete;
  source_sink& operator=(source_sink&&) = delete;

 protected:
  ~source_sink() = default;
};

// The reader and acknowledger threads and their two Redis connections (lib/redis/src/source_core.cpp).
class source_core {
 public:
  source_core(stream_source_options options, source_sink& sink);
  source_core(const source_core&) = delete;
  source_core& operator=(const source_core&) = delete;
  source_core(source_core&&) = delete;
  source_core& operator=(source_core&&) = delete;
  ~source_core();

  void start();
  // From a slot: the request of entry `id` succeeded.
  void completed(const std::string& id) noexcept;
  // From a slot (on_failure): the request failed for good.
  void failed(stream_entry& entry, const request_failure& failure) noexcept;
  void shutdown() noexcept;
  std::size_t shutdown_now();
  void join();
  [[nodiscard]] bool stopped() const noexcept;
  [[nodiscard]] stream_source_stats stats() const;
  [[nodiscard]] const stream_source_options& options() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace detail

/// @brief One consumer of a Redis Streams consumer group that feeds a server_pool it owns: reads
/// entries as fast as the pool has room, parses each into a request, and acknowledges (`XACK`) an
/// entry only after its request's final outcome.
///
/// - **Backpressure.** It reads with `XREADGROUP ... COUNT n BLOCK t`, where n is the room the
///   pool has: `queue_capacity + slots - unfinished`, with `unfinished` the entries it read whose
///   request has not finished yet (`stream_source_stats::in_pool`, plus any the queue briefly refused).
///   So the process never holds more than `queue_capacity + slots` entries; the rest wait in Redis.
///   To batch, it reads once the room reaches half of that, or at once when slots would go idle.
/// - **Acknowledgement after the final outcome.** A request whose handler returns is acknowledged;
///   one that failed for good (`max_attempts` used, or a `permanent_error`) is first written to the
///   dead-letter stream (`<stream>:dead`) with the error text, and acknowledged once Redis has
///   confirmed that write. Acknowledgements are batched (`ack_batch`, `ack_delay`).
/// - **Malformed entries.** An entry the parser throws on goes to the dead-letter stream (with the
///   parser's `what()`) and is acknowledged; it never reaches a handler.
/// - **Left pending, never lost.** An entry whose request failed only because retrying was not
///   possible (retry budget spent, `shutdown_now()`, out of memory), entries left queued by
///   `shutdown_now()`, and entries whose acknowledgement could not be delivered are left pending
///   in Redis, unacknowledged: a claim (here or in another process) hands them out again.
/// - **Crash recovery.** Every `claim_interval` it runs `XAUTOCLAIM` for entries pending longer
///   than `claim_idle` at any consumer, so a dead process's entries are taken over. After each
///   (re)connect it first re-reads its own pending entries (`XREADGROUP ... 0`), e.g. those a lost
///   reply delivered without it knowing, skipping those it already holds (or held when the read was
///   sent: one acknowledged while the reply was on its way is not handled again).
/// - **Connection loss** is retried with exponential backoff (`backoff_min` to `backoff_max`), on
///   each of its two connections (one reads, one acknowledges). Entries already read stay held
///   and are acknowledged once Redis is back.
/// - **Delivery is at least once.** An entry is handled twice when a process dies (or is
///   partitioned from Redis for longer than `claim_idle`) after the handler ran and before the
///   acknowledgement reached Redis, or when an entry stays in a living process longer than
///   `claim_idle`. Make handlers idempotent, e.g. keyed by `stream_message::entry.id`.
///
/// **Dead letters** are `XADD <dead> * entry <id> reason <reason> error <text> attempts <n>
/// consumer <name>` followed by the original fields unchanged. `reason` is `malformed`,
/// `attempts_exhausted` or `permanent_error`.
///
/// **Threads.** The source runs a reader thread and an acknowledger thread, each with its own
/// connection, beside the pool's slot threads; both block `SIGPIPE`, so a write to a dead server
/// fails instead of killing the process (a handler's own connections are the handler's business:
/// ignore `SIGPIPE` in the program, or block it in `SlotState`). Handlers run on the slots. All
/// members are thread-safe except `join()` and the destructor, which must not be called from a
/// handler.
///
/// **Memory ordering.** The source's shared state is guarded by one mutex. The read of an entry
/// happens-before its handler call (through the pool's submit). A handler's return (or its
/// request's `on_failure`) happens-before the `XACK` of its entry is sent, so every Redis write
/// the handler made on its own connection and saw confirmed was applied by Redis before the
/// acknowledgement. Everything the source did happens-before `join()` returns.
///
/// **Not guaranteed.** Entries are handled concurrently, in no particular order; a retried or
/// claimed entry is handled after later ones. Exactly-once handling (see above). A poison entry that
/// crashes the process every time is claimed again after every crash (no delivery-count limit).
///
/// @tparam Body the parsed request type (`stream_message<Body>::body`); nothrow move-constructible.
/// @tparam SlotState optional per-slot state of the pool, as in server_pool.
template <class Body, class SlotState = void>
class stream_source {
 public:
  /// The pool's request type.
  using message_type = stream_message<Body>;
  /// The pool type.
  using pool_type = server_pool<message_type, SlotState>;
  /// What a handler is given besides the message.
  using context_type = slot_context<message_type, SlotState>;
  /// The parser: builds a request from an entry; throws (anything) to reject it as malformed.
  using parser_type = flowpool::detail::unique_function<Body(const stream_entry&)>;

  /// @brief Validates the options, connects to Redis, checks (or creates) the stream and group,
  /// starts the pool and the reader and acknowledger threads; reading starts at once.
  ///
  /// Any thread; blocks while connecting and starting threads; allocates.
  /// @param options the source's configuration; see stream_source_options.
  /// @param pool_options the pool's configuration (servers, slots, queue capacity, retries...).
  /// @param parse called on the reader thread once per entry read, as `Body(const stream_entry&)`
  ///        (any callable: a function, a lambda, move-only ones included); whatever it throws makes
  ///        the entry malformed. For `Body = stream_entry` it may be `nullptr` (the entry is the body).
  /// @param handler called per attempt on a slot, as `handler(context_type&, message_type&)` or
  ///        `handler(slot_id, message_type&)`; returning means success, throwing a failed attempt.
  /// @throws std::invalid_argument for bad options (naming the field) or an empty parser.
  /// @throws connection_error if Redis cannot be reached.
  /// @throws stream_error if the stream or group is missing or cannot be created (see stream_error).
  /// @throws whatever the server_pool constructor throws.
  template <class Parser, class Handler>
  requires(std::is_void_v<SlotState>&& std::is_constructible_v<parser_type, Parser>)
      stream_source(stream_source_options options, server_pool_options pool_options, Parser parse, Handler handler)
      : m_parse(checked_parser(parser_type(std::move(parse)))),
        m_core(std::move(options), m_sink),
        m_pool(std::move(pool_options), wrap(std::move(handler)), callbacks()) {
    m_core.start();
  }

  /// @brief As above, for a pool with per-slot state built by `make_state(slot_id)` on each slot.
  /// @param options the source's configuration.
  /// @param pool_options the pool's configuration.
  /// @param parse the parser, as above.
  /// @param make_state the per-slot state factory, as in server_pool.
  /// @param handler the handler, as above; `context_type::state()` gives the slot's state.
  /// @throws as above, and what a `make_state` call threw.
  template <class Parser, class Factory, class Handler>
  requires(!std::is_void_v<SlotState> && std::is_constructible_v<parser_type, Parser>)
      stream_source(stream_source_options options, server_pool_options pool_options, Parser parse, Factory make_state,
                    Handler handler)
      : m_parse(checked_parser(parser_type(std::move(parse)))),
        m_core(std::move(options), m_sink),
        m_pool(std::move(pool_options), std::move(make_state), wrap(std::move(handler)), callbacks()) {
    m_core.start();
  }

  stream_source(const stream_source&) = delete;             ///< Not copyable.
  stream_source& operator=(const stream_source&) = delete;  ///< Not copyable.
  stream_source(stream_source&&) = delete;                  ///< Not movable: threads hold `this`.
  stream_source& operator=(stream_source&&) = delete;       ///< Not movable.

  /// @brief Graceful: `shutdown()`, then `join()` (an error it would throw is dropped). Not from a
  /// handler. Blocks; never throws.
  ~stream_source() {
    m_core.shutdown();
    try {
      m_core.join();
    } catch (...) {  // the destructor cannot report it; join() is how a caller sees it
    }
  }

  /// @brief Graceful shutdown: stop reading; the pool finishes every entry already read (queued,
  /// running, retries), and each is acknowledged or dead-lettered. Returns at once; `join()` waits.
  /// Idempotent. Any thread, handlers included; never throws.
  /// Memory ordering: happens-before the reader's last read ends.
  void shutdown() noexcept { m_core.shutdown(); }

  /// @brief Immediate shutdown: stop reading; the entries queued and not started are taken out of
  /// the pool and left pending in Redis, unacknowledged, for other consumers (or this consumer
  /// name's next start). Running requests finish and are acknowledged. Returns at once; `join()`
  /// waits. May follow `shutdown()`.
  /// Any thread, handlers included; never blocks beyond the source's and the pool's mutexes.
  /// @return how many queued entries were left pending by this call.
  /// @throws std::bad_alloc as server_pool::shutdown_now; then nothing changed.
  std::size_t shutdown_now() { return m_core.shutdown_now(); }

  /// @brief Waits until the source has stopped: after `shutdown()`, `shutdown_now()` or a fatal
  /// error, once the reader has stopped, the pool has finished, and the last acknowledgements
  /// were delivered (or `shutdown_flush_timeout` passed). Repeatable.
  ///
  /// Not from a handler; blocks.
  /// Memory ordering: everything the source and its handlers did happens-before the return.
  /// @throws stream_error if the source stopped because of an error it could not retry (it
  ///         stopped as by `shutdown_now()`; nothing was lost).
  void join() { m_core.join(); }

  /// @brief Whether the source has stopped reading and its pool has finished (after a shutdown or a
  /// fatal error); `join()` then only waits for the last acknowledgements. Any thread; never throws.
  /// @return true once stopped.
  [[nodiscard]] bool stopped() const noexcept { return m_core.stopped(); }

  /// @brief A snapshot of the counters. Any thread; never blocks beyond the source's mutex.
  /// @return the counters.
  [[nodiscard]] stream_source_stats stats() const { return m_core.stats(); }

  /// @brief The pool (e.g. for its `stats()`, `add_server()`). Submitting to it directly works, but
  /// such a request has no entry and is never acknowledged. Any thread; never throws.
  /// @return the pool.
  [[nodiscard]] pool_type& pool() noexcept { return m_pool; }

  /// @brief The options, as given. Any thread; never throws.
  /// @return the options.
  [[nodiscard]] const stream_source_options& options() const noexcept { return m_core.options(); }

 private:
  class sink final : public detail::source_sink {
   public:
    explicit sink(stream_source& owner) noexcept : m_owner(owner) {}
    detail::offer_result offer(stream_entry& e, bool wait, std::string& error) noexcept override {
      std::optional<message_type> msg;
      try {
        if constexpr (std::is_same_v<Body, stream_entry>) {
          msg.emplace(message_type{stream_entry{}, m_owner.m_parse ? m_owner.m_parse(e) : e});
        } else {
          msg.emplace(message_type{stream_entry{}, m_owner.m_parse(e)});
        }
      } catch (const std::exception& ex) {
        error = ex.what();
        return detail::offer_result::malformed;
      } catch (...) {
        error = "the parser threw a non-std exception";
        return detail::offer_result::malformed;
      }
      msg->entry = std::move(e);
      bool ok = false;
      try {
        ok = wait ? m_owner.m_pool.submit(std::move(*msg)) : m_owner.m_pool.try_submit(std::move(*msg));
      } catch (...) {  // std::bad_alloc: not queued; the entry stays pending
        ok = false;
      }
      if (ok) {
        return detail::offer_result::accepted;
      }
      e = std::move(msg->entry);
      return m_owner.m_pool.is_shut_down() ? detail::offer_result::closed : detail::offer_result::full;
    }
    [[nodiscard]] std::size_t capacity() const noexcept override { return m_owner.m_pool.options().queue_capacity; }
    [[nodiscard]] std::size_t slots() const noexcept override { return m_owner.m_pool.thread_count(); }
    void shutdown_pool() noexcept override { m_owner.m_pool.shutdown(); }
    std::vector<std::string> shutdown_pool_now() override {
      std::vector<message_type> back = m_owner.m_pool.shutdown_now();
      std::vector<std::string> ids;
      ids.reserve(back.size());
      for (message_type& m : back) {
        if (!m.entry.id.empty()) {
          ids.push_back(std::move(m.entry.id));
        }
      }
      return ids;
    }
    void join_pool() noexcept override { m_owner.m_pool.join(); }

   private:
    stream_source& m_owner;
  };

  static parser_type checked_parser(parser_type parse) {
    if (!parse && !std::is_same_v<Body, stream_entry>) {
      throw std::invalid_argument("flowpool::redis::stream_source: parse must not be empty");
    }
    return parse;
  }

  template <class Handler>
  auto wrap(Handler handler) {
    return [this, h = std::move(handler)](context_type& ctx, message_type& m) mutable {
      if constexpr (std::is_invocable_v<Handler&, context_type&, message_type&>) {
        h(ctx, m);
      } else {
        static_assert(
            std::is_invocable_v<Handler&, slot_id, message_type&>,
            "stream_source: the handler must take (context_type&, message_type&) or (slot_id, message_type&)");
        h(ctx.slot(), m);
      }
      if (!m.entry.id.empty()) {
        m_core.completed(m.entry.id);
      }
    };
  }

  server_pool_callbacks<message_type> callbacks() {
    server_pool_callbacks<message_type> cb;
    cb.on_failure = [this](const request_failure& failure, message_type& m) {
      if (!m.entry.id.empty()) {
        m_core.failed(m.entry, failure);
      }
    };
    return cb;
  }

  parser_type m_parse;  // used by the reader thread only
  sink m_sink{*this};   // the core's view of the pool
  detail::source_core m_core;
  pool_type m_pool;  // declared last: destroyed first, after the core's threads were joined
};

}  // namespace flowpool::redis
