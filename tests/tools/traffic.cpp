// egressd-traffic: makes known traffic for the kernel tests, one send path
// per mode, and prints what it did as one JSON line on stdout:
//   {"pid":123,"bytes":4096,"child":124,"child_bytes":100,"elapsed_us":350}
// Every mode sends exactly the bytes it is told to and fails loudly if the
// kernel accepted fewer.
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "egressd-traffic: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

void check_sent(ssize_t n, size_t want, const char* what) {
  if (n < 0) die(what);
  if (static_cast<size_t>(n) != want) {
    std::fprintf(stderr, "egressd-traffic: %s: short send %zd of %zu\n", what, n, want);
    std::exit(1);
  }
}

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = 0;
};

Addr parse_addr(const std::string& host, int port) {
  Addr a;
  if (inet_pton(AF_INET, host.c_str(), &reinterpret_cast<sockaddr_in*>(&a.ss)->sin_addr) == 1) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in);
    a.family = AF_INET;
    return a;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET6, host.c_str(), &sin6->sin6_addr) != 1) {
    std::fprintf(stderr, "egressd-traffic: bad address %s\n", host.c_str());
    std::exit(2);
  }
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(static_cast<uint16_t>(port));
  a.len = sizeof(sockaddr_in6);
  a.family = AF_INET6;
  return a;
}

int tcp_connect(const Addr& a) {
  int fd = socket(a.family, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a.ss), a.len) < 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Listens on a, then says so on stdout (the test waits for that line).
int tcp_listen(const Addr& a) {
  int s = socket(a.family, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(s, reinterpret_cast<const sockaddr*>(&a.ss), a.len) < 0) die("bind");
  if (listen(s, 16) < 0) die("listen");
  std::printf("{\"pid\":%d,\"listening\":true}\n", getpid());
  std::fflush(stdout);
  return s;
}

// Sends total bytes in chunks with the named method on a connected socket.
void send_with(int fd, const std::string& method, size_t total, size_t chunk) {
  std::vector<char> buf(chunk, 'e');
  size_t left = total;
  if (method == "sendfile" || method == "splice") {
    char path[] = "/tmp/egressd-traffic-XXXXXX";
    int file = mkstemp(path);
    if (file < 0) die("mkstemp");
    unlink(path);
    std::vector<char> data(total, 'f');
    if (write(file, data.data(), total) != static_cast<ssize_t>(total)) die("write temp file");
    if (method == "sendfile") {
      off_t off = 0;
      while (left) {
        ssize_t n = sendfile(fd, file, &off, std::min(left, chunk));
        if (n <= 0) die("sendfile");
        left -= static_cast<size_t>(n);
      }
    } else {
      int p[2];
      if (pipe(p) < 0) die("pipe");
      loff_t off = 0;
      while (left) {
        ssize_t in = splice(file, &off, p[1], nullptr, std::min(left, chunk), 0);
        if (in <= 0) die("splice file->pipe");
        ssize_t moved = 0;
        while (moved < in) {
          ssize_t n = splice(p[0], nullptr, fd, nullptr, static_cast<size_t>(in - moved), 0);
          if (n <= 0) die("splice pipe->socket");
          moved += n;
        }
        left -= static_cast<size_t>(in);
      }
    }
    close(file);
    return;
  }
  if (method == "io_uring") {
    io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) < 0) die("io_uring_queue_init");
    while (left) {
      size_t n = std::min(left, chunk);
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_send(sqe, fd, buf.data(), n, 0);
      io_uring_submit(&ring);
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring, &cqe) < 0) die("io_uring_wait_cqe");
      errno = cqe->res < 0 ? -cqe->res : 0;
      check_sent(cqe->res, n, "io_uring send");
      io_uring_cqe_seen(&ring, cqe);
      left -= n;
    }
    io_uring_queue_exit(&ring);
    return;
  }
  while (left) {
    size_t n = std::min(left, chunk);
    ssize_t r;
    if (method == "send") {
      r = send(fd, buf.data(), n, 0);
    } else if (method == "write") {
      r = write(fd, buf.data(), n);
    } else if (method == "writev") {
      size_t half = n / 2;
      iovec iov[2] = {{buf.data(), half}, {buf.data() + half, n - half}};
      r = writev(fd, iov, 2);
    } else if (method == "sendmsg") {
      iovec iov{buf.data(), n};
      msghdr m{};
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      r = sendmsg(fd, &m, 0);
    } else {
      std::fprintf(stderr, "egressd-traffic: unknown method %s\n", method.c_str());
      std::exit(2);
    }
    check_sent(r, n, method.c_str());
    left -= n;
  }
}

