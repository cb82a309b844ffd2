#include <doctest/doctest.h>

#include <flowpool/version.hpp>

#include <string>

TEST_SUITE("version") {
  TEST_CASE("version() matches the header's version macros") {
    const std::string expected = std::to_string(FLOWPOOL_VERSION_MAJOR) + "." + std::to_string(FLOWPOOL_VERSION_MINOR) +
                                 "." + std::to_string(FLOWPOOL_VERSION_PATCH);
    CHECK(expected == flowpool::version());
  }
}
