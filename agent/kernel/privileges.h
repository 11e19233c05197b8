// Least privilege: once its programs are attached the agent needs no
// capability at all on kernels that allow bpf() map access through file
// descriptors it already holds (6.4 and later). It gives them all up.
#pragma once

#include <functional>
#include <string>

namespace egressd {

// Clears the effective set, checks that still_works() holds, then clears the
// permitted, inheritable, ambient and bounding sets for good. If still_works()
// fails the capabilities are restored. Returns "" when everything was dropped,
// else the reason the capabilities were kept.
std::string drop_capabilities(const std::function<bool()>& still_works);

}  // namespace egressd
