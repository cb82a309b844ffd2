#include "flowpool/version.hpp"

#define FLOWPOOL_STR_IMPL(x) #x
#define FLOWPOOL_STR(x) FLOWPOOL_STR_IMPL(x)

namespace flowpool {

const char* version() noexcept {
  return FLOWPOOL_STR(FLOWPOOL_VERSION_MAJOR) "." FLOWPOOL_STR(FLOWPOOL_VERSION_MINOR) "." FLOWPOOL_STR(
      FLOWPOOL_VERSION_PATCH);
}

}  // namespace flowpool
