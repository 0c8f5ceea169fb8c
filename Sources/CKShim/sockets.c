// What a socket is, asked through a descriptor of ckcont's own (pidfd_getfd): several
// getsockopt calls and an ioctl (variadic) over kernel structs (tcp_info) Swift cannot name.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include "ckshim.h"

static int int_option(int fd, int level, int name, int *value) {
  socklen_t length = sizeof(*value);
  return getsockopt(fd, level, name, value, &length) == 0 ? 0 : -errno;
}

int ck_socket_facts(int fd, struct ck_socket_facts *facts) {
  memset(facts, 0, sizeof(*facts));
  int err;
  if ((err = int_option(fd, SOL_SOCKET, SO_DOMAIN, &facts->family)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_TYPE, &facts->type)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_PROTOCOL, &facts->protocol)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_ACCEPTCONN, &facts->listening)) < 0) return err;
  socklen_t length = sizeof(facts->address);
  if (getsockname(fd, (struct sockaddr *)facts->address, &length) == 0) facts->address_length = length;
  length = sizeof(facts->peer);
  if (getpeername(fd, (struct sockaddr *)facts->peer, &length) == 0) facts->peer_length = length;
  if (facts->protocol == IPPROTO_TCP) {
    struct tcp_info info;
    length = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) return -errno;
    facts->tcp_state = info.tcpi_state;
    if (facts->listening) {
      // For a listener the kernel reports its accept queue here: length and limit.
      facts->waiting = (int)info.tcpi_unacked;
      facts->backlog = (int)info.tcpi_sacked;
    }
  }
  if (!facts->listening && ioctl(fd, SIOCINQ, &facts->waiting) < 0) return -errno;
  static const int options[][2] = {
      {SOL_SOCKET, SO_REUSEADDR}, {SOL_SOCKET, SO_REUSEPORT}, {SOL_SOCKET, SO_KEEPALIVE},
      {SOL_SOCKET, SO_BROADCAST}, {IPPROTO_TCP, TCP_NODELAY},  {IPPROTO_IPV6, IPV6_V6ONLY},
  };
  for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
    int level = options[i][0], name = options[i][1], value = 0;
    if (level == IPPROTO_TCP && facts->protocol != IPPROTO_TCP) continue;
    if (level == IPPROTO_IPV6 && facts->family != AF_INET6) continue;
    if (int_option(fd, level, name, &value) < 0) continue;
    facts->options[facts->option_count][0] = level;
    facts->options[facts->option_count][1] = name;
    facts->options[facts->option_count][2] = value;
    facts->option_count++;
  }
  return 0;
}
