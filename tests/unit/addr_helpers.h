// flow_addr values for unit tests.
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>

#include "events.h"

namespace egressd::test_addr {

inline flow_addr v4(const char* ip, uint16_t port) {
  flow_addr a{};
  a.family = AF_INET;
  a.port = port;
  inet_pton(AF_INET, ip, a.addr_be);
  return a;
}

inline flow_addr v6(const char* ip, uint16_t port) {
  flow_addr a{};
  a.family = AF_INET6;
  a.port = port;
  inet_pton(AF_INET6, ip, a.addr_be);
  return a;
}

}  // namespace egressd::test_addr
