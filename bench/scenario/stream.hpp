// The scenario's request stream: configuration, the request type, deterministic service times and
// the follow-up budget. Every design serves the identical stream: request `id` always has the same
// base service time (a counter-based draw from (seed, id)), whichever thread asks for it.
#pragma once

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace flowpool_bench {

using bench_clock = std::chrono::steady_clock;

/// How service times are drawn.
enum class service_model {
  uniform,        ///< uniform in [min_ms, max_ms]
  exponential,    ///< exponential with mean (min_ms + max_ms) / 2
  heterogeneous,  ///< uniform in [min_ms, max_ms], then multiplied by (server + 1): server i is (i+1)x slower
};

/// @return the model's command-line name.
inline const char* to_string(service_model model) noexcept {
  switch (model) {
    case service_model::uniform:
      return "uniform";
    case service_model::exponential:
      return "exponential";
    case service_model::heterogeneous:
      return "heterogeneous";
  }
  return "?";
}

/// @return the model named `name`. @throws std::invalid_argument for an unknown name.
inline service_model parse_service_model(const std::string& name) {
  if (name == "uniform")
    return service_model::uniform;
  if (name == "exponential")
    return service_model::exponential;
  if (name == "heterogeneous")
    return service_model::heterogeneous;
  throw std::invalid_argument("--dist: unknown service model '" + name + "' (uniform, exponential, heterogeneous)");
}

/// One scenario: S servers x K slots, an initial burst, a total budget, a service-time model.
struct scenario_config {
  std::size_t servers = 5;           ///< S
  std::size_t slots_per_server = 2;  ///< K; every design runs S*K threads
  std::size_t burst = 100;           ///< requests submitted at the start
  std::size_t budget = 1000;         ///< total requests, follow-ups included; 0 = unlimited (soak)
  service_model model = service_model::uniform;
  double min_ms = 1.0;  ///< uniform range (and the base range of the heterogeneous model)
  double max_ms = 3.0;
  std::uint64_t seed = 42;

  /// @return S*K.
  [[nodiscard]] std::size_t slots() const noexcept { return servers * slots_per_server; }

  /// @throws std::invalid_argument naming the field when a value cannot make a scenario.
  void validate() const {
    auto fail = [](const std::string& what) { throw std::invalid_argument("scenario: " + what); };
    if (servers == 0)
      fail("servers must be at least 1 (got 0)");
    if (slots_per_server == 0)
      fail("slots_per_server must be at least 1 (got 0)");
    if (burst == 0)
      fail("burst must be at least 1 (got 0)");
    if (!(min_ms > 0.0) || !(max_ms >= min_ms)) {
      fail("need 0 < min_ms <= max_ms (got " + std::to_string(min_ms) + ", " + std::to_string(max_ms) + ")");
    }
  }
};

/// A request as the designs pass it around: small and trivially copyable.
struct request {
  std::uint64_t id = 0;                     ///< 0, 1, 2, ... in issue order
  std::chrono::nanoseconds base_service{};  ///< drawn from (seed, id); a server may scale it
  bench_clock::time_point enqueued{};       ///< when it was handed to the design
};

/// splitmix64: a counter-based generator, so draw `id` needs no shared state.
inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27U)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31U);
}

/// @return a uniform double in [0, 1) determined by (seed, n).
inline double unit_draw(std::uint64_t seed, std::uint64_t n) noexcept {
  const std::uint64_t bits = splitmix64(splitmix64(seed) ^ (n * 0xd1b54a32d192ed03ULL));
  return static_cast<double>(bits >> 11U) * 0x1.0p-53;
}

/// @return the base service time of request `id`, in milliseconds.
inline double base_service_ms(const scenario_config& config, std::uint64_t id) noexcept {
  const double u = unit_draw(config.seed, id);
  if (config.model == service_model::exponential) {
    return -0.5 * (config.min_ms + config.max_ms) * std::log1p(-u);
  }
  return config.min_ms + u * (config.max_ms - config.min_ms);
}

/// @return how many times slower than server 0 `server` is (1 except in the heterogeneous model).
inline double slowdown(const scenario_config& config, std::size_t server) noexcept {
  return config.model == service_model::heterogeneous ? static_cast<double>(server + 1) : 1.0;
}

/// Issues request ids: the initial burst, then one follow-up per completed request while the
/// budget lasts. Thread-safe; lock-free.
class request_stream {
 public:
  /// @param config the scenario (validated by the caller).
  explicit request_stream(const scenario_config& config) : m_config(config) {}

  request_stream(const request_stream&) = delete;
  request_stream& operator=(const request_stream&) = delete;

