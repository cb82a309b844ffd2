/// @file
/// @brief flowpool's version, as macros (for the preprocessor) and as a function (for the built library).
#pragma once

/// Major version: an incompatible API change raises it.
#define FLOWPOOL_VERSION_MAJOR 0
/// Minor version: a compatible addition raises it.
#define FLOWPOOL_VERSION_MINOR 1
/// Patch version: a fix that changes no API raises it.
#define FLOWPOOL_VERSION_PATCH 0

namespace flowpool {

/// @brief The version of the flowpool library that was linked, as "major.minor.patch".
///
/// Compare it with the FLOWPOOL_VERSION_* macros to detect a header/library mismatch.
/// Thread-safe; never blocks; never allocates; never throws.
/// @return A string with static storage duration.
[[nodiscard]] const char* version() noexcept;

}  // namespace flowpool
