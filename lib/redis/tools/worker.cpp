// flowpool-redis-worker: one process of a fleet of dispatchers sharing a Redis stream through a
// consumer group (docs/scaling_out.md). Run `flowpool-redis-worker --help` for the options.
#include <flowpool/redis/stream_source.hpp>

#include <hiredis/hiredis.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

namespace {

constexpr const char* k_usage = R"(usage: flowpool-redis-worker --redis unix:PATH|HOST:PORT --stream S --group G
         --consumer C --servers N --slots K [--max-attempts A] [--claim-idle-ms M] [options]

One dispatcher process: a flowpool::server_pool of N servers with K slots each, fed by the consumer
C of the Redis Streams consumer group G on stream S (flowpool::redis::stream_source). Start several
processes with different --consumer names to share one stream.

Entries: each entry of S has the fields
  id   any text: the entry's key in the result hash
  ms   an integer 0..600000: how long the handler "serves" it (it sleeps that long)
  fail optional: "always" makes every attempt throw (to exercise retries and dead letters)
The handler sleeps ms milliseconds (a stand-in for a server call), then records the entry with
HINCRBY S:done <id> 1 on its slot's own connection; then the source acknowledges the entry (XACK).
An entry without id, or with a missing or bad ms, is malformed: it goes to the dead-letter stream
S:dead and is acknowledged, never handled. An entry whose attempts all failed goes to S:dead with
the error text, then is acknowledged.

Required:
  --redis EP           unix:/path/to/redis.sock or host:port
  --stream S           the stream key
  --group G            the consumer group; created at the start of the stream (XGROUP CREATE S G 0
                       MKSTREAM) if it does not exist
  --consumer C         this process's consumer name (unique per process)
  --servers N          servers of the pool (N >= 1)
  --slots K            slots per server (K >= 1); the pool runs N*K slot threads
Optional:
  --max-attempts A     tries per entry before it is dead-lettered (default 3)
  --claim-idle-ms M    claim entries other consumers left pending longer than M ms (XAUTOCLAIM);
                       it must exceed the longest time an entry spends in a process (default 30000;
                       0 = never claim)
  --queue Q            pool queue capacity (default 2*N*K); the process holds at most Q + N*K entries
  --block-ms B         XREADGROUP BLOCK time (default 100)
  --stats              print the counters to stdout on exit (one line, key=value)
  --quiet              do not print retried Redis errors to stderr
  --help               this text

Signals: SIGTERM or SIGINT stop it gracefully: it stops reading, finishes every entry it holds
(queued and running), acknowledges them, and exits 0. SIGKILL loses nothing either: its unacked
entries stay pending and are claimed by the other workers after --claim-idle-ms.
Exit status: 0 after a graceful stop; 1 on a fatal error (unknown stream, group lost...); 2 on bad
arguments.
)";

struct args {
  std::string redis;
  std::string stream;
  std::string group;
  std::string consumer;
  std::size_t servers = 0;
  std::size_t slots = 0;
  std::size_t max_attempts = 3;
  std::size_t queue = 0;
  long long claim_idle_ms = 30000;
  long long block_ms = 100;
  bool stats = false;
  bool quiet = false;
};

[[noreturn]] void usage_error(const std::string& what) {
  std::cerr << "flowpool-redis-worker: " << what << "\n(see --help)\n";
  std::exit(2);
}

long long to_number(std::string_view flag, const char* text, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
    usage_error(std::string(flag) + ": '" + text + "' is not an integer in " + std::to_string(lo) + ".." +
                std::to_string(hi));
  }
  return v;
}

