// Soak mode (issue 6): the server_pool stream runs continuously for a given time.
#pragma once

#include "stream.hpp"

#include <iosfwd>

namespace flowpool_bench {

/// Runs the server_pool stream of `config` (budget ignored: unlimited) for `seconds`. In-flight
/// requests stay bounded by the burst: every served request submits exactly one follow-up until
/// the time is up. One request in 1000 throws (after submitting its follow-up) to exercise failure
/// isolation. Reports requests handled, failures, max queue depth and RSS at start and end.
/// @return 0 if every issued request was handled exactly once and the failures match the
/// injected ones, 1 otherwise.
int run_soak(const scenario_config& config, double seconds, std::ostream& out);

}  // namespace flowpool_bench
