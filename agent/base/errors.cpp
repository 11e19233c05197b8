#include "errors.h"

#include <fmt/format.h>

#include <cstring>

namespace egressd {

std::string errno_text(int err) {
  const char* name = strerrorname_np(err);
  return fmt::format("{} ({})", name ? name : std::to_string(err), strerror(err));
}

}  // namespace egressd
