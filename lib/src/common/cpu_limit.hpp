// Internal: how many CPUs this process may use, for thread_pool::default_thread_count().
//
// Two limits, the smaller wins: the affinity mask (sched_getaffinity; taskset, cpusets, numactl)
// and the cgroup v2 CPU quota (cpu.max; docker --cpus, Kubernetes CPU limits, systemd CPUQuota).
// std::thread::hardware_concurrency() ignores both (oneTBB issues 190 and 1760), so it is only
// the fallback when neither can be read.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace flowpool::detail {

// Parses the content of a cgroup v2 cpu.max file, "<quota> <period>" in microseconds (a trailing
// newline is allowed). Returns ceil(quota / period), the CPUs the quota lets the cgroup keep busy
// (so "150000 100000" gives 2, "50000 100000" gives 1), or nullopt when there is no quota
// ("max <period>") or the text is not in that form (no quota is assumed). Pure; never allocates.
std::optional<std::size_t> parse_cpu_max(std::string_view text) noexcept;

// Parses the content of /proc/self/cgroup and returns the cgroup v2 path (the line "0::<path>"),
// a view into `text`, or nullopt if there is no such line (a cgroup v1-only system). Pure.
std::optional<std::string_view> parse_cgroup_v2_path(std::string_view text) noexcept;

// The smallest parse_cpu_max() of the cpu.max files in `mount` + `cgroup_path` and in each
// ancestor directory up to and including `mount` (the limits nest: a child cannot use more than
// its parents allow; `mount` itself holds the container's limit under a cgroup namespace).
// Without a path only `mount`/cpu.max is read. Missing or unreadable files count as no quota.
// nullopt if no quota applies. Reads files; noexcept (an allocation failure counts as no quota).
std::optional<std::size_t> cgroup_cpu_quota_in(std::string_view mount,
                                               std::optional<std::string_view> cgroup_path) noexcept;

// cgroup_cpu_quota_in("/sys/fs/cgroup", the cgroup v2 path in /proc/self/cgroup): this process's
// cgroup v2 CPU quota. Any thread; reads files; noexcept.
std::optional<std::size_t> cgroup_cpu_quota() noexcept;

// CPU_COUNT of the calling thread's affinity mask (the one new threads inherit), or nullopt if
// sched_getaffinity() fails. Any thread; noexcept.
std::optional<std::size_t> affinity_cpu_count() noexcept;

// min(affinity_cpu_count(), cgroup_cpu_quota()) of those known, at least 1; when neither is known,
// std::thread::hardware_concurrency() (at least 1). Any thread; noexcept.
std::size_t available_cpus() noexcept;

}  // namespace flowpool::detail
