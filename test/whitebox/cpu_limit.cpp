// Whitebox tests of lib/src/cpu_limit.hpp: parsing cgroup v2 cpu.max and /proc/self/cgroup, and
// the default thread count built from them (issue 14).
#include "common/cpu_limit.hpp"

#include <doctest/doctest.h>

#include <flowpool/thread_pool.hpp>

#include <sched.h>
#include <stdlib.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

using flowpool::detail::cgroup_cpu_quota_in;
using flowpool::detail::parse_cgroup_v2_path;
using flowpool::detail::parse_cpu_max;

namespace {

// A fake cgroup v2 mount in a fresh temporary directory, removed by the destructor.
class fake_cgroup_mount {
 public:
  fake_cgroup_mount() {
    std::string pattern = (std::filesystem::temp_directory_path() / "flowpool_cgroup_XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    m_root = pattern;
  }
  fake_cgroup_mount(const fake_cgroup_mount&) = delete;
  fake_cgroup_mount& operator=(const fake_cgroup_mount&) = delete;
  fake_cgroup_mount(fake_cgroup_mount&&) = delete;
  fake_cgroup_mount& operator=(fake_cgroup_mount&&) = delete;
  ~fake_cgroup_mount() {
    std::error_code ignored;
    std::filesystem::remove_all(m_root, ignored);
  }

  // Writes `content` to <root><cgroup>/cpu.max, creating the directories.
  void set_cpu_max(const std::string& cgroup, const std::string& content) const {
    const std::filesystem::path directory = m_root + cgroup;
    std::filesystem::create_directories(directory);
    std::ofstream(directory / "cpu.max") << content;
  }

  [[nodiscard]] const std::string& root() const { return m_root; }

 private:
  std::string m_root;
};

}  // namespace

TEST_SUITE("cpu_limit") {
  TEST_CASE("cpu.max \"max <period>\" means no quota") {
    CHECK(parse_cpu_max("max 100000") == std::nullopt);
    CHECK(parse_cpu_max("max 100000\n") == std::nullopt);
  }

  TEST_CASE("cpu.max quota over period is rounded up to whole CPUs") {
    CHECK(parse_cpu_max("200000 100000") == std::optional<std::size_t>(2));
    CHECK(parse_cpu_max("200000 100000\n") == std::optional<std::size_t>(2));
    CHECK(parse_cpu_max("150000 100000") == std::optional<std::size_t>(2));
    CHECK(parse_cpu_max("50000 100000") == std::optional<std::size_t>(1));
    CHECK(parse_cpu_max("1000 100000") == std::optional<std::size_t>(1));
    CHECK(parse_cpu_max("100000 100000") == std::optional<std::size_t>(1));
    CHECK(parse_cpu_max("100001 100000") == std::optional<std::size_t>(2));
    CHECK(parse_cpu_max("1600000 100000") == std::optional<std::size_t>(16));
  }

  TEST_CASE("cpu.max text that is not \"<quota> <period>\" counts as no quota") {
    for (const std::string_view garbage :
         {"", "\n", "max", "100000", "garbage", "abc 100000", "100000 abc", "100000 0", "0 100000", "-1 100000",
          "100000  100000", "100000 100000 1", "1.5 100000", "99999999999999999999999 100000", "max max"}) {
      CAPTURE(garbage);
      CHECK(parse_cpu_max(garbage) == std::nullopt);
    }
  }

  TEST_CASE("the cgroup v2 path is the 0:: line of /proc/self/cgroup") {
    CHECK(parse_cgroup_v2_path("0::/\n") == std::optional<std::string_view>("/"));
    CHECK(parse_cgroup_v2_path("0::/user.slice/session-1.scope\n") ==
          std::optional<std::string_view>("/user.slice/session-1.scope"));
    CHECK(parse_cgroup_v2_path("12:cpu,cpuacct:/a\n1:name=systemd:/b\n0::/c/d") ==
          std::optional<std::string_view>("/c/d"));
    CHECK(parse_cgroup_v2_path("4:memory:/x\n1:cpu:/\n") == std::nullopt);  // cgroup v1 only
    CHECK(parse_cgroup_v2_path("") == std::nullopt);
  }

  TEST_CASE("the cgroup quota is the smallest cpu.max of the cgroup and its ancestors") {
    const fake_cgroup_mount mount;
    const std::string& root = mount.root();
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b")) == std::nullopt);  // no files at all
    mount.set_cpu_max("", "max 100000\n");
    mount.set_cpu_max("/a", "300000 100000\n");
    mount.set_cpu_max("/a/b", "max 100000\n");
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b")) == std::optional<std::size_t>(3));  // the parent's
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b/")) == std::optional<std::size_t>(3));
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b/c")) == std::optional<std::size_t>(3));  // c: no file
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/")) == std::nullopt);
    CHECK(cgroup_cpu_quota_in(root, std::nullopt) == std::nullopt);
    mount.set_cpu_max("/a/b", "150000 100000\n");
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b")) == std::optional<std::size_t>(2));  // its own
    mount.set_cpu_max("", "50000 100000\n");  // a container's limit at the namespace root
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/a/b")) == std::optional<std::size_t>(1));
    CHECK(cgroup_cpu_quota_in(root, std::nullopt) == std::optional<std::size_t>(1));
    mount.set_cpu_max("/x", "garbage");
    CHECK(cgroup_cpu_quota_in(root, std::string_view("/x")) == std::optional<std::size_t>(1));  // garbage: no quota
  }

  TEST_CASE("the default thread count is at most the affinity mask and at least 1") {
    const std::optional<std::size_t> affinity = flowpool::detail::affinity_cpu_count();
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    REQUIRE(affinity.has_value());
    CHECK(*affinity == static_cast<std::size_t>(CPU_COUNT(&set)));
    const std::size_t count = flowpool::thread_pool::default_thread_count();
    CHECK(count >= 1);
    CHECK(count <= *affinity);
    if (const std::optional<std::size_t> quota = flowpool::detail::cgroup_cpu_quota()) {
      CHECK(count <= *quota);
    }
  }
}
