#include "privileges.h"

#include <sys/capability.h>
#include <sys/prctl.h>

#include <cerrno>
#include <cstring>

namespace egressd {

std::string drop_capabilities(const std::function<bool()>& still_works) {
  cap_t saved = cap_get_proc();
  if (!saved) return std::string("cannot read capabilities: ") + strerror(errno);
  cap_t trial = cap_dup(saved);
  cap_clear_flag(trial, CAP_EFFECTIVE);
  const bool lowered = cap_set_proc(trial) == 0;
  cap_free(trial);
  if (!lowered || !still_works()) {
    cap_set_proc(saved);
    cap_free(saved);
    return lowered ? "this kernel needs CAP_BPF for the agent's map reads" : "cannot change capabilities";
  }
  // Raise CAP_SETPCAP again just long enough to empty the bounding set.
  cap_t setpcap = cap_dup(saved);
  cap_clear_flag(setpcap, CAP_EFFECTIVE);
  const cap_value_t pcap[] = {CAP_SETPCAP};
  cap_set_flag(setpcap, CAP_EFFECTIVE, 1, pcap, CAP_SET);
  if (cap_set_proc(setpcap) == 0)
    for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
  cap_free(setpcap);
  cap_free(saved);
  cap_reset_ambient();
  cap_t none = cap_init();
  const int rc = cap_set_proc(none);
  cap_free(none);
  return rc == 0 ? "" : std::string("cannot drop capabilities: ") + strerror(errno);
}

}  // namespace egressd
