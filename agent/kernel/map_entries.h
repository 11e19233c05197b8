// Every entry of a BPF hash map whose keys are K and values V, read with
// get_next_key and lookup (an entry deleted meanwhile is skipped).
#pragma once

#include <bpf/bpf.h>

#include <utility>
#include <vector>

namespace egressd {

template <typename K, typename V>
std::vector<std::pair<K, V>> map_entries(int fd) {
  std::vector<std::pair<K, V>> out;
  if (fd < 0) return out;
  K key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    V v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) out.emplace_back(next, v);
    key = next;
    prev = &key;
  }
  return out;
}

}  // namespace egressd