size_t arg_size(char** argv, int i) { return std::strtoull(argv[i], nullptr, 10); }

void usage() {
  std::fprintf(stderr,
               "usage: egressd-traffic [--hold] [--wait-stdin] MODE ...\n"
               "  tcp HOST PORT BYTES CHUNK METHOD   (send|write|writev|sendmsg|sendfile|splice|io_uring)\n"
               "  tcp-late HOST PORT BYTES           connect, wait for stdin, then send\n"
               "  sctp HOST PORT BYTES CHUNK         one-to-one SCTP, send in chunks\n"
               "  udp-probe HOST PORT COUNT          connect UDP COUNT times, never send\n"
               "  dns HOST PORT NAME                 one DNS A query over connected UDP\n"
               "  tcp-thread HOST PORT BYTES         send from a second thread\n"
               "  tcp-inherit HOST PORT PARENT CHILD parent and forked child share one socket\n"
               "  udp HOST PORT COUNT SIZE           connected UDP\n"
               "  udp-to HOST PORT[,PORT..] COUNT SIZE  unconnected UDP, sendto per port\n"
               "  tcp-many HOST PORT COUNT SIZE  COUNT connections, each sends SIZE bytes and closes\n"
               "  udp-mmsg HOST PORT COUNT SIZE      unconnected UDP, one sendmmsg call\n"
               "  icmp HOST COUNT PAYLOAD            raw ICMP echo requests\n"
               "  packet IFNAME COUNT SIZE           AF_PACKET frames\n"
               "  tcp-sink ADDR PORT                 accept and drain (for namespaces)\n"
               "  memfd-exec NAME MODE ...           copy this program into memfd NAME and run MODE from it\n"
               "  tcp-exec HOST PORT BYTES EXE BYTES2  send BYTES, exec EXE to send BYTES2 on the same socket\n"
               "  send-fd FD BYTES                   send on an inherited connected socket, then close it\n"
               "  serve-send ADDR PORT BYTES         accept one connection, send BYTES to it, close\n"
               "  udp-many HOST PORT COUNT SIZE      COUNT connected UDP sockets, SIZE bytes each, open until stdin\n"
               "  procs-hold COUNT                   COUNT idle child processes until stdin\n"
               "  tcp-paced HOST PORT BYTES CHUNK MS one connection, CHUNK bytes every MS ms until BYTES\n"
               "  udp-spray FIRST COUNT SIZE PORT    one unconnected UDP socket, SIZE bytes to each of COUNT\n"
               "                                     distinct addresses in 127.1.0.0-127.255.255.255 from index FIRST\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  int i = 1;
  bool hold = false;
  if (i < argc && std::string(argv[i]) == "--hold") {
    // For tcp: after sending, report and keep the socket open until stdin
    // closes or gives a byte, so a test can act while the flow is open.
    hold = true;
    ++i;
  }
  if (i < argc && std::string(argv[i]) == "--wait-stdin") {
    // Print our pid, then wait: the test acts on this process before it sends.
    std::printf("{\"pid\":%d,\"waiting\":true}\n", getpid());
    std::fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) die("read stdin");
    ++i;
  }
  if (i >= argc) usage();
  const std::string mode = argv[i++];
  const int n = argc - i;
  char** a = argv + i;
  size_t bytes = 0, child_bytes = 0;
  pid_t child = 0;

  if (mode == "tcp" && n == 5) {
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    bytes = arg_size(a, 2);
    send_with(fd, a[4], bytes, arg_size(a, 3));
    if (hold) {
      std::printf("{\"pid\":%d,\"bytes\":%zu,\"holding\":true}\n", getpid(), bytes);
      std::fflush(stdout);
      char c;
      if (read(0, &c, 1) < 0) die("read stdin");
    }
    close(fd);
  } else if (mode == "tcp-many" && n == 4) {
    const size_t count = arg_size(a, 2), size = arg_size(a, 3);
    for (size_t c = 0; c < count; ++c) {
      int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
      send_with(fd, "send", size, size);
      close(fd);
      bytes += size;
    }
  } else if (mode == "sctp" && n == 4) {
    // One-to-one SCTP (SOCK_STREAM, IPPROTO_SCTP): connect, send in chunks.
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    int fd = socket(dst.family, SOCK_STREAM, IPPROTO_SCTP);
    if (fd < 0) die("socket(IPPROTO_SCTP)");
    if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) < 0) die("connect");
    bytes = arg_size(a, 2);
    send_with(fd, "send", bytes, arg_size(a, 3));
    close(fd);
  } else if (mode == "udp-probe" && n == 3) {
    // What getaddrinfo does to choose a source address: connect a UDP socket
    // to each candidate, read the local address, never send.
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    int fd = socket(dst.family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    for (size_t k = 0, count = arg_size(a, 2); k < count; ++k) {
      if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) < 0) die("connect");
      sockaddr_storage local{};
      socklen_t len = sizeof(local);
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) < 0) die("getsockname");
    }
    close(fd);
  } else if (mode == "dns" && n == 3) {
    // One A query for NAME to a resolver, over connected UDP; no wait for
    // the answer.
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    std::vector<unsigned char> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    std::string name = a[2];
    for (size_t start = 0; start <= name.size();) {
      size_t dot = name.find('.', start);
      if (dot == std::string::npos) dot = name.size();
      q.push_back(static_cast<unsigned char>(dot - start));
      q.insert(q.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    q.insert(q.end(), {0, 0, 1, 0, 1});
    int fd = socket(dst.family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) < 0) die("connect");
    check_sent(send(fd, q.data(), q.size(), 0), q.size(), "send");
    bytes = q.size();
    close(fd);
  } else if (mode == "tcp-late" && n == 3) {
    // Connect now, send when told: the socket can predate the agent.
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    std::printf("{\"pid\":%d,\"connected\":true}\n", getpid());
    std::fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) die("read stdin");
    bytes = arg_size(a, 2);
    send_with(fd, "send", bytes, 1000);
    close(fd);
  } else if (mode == "tcp-thread" && n == 3) {
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    bytes = arg_size(a, 2);
    std::thread t([&] { send_with(fd, "send", bytes, 1000); });
    t.join();
    close(fd);
  } else if (mode == "tcp-inherit" && n == 4) {
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    bytes = arg_size(a, 2);
    child_bytes = arg_size(a, 3);
    int ready[2];
    if (pipe(ready) < 0) die("pipe");
    child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      send_with(fd, "send", child_bytes, 1000);
      _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);  // the child sends first, then the parent
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child");
    send_with(fd, "send", bytes, 1000);
    close(fd);
  } else if (mode == "udp" && n == 4) {
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    int fd = socket(dst.family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) < 0) die("connect");
    size_t count = arg_size(a, 2), size = arg_size(a, 3);
    std::vector<char> buf(size, 'u');
    for (size_t k = 0; k < count; ++k) check_sent(send(fd, buf.data(), size, 0), size, "send");
    bytes = count * size;
    close(fd);
  } else if (mode == "udp-to" && n == 4) {
    std::vector<int> ports;
    for (char* p = a[1]; p && *p;) {
      ports.push_back(std::atoi(p));
      p = std::strchr(p, ',');
      if (p) ++p;
    }
    Addr first = parse_addr(a[0], ports.at(0));
    int fd = socket(first.family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    size_t count = arg_size(a, 2), size = arg_size(a, 3);
    std::vector<char> buf(size, 'u');
    for (int port : ports) {
      Addr dst = parse_addr(a[0], port);
      for (size_t k = 0; k < count; ++k)
        check_sent(sendto(fd, buf.data(), size, 0, reinterpret_cast<sockaddr*>(&dst.ss), dst.len),
                   size, "sendto");
    }
    bytes = count * size * ports.size();
    close(fd);
  } else if (mode == "udp-mmsg" && n == 4) {
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    int fd = socket(dst.family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    size_t count = arg_size(a, 2), size = arg_size(a, 3);
    std::vector<char> buf(size, 'm');
    std::vector<iovec> iov(count, iovec{buf.data(), size});
    std::vector<mmsghdr> msgs(count);
    for (size_t k = 0; k < count; ++k) {
      msgs[k].msg_hdr.msg_name = &dst.ss;
      msgs[k].msg_hdr.msg_namelen = dst.len;
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int sent = sendmmsg(fd, msgs.data(), static_cast<unsigned>(count), 0);
    check_sent(sent, count, "sendmmsg");
    bytes = count * size;
    close(fd);
  } else if (mode == "icmp" && n == 3) {
    Addr dst = parse_addr(a[0], 0);
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (fd < 0) die("socket raw icmp");
    size_t count = arg_size(a, 1), payload = arg_size(a, 2);
    std::vector<unsigned char> pkt(sizeof(icmphdr) + payload, 'p');
    for (size_t k = 0; k < count; ++k) {
      auto* h = reinterpret_cast<icmphdr*>(pkt.data());
      h->type = ICMP_ECHO;
      h->code = 0;
      h->un.echo.id = htons(static_cast<uint16_t>(getpid()));
      h->un.echo.sequence = htons(static_cast<uint16_t>(k));
      h->checksum = 0;
      uint32_t sum = 0;
      for (size_t b = 0; b + 1 < pkt.size(); b += 2) sum += (pkt[b] << 8) | pkt[b + 1];
      if (pkt.size() % 2) sum += pkt.back() << 8;
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      h->checksum = htons(static_cast<uint16_t>(~sum));
      check_sent(sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&dst.ss), dst.len),
                 pkt.size(), "sendto icmp");
    }
    bytes = count * pkt.size();
    close(fd);
  } else if (mode == "packet" && n == 3) {
    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (fd < 0) die("socket packet");
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = static_cast<int>(if_nametoindex(a[0]));
    ll.sll_protocol = htons(0x88b5);  // IEEE local experimental ethertype
    if (!ll.sll_ifindex) die("if_nametoindex");
    size_t count = arg_size(a, 1), size = arg_size(a, 2);
    std::vector<unsigned char> frame(size, 0);
    std::memset(frame.data(), 0xff, 6);  // broadcast on the test's own link
    frame[12] = 0x88;
    frame[13] = 0xb5;
    for (size_t k = 0; k < count; ++k)
      check_sent(sendto(fd, frame.data(), size, 0, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)),
                 size, "sendto packet");
    bytes = count * size;
    close(fd);
  } else if (mode == "tcp-sink" && n == 2) {
    int s = tcp_listen(parse_addr(a[0], std::atoi(a[1])));
    for (;;) {
      int c = accept(s, nullptr, nullptr);
      if (c < 0) die("accept");
      char buf[65536];
      while (read(c, buf, sizeof(buf)) > 0) {
      }
      close(c);
    }
  } else if (mode == "memfd-exec" && n >= 2) {
    // A fileless program: this binary's bytes in an anonymous memory file,
    // executed from it (what /proc/PID/exe shows as "/memfd:NAME (deleted)").
    int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (self < 0) die("open /proc/self/exe");
    int mem = memfd_create(a[0], MFD_CLOEXEC);
    if (mem < 0) die("memfd_create");
    char buf[65536];
    for (ssize_t r; (r = read(self, buf, sizeof(buf))) != 0;) {
      if (r < 0) die("read /proc/self/exe");
      if (write(mem, buf, static_cast<size_t>(r)) != r) die("write memfd");
    }
    close(self);
    std::vector<char*> args = {argv[0]};
    for (int k = 1; k < n; ++k) args.push_back(a[k]);
    args.push_back(nullptr);
    fexecve(mem, args.data(), environ);
    die("fexecve");
  } else if (mode == "tcp-exec" && n == 5) {
    // Bytes before and after an execve on one socket the new image keeps.
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    send_with(fd, "send", arg_size(a, 2), 1000);
    std::string fd_text = std::to_string(fd);
    char* args[] = {a[3], const_cast<char*>("send-fd"), fd_text.data(), a[4], nullptr};
    execv(a[3], args);
    die("execv");
  } else if (mode == "send-fd" && n == 2) {
    int fd = std::atoi(a[0]);
    bytes = arg_size(a, 1);
    send_with(fd, "send", bytes, 1000);
    close(fd);
  } else if (mode == "serve-send" && n == 3) {
    // A local server: its bytes go to a client that connected to it.
    int s = tcp_listen(parse_addr(a[0], std::atoi(a[1])));
    int c = accept(s, nullptr, nullptr);
    if (c < 0) die("accept");
    bytes = arg_size(a, 2);
    send_with(c, "send", bytes, 1000);
    shutdown(c, SHUT_WR);
    char sink[4096];
    while (read(c, sink, sizeof(sink)) > 0) {
    }
    close(c);
    close(s);
  } else if (mode == "udp-many" && n == 4) {
    // Many sockets open at once (a full socket map); one line when all have
    // sent, closed when stdin says so.
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
      lim.rlim_cur = lim.rlim_max;
      setrlimit(RLIMIT_NOFILE, &lim);
    }
    Addr dst = parse_addr(a[0], std::atoi(a[1]));
    const size_t count = arg_size(a, 2), size = arg_size(a, 3);
    std::vector<char> buf(size, 'm');
    std::vector<int> fds;
    for (size_t k = 0; k < count; ++k) {
      int fd = socket(dst.family, SOCK_DGRAM, 0);
      if (fd < 0) die("socket");
      if (connect(fd, reinterpret_cast<sockaddr*>(&dst.ss), dst.len) < 0) die("connect");
      check_sent(send(fd, buf.data(), size, 0), size, "send");
      fds.push_back(fd);
    }
    bytes = count * size;
    std::printf("{\"pid\":%d,\"bytes\":%zu,\"holding\":true}\n", getpid(), bytes);
    std::fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) die("read stdin");
    for (int fd : fds) close(fd);
  } else if (mode == "tcp-paced" && n == 5) {
    // A long flow: it sends while agents restart around it.
    int fd = tcp_connect(parse_addr(a[0], std::atoi(a[1])));
    const size_t total = arg_size(a, 2), chunk = arg_size(a, 3);
    const auto every = std::chrono::milliseconds(std::atoi(a[4]));
    std::printf("{\"pid\":%d,\"connected\":true}\n", getpid());
    std::fflush(stdout);
    while (bytes < total) {
      const size_t k = std::min(chunk, total - bytes);
      send_with(fd, "send", k, k);
      bytes += k;
      std::this_thread::sleep_for(every);
    }
    close(fd);
  } else if (mode == "udp-spray" && n == 4) {
    // Distinct destinations (the soak's 1M): index i is 127.(1 + i / 65536).(i / 256 % 256).(i % 256),
    // loopback all of it, so nothing leaves the machine.
    const size_t first = arg_size(a, 0), count = arg_size(a, 1), size = arg_size(a, 2);
    const int port = std::atoi(a[3]);
    if (first + count > size_t(255) * 65536) {
      std::fprintf(stderr, "egressd-traffic: udp-spray: index past 127.255.255.255\n");
      std::exit(2);
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    std::vector<char> buf(size, 's');
    for (size_t i = first; i < first + count; ++i) {
      sockaddr_in dst{};
      dst.sin_family = AF_INET;
      dst.sin_port = htons(static_cast<uint16_t>(port));
      dst.sin_addr.s_addr = htonl((127u << 24) | static_cast<uint32_t>(((1 + i / 65536) << 16) | (i % 65536)));
      check_sent(sendto(fd, buf.data(), size, 0, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)), size, "sendto");
      bytes += size;
    }
    close(fd);
  } else if (mode == "procs-hold" && n == 1) {
    // Many processes at once (a full process map), until stdin says so.
    const size_t count = arg_size(a, 0);
    std::vector<pid_t> kids;
    for (size_t k = 0; k < count; ++k) {
      pid_t p = fork();
      if (p < 0) die("fork");
      if (p == 0) {
        for (;;) pause();
      }
      kids.push_back(p);
    }
    std::printf("{\"pid\":%d,\"children\":%zu,\"holding\":true}\n", getpid(), kids.size());
    std::fflush(stdout);
    char c;
    if (read(0, &c, 1) < 0) die("read stdin");
    for (pid_t p : kids) kill(p, SIGKILL);
    for (pid_t p : kids) waitpid(p, nullptr, 0);
  } else {
    usage();
  }
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
  std::printf("{\"pid\":%d,\"bytes\":%zu,\"child\":%d,\"child_bytes\":%zu,\"elapsed_us\":%lld}\n",
              getpid(), bytes, child, child_bytes, static_cast<long long>(us));
  return 0;
}