args parse_args(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << k_usage;
      std::exit(0);
    }
    if (flag == "--stats") {
      a.stats = true;
      continue;
    }
    if (flag == "--quiet") {
      a.quiet = true;
      continue;
    }
    if (i + 1 >= argc) {
      usage_error(std::string(flag) + " needs a value");
    }
    const char* value = argv[++i];
    if (flag == "--redis") {
      a.redis = value;
    } else if (flag == "--stream") {
      a.stream = value;
    } else if (flag == "--group") {
      a.group = value;
    } else if (flag == "--consumer") {
      a.consumer = value;
    } else if (flag == "--servers") {
      a.servers = static_cast<std::size_t>(to_number(flag, value, 1, 4096));
    } else if (flag == "--slots") {
      a.slots = static_cast<std::size_t>(to_number(flag, value, 1, 4096));
    } else if (flag == "--max-attempts") {
      a.max_attempts = static_cast<std::size_t>(to_number(flag, value, 1, 1000));
    } else if (flag == "--claim-idle-ms") {
      a.claim_idle_ms = to_number(flag, value, 0, 86400000);
    } else if (flag == "--queue") {
      a.queue = static_cast<std::size_t>(to_number(flag, value, 1, 1000000));
    } else if (flag == "--block-ms") {
      a.block_ms = to_number(flag, value, 1, 60000);
    } else {
      usage_error("unknown option " + std::string(flag));
    }
  }
  for (const auto& [name, v] : {std::pair<const char*, const std::string*>{"--redis", &a.redis},
                                {"--stream", &a.stream},
                                {"--group", &a.group},
                                {"--consumer", &a.consumer}}) {
    if (v->empty()) {
      usage_error(std::string(name) + " is required");
    }
  }
  if (a.servers == 0 || a.slots == 0) {
    usage_error("--servers and --slots are required");
  }
  if (!flowpool::redis::endpoint::parse(a.redis)) {
    usage_error("--redis: '" + a.redis + "' is neither unix:PATH nor HOST:PORT");
  }
  if (a.queue == 0) {
    a.queue = 2 * a.servers * a.slots;
  }
  return a;
}

// The parsed entry: what the handler needs.
struct job {
  std::string id;
  long long ms = 0;
  bool fail = false;
};

job parse_entry(const flowpool::redis::stream_entry& e) {
  job j;
  const std::string* id = e.find("id");
  const std::string* ms = e.find("ms");
  if (id == nullptr || id->empty()) {
    throw std::invalid_argument("missing field 'id'");
  }
  if (ms == nullptr) {
    throw std::invalid_argument("missing field 'ms'");
  }
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(ms->c_str(), &end, 10);
  if (errno != 0 || end == ms->c_str() || *end != '\0' || v < 0 || v > 600000) {
    throw std::invalid_argument("field 'ms' is not an integer in 0..600000: '" + *ms + "'");
  }
  j.id = *id;
  j.ms = v;
  const std::string* fail = e.find("fail");
  j.fail = fail != nullptr && *fail == "always";
  return j;
}

// One slot's own connection to Redis, for the HINCRBY (built and used on the slot's thread).
class slot_connection {
 public:
  explicit slot_connection(flowpool::redis::endpoint where) : m_where(std::move(where)) {}
  slot_connection(slot_connection&& other) noexcept
      : m_where(std::move(other.m_where)), m_context(std::exchange(other.m_context, nullptr)) {}
  slot_connection(const slot_connection&) = delete;
  slot_connection& operator=(const slot_connection&) = delete;
  slot_connection& operator=(slot_connection&&) = delete;
  ~slot_connection() {
    if (m_context != nullptr) {
      redisFree(m_context);
    }
  }