  /// @return request `id` with its base service time, stamped as enqueued now.
  [[nodiscard]] request make(std::uint64_t id) const noexcept {
    const auto ns = std::chrono::duration<double, std::nano>(base_service_ms(m_config, id) * 1e6);
    return request{id, std::chrono::duration_cast<std::chrono::nanoseconds>(ns), bench_clock::now()};
  }

  /// @return the initial burst: min(burst, budget) new requests. Call once, before any follow-up.
  [[nodiscard]] std::vector<request> initial_burst() {
    std::vector<request> burst;
    for (std::size_t i = 0; i < m_config.burst; ++i) {
      if (auto r = issue()) {
        burst.push_back(*r);
      }
    }
    return burst;
  }

  /// @return the follow-up of a completed request, or nullopt once the budget is used up or
  /// stop() was called. Any thread; lock-free.
  [[nodiscard]] std::optional<request> follow_up() noexcept { return issue(); }

  /// Ends the stream: follow_up() returns nullopt from now on (soak mode).
  void stop() noexcept {
    m_stopped.store(true, std::memory_order_relaxed);  // relaxed: a late follow-up is harmless, it is still served
  }

  /// @return how many requests have been issued.
  [[nodiscard]] std::uint64_t issued() const noexcept {
    return m_next_id.load(std::memory_order_relaxed);  // relaxed: read after the pool's join, which orders it
  }

  /// @return the time `r` takes on `server`.
  [[nodiscard]] std::chrono::nanoseconds service_time(const request& r, std::size_t server) const noexcept {
    const double scale = slowdown(m_config, server);
    return std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(r.base_service.count()) * scale));
  }

  /// @return the scenario.
  [[nodiscard]] const scenario_config& config() const noexcept { return m_config; }

 private:
  std::optional<request> issue() noexcept {
    if (m_stopped.load(std::memory_order_relaxed)) {  // relaxed: see stop()
      return std::nullopt;
    }
    const std::uint64_t limit =
        m_config.budget == 0 ? std::numeric_limits<std::uint64_t>::max() : static_cast<std::uint64_t>(m_config.budget);
    // relaxed: the counter only hands out unique ids; the request itself reaches its server
    // through the design's queue, which publishes it.
    std::uint64_t id = m_next_id.load(std::memory_order_relaxed);
    do {
      if (id >= limit) {
        return std::nullopt;
      }
    } while (!m_next_id.compare_exchange_weak(id, id + 1, std::memory_order_relaxed));
    return make(id);
  }

  scenario_config m_config;
  std::atomic<std::uint64_t> m_next_id{0};
  std::atomic<bool> m_stopped{false};
};

/// The batch-then-wait expectation: utilisation = E[X] / E[max of K draws].
struct analytic_expectation {
  double closed_form;  ///< exact value (NaN if there is none)
  double monte_carlo;  ///< estimate from 200,000 batches drawn with the scenario's seed
};

/// @return the expected utilisation of batch-then-wait for `config`. Uniform [a, b]:
/// E[X] = (a+b)/2, E[max of K] = a + (b-a) K/(K+1). Exponential: E[X]/E[max of K] = 1/H_K.
/// Heterogeneous: a server scales all K draws of its batch by the same factor, so the ratio is the
/// uniform one. The Monte Carlo estimate draws batches from the same generator as the stream.
inline analytic_expectation batch_then_wait_expectation(const scenario_config& config) {
  const auto k = static_cast<double>(config.slots_per_server);
  double closed = std::numeric_limits<double>::quiet_NaN();
  if (config.model == service_model::exponential) {
    double harmonic = 0.0;
    for (std::size_t i = 1; i <= config.slots_per_server; ++i) {
      harmonic += 1.0 / static_cast<double>(i);
    }
    closed = 1.0 / harmonic;
  } else {
    const double a = config.min_ms;
    const double b = config.max_ms;
    closed = (0.5 * (a + b)) / (a + (b - a) * k / (k + 1.0));
  }
  constexpr std::uint64_t k_batches = 200000;
  scenario_config draws = config;
  draws.seed = splitmix64(config.seed ^ 0x5eedULL);  // independent of the stream's own draws
  double sum = 0.0;
  double sum_max = 0.0;
  std::uint64_t n = 0;
  for (std::uint64_t b = 0; b < k_batches; ++b) {
    double largest = 0.0;
    for (std::size_t i = 0; i < config.slots_per_server; ++i) {
      const double x = base_service_ms(draws, n++);
      sum += x;
      largest = largest > x ? largest : x;
    }
    sum_max += largest;
  }
  return {closed, sum / (k * sum_max)};
}

}  // namespace flowpool_bench
