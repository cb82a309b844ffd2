#include "common/cpu_limit.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>

namespace flowpool::detail {
namespace {

// Parses a non-empty run of decimal digits that fits in 64 bits.
std::optional<std::uint64_t> parse_decimal(std::string_view digits) noexcept {
  if (digits.empty()) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
  }
  return value;
}

// Reads up to buffer.size() bytes of a small file (cgroup and proc files are read in one go).
// Returns the text read, or nullopt if the file cannot be opened or read.
template <std::size_t N>
std::optional<std::string_view> read_small_file(const char* path, char (&buffer)[N]) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::nullopt;
  }
  std::size_t used = 0;
  while (used < N) {
    const ssize_t got = ::read(fd, buffer + used, N - used);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got < 0) {
      (void)::close(fd);
      return std::nullopt;
    }
    if (got == 0) {
      break;
    }
    used += static_cast<std::size_t>(got);
  }
  (void)::close(fd);
  return std::string_view(buffer, used);
}

// The quota in `directory`/cpu.max, if any. Throws std::bad_alloc (building the path) only.
std::optional<std::size_t> quota_in(const std::string& directory) {
  char buffer[128];
  const std::string path = directory + "/cpu.max";
  if (const std::optional<std::string_view> text = read_small_file(path.c_str(), buffer)) {
    return parse_cpu_max(*text);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::size_t> parse_cpu_max(std::string_view text) noexcept {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  const std::size_t space = text.find(' ');
  if (space == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view quota_text = text.substr(0, space);
  const std::optional<std::uint64_t> period = parse_decimal(text.substr(space + 1));
  if (!period || *period == 0) {
    return std::nullopt;  // not cpu.max syntax
  }
  if (quota_text == "max") {
    return std::nullopt;  // no quota
  }
  const std::optional<std::uint64_t> quota = parse_decimal(quota_text);
  if (!quota || *quota == 0) {
    return std::nullopt;
  }
  const std::uint64_t cpus = *quota / *period + (*quota % *period != 0 ? 1 : 0);  // rounded up
  return static_cast<std::size_t>(std::min<std::uint64_t>(cpus, std::numeric_limits<std::size_t>::max()));
}

std::optional<std::string_view> parse_cgroup_v2_path(std::string_view text) noexcept {
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    if (line.starts_with("0::/")) {
      return line.substr(3);
    }
    if (end == std::string_view::npos) {
      break;
    }
    text.remove_prefix(end + 1);
  }
  return std::nullopt;
}

std::optional<std::size_t> cgroup_cpu_quota_in(std::string_view mount,
                                               std::optional<std::string_view> cgroup_path) noexcept {
  try {
    const std::string root(mount);
    std::optional<std::size_t> smallest;
    const auto consider = [&smallest](std::optional<std::size_t> quota) {
      if (quota && (!smallest || *quota < *smallest)) {
        smallest = quota;
      }
    };
    if (cgroup_path) {
      // From the cgroup itself up to (not including) the mount point.
      std::string directory = root + std::string(*cgroup_path);
      while (!directory.empty() && directory.back() == '/') {
        directory.pop_back();
      }
      while (directory.size() > root.size()) {
        consider(quota_in(directory));
        directory.resize(directory.rfind('/'));
      }
    }
    consider(quota_in(root));
    return smallest;
  } catch (...) {  // std::bad_alloc building a path: no quota known
    return std::nullopt;
  }
}

std::optional<std::size_t> cgroup_cpu_quota() noexcept {
  char buffer[4096];
  std::optional<std::string_view> path;
  if (const std::optional<std::string_view> text = read_small_file("/proc/self/cgroup", buffer)) {
    path = parse_cgroup_v2_path(*text);
  }
  return cgroup_cpu_quota_in("/sys/fs/cgroup", path);
}

std::optional<std::size_t> affinity_cpu_count() noexcept {
  // Grow the set until it holds every CPU the kernel knows (EINVAL: the set is too small).
  for (int cpus = CPU_SETSIZE; cpus <= (1 << 20); cpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(cpus);
    if (set == nullptr) {
      return std::nullopt;
    }
    const std::size_t size = CPU_ALLOC_SIZE(cpus);
    CPU_ZERO_S(size, set);
    if (::sched_getaffinity(0, size, set) == 0) {
      const int count = CPU_COUNT_S(size, set);
      CPU_FREE(set);
      return count > 0 ? std::optional<std::size_t>(static_cast<std::size_t>(count)) : std::nullopt;
    }
    const int error = errno;
    CPU_FREE(set);
    if (error != EINVAL) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::size_t available_cpus() noexcept {
  const std::optional<std::size_t> affinity = affinity_cpu_count();
  const std::optional<std::size_t> quota = cgroup_cpu_quota();
  std::size_t cpus = 0;
  if (affinity && quota) {
    cpus = std::min(*affinity, *quota);
  } else if (affinity) {
    cpus = *affinity;
  } else if (quota) {
    cpus = *quota;
  } else {
    cpus = std::thread::hardware_concurrency();
  }
  return std::max<std::size_t>(1, cpus);
}

}  // namespace flowpool::detail