  // HINCRBY key field 1, reconnecting with backoff for up to 60 s (Redis may be restarting).
  void hincrby(const std::string& key, const std::string& field) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::chrono::milliseconds delay{10};
    for (;;) {
      if (m_context == nullptr) {
        connect();
      }
      if (m_context != nullptr) {
        const char* argv[] = {"HINCRBY", key.c_str(), field.c_str(), "1"};
        const std::size_t len[] = {7, key.size(), field.size(), 1};
        auto* r = static_cast<redisReply*>(redisCommandArgv(m_context, 4, argv, len));
        if (r != nullptr) {
          const bool ok = r->type == REDIS_REPLY_INTEGER;
          const std::string err = r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : std::string();
          freeReplyObject(r);
          if (ok) {
            return;
          }
          if (!err.starts_with("LOADING")) {
            throw std::runtime_error("HINCRBY failed: " + err);
          }
        } else {
          redisFree(m_context);
          m_context = nullptr;
        }
      }
      if (std::chrono::steady_clock::now() >= give_up) {
        throw std::runtime_error("HINCRBY: Redis unreachable for 60 s");
      }
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(500));
    }
  }

 private:
  void connect() {
    const timeval tv{2, 0};
    m_context = m_where.unix_path.empty() ? redisConnectWithTimeout(m_where.host.c_str(), m_where.port, tv)
                                          : redisConnectUnixWithTimeout(m_where.unix_path.c_str(), tv);
    if (m_context != nullptr && m_context->err != 0) {
      redisFree(m_context);
      m_context = nullptr;
    }
    if (m_context != nullptr) {
      const timeval rt{5, 0};
      redisSetTimeout(m_context, rt);
    }
  }

  flowpool::redis::endpoint m_where;
  redisContext* m_context = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  const args a = parse_args(argc, argv);
  // Block the stop signals in every thread (the pool's and the source's inherit the mask), so that
  // only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // The slots' own connections (HINCRBY) write with write(2): a dead server must fail the write
  // (EPIPE, then a reconnect), not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  const flowpool::redis::endpoint where = *flowpool::redis::endpoint::parse(a.redis);
  const std::string done_key = a.stream + ":done";
  using source_type = flowpool::redis::stream_source<job, slot_connection>;
  std::optional<source_type> source;
  flowpool::redis::stream_source_options options;
  options.redis = a.redis;
  options.stream = a.stream;
  options.group = a.group;
  options.consumer = a.consumer;
  options.create_group = true;
  options.block = std::chrono::milliseconds(a.block_ms);
  options.claim_idle = std::chrono::milliseconds(a.claim_idle_ms);
  if (!a.quiet) {
    options.on_event = [consumer = a.consumer](const std::string& text) {
      std::fprintf(stderr, "flowpool-redis-worker %s: %s\n", consumer.c_str(), text.c_str());
    };
  }
  flowpool::server_pool_options pool_options;
  pool_options.servers = a.servers;
  pool_options.slots_per_server = a.slots;
  pool_options.queue_capacity = a.queue;
  pool_options.name = "worker";
  pool_options.max_attempts = a.max_attempts;
  pool_options.retry_budget_ratio = std::numeric_limits<double>::infinity();  // every entry gets its attempts
  try {
    source.emplace(
        std::move(options), std::move(pool_options),
        [](const flowpool::redis::stream_entry& e) { return parse_entry(e); },
        [&where](flowpool::slot_id) { return slot_connection(where); },
        [&done_key](source_type::context_type& ctx, source_type::message_type& m) {
          if (m.body.ms > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(m.body.ms));
          }
          if (m.body.fail) {
            throw std::runtime_error("entry " + m.body.id + " asked to fail (fail=always)");
          }
          ctx.state().hincrby(done_key, m.body.id);
        });
  } catch (const std::exception& e) {
    std::cerr << "flowpool-redis-worker: " << e.what() << "\n";
    return 1;
  }

  int status = 0;
  for (;;) {
    const timespec poll{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &poll);
    if (sig == SIGTERM || sig == SIGINT) {
      source->shutdown();
      break;
    }
    if (source->stopped()) {  // a fatal error stopped it
      break;
    }
  }
  try {
    source->join();
  } catch (const std::exception& e) {
    std::cerr << "flowpool-redis-worker: " << e.what() << "\n";
    status = 1;
  }
  if (a.stats) {
    const flowpool::redis::stream_source_stats s = source->stats();
    const flowpool::server_pool_stats p = source->pool().stats();
    std::printf(
        "stats consumer=%s read=%llu recovered=%llu claimed=%llu submitted=%llu succeeded=%llu dead_lettered=%llu "
        "malformed=%llu acked=%llu left_pending=%llu round_trips=%llu reconnects=%llu redis_errors=%llu "
        "held_high_water=%zu pool_high_water=%zu attempts=%llu\n",
        a.consumer.c_str(), static_cast<unsigned long long>(s.read), static_cast<unsigned long long>(s.recovered),
        static_cast<unsigned long long>(s.claimed), static_cast<unsigned long long>(s.submitted),
        static_cast<unsigned long long>(s.succeeded), static_cast<unsigned long long>(s.dead_lettered),
        static_cast<unsigned long long>(s.malformed), static_cast<unsigned long long>(s.acked),
        static_cast<unsigned long long>(s.left_pending), static_cast<unsigned long long>(s.round_trips),
        static_cast<unsigned long long>(s.reconnects), static_cast<unsigned long long>(s.redis_errors),
        s.held_high_water, p.queue_high_water_mark, static_cast<unsigned long long>(p.total_handled()));
    std::fflush(stdout);
  }
  source.reset();
  return status;
}
