// Watching a LAN for a restored container's announcements (gratuitous ARP, unsolicited
// neighbour advertisement): a packet socket in another network namespace, and the frames'
// layouts, which Swift cannot name.
#include "csnapshotshim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int ckt_packet_socket(const char *netns_path, const char *ifname) {
  int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(netns_path, O_RDONLY | O_CLOEXEC);
  if (own < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
    int error = -errno;
    if (own >= 0) close(own);
    if (target >= 0) close(target);
    return error;
  }
  close(target);
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
  int error = fd < 0 ? -errno : 0;
  if (fd >= 0) {
    struct sockaddr_ll at = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = (int)if_nametoindex(ifname)};
    if (at.sll_ifindex == 0 || bind(fd, (struct sockaddr *)&at, sizeof at) < 0) {
      error = -errno;
      close(fd);
    }
  }
  setns(own, CLONE_NEWNET);
  close(own);
  return error < 0 ? error : fd;
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int ckt_saw_announcement(int fd, int family, const unsigned char *address, int timeout_ms) {
  long deadline = now_ms() + timeout_ms;
  unsigned char frame[2048];
  for (;;) {
    struct sockaddr_ll from;
    socklen_t length = sizeof from;
    long count = recvfrom(fd, frame, sizeof frame, 0, (struct sockaddr *)&from, &length);
    if (count < 0) {
      if (errno != EAGAIN) return -errno;
      long left = deadline - now_ms();
      if (left <= 0) return 0;
      struct pollfd wait = {.fd = fd, .events = POLLIN};
      poll(&wait, 1, (int)left);
      continue;
    }
    int protocol = ntohs(from.sll_protocol);
    // ARP: a request (op 1) whose sender and target are the address.
    if (family == AF_INET && protocol == ETH_P_ARP && count >= 28 && frame[7] == 1 && !memcmp(frame + 14, address, 4) &&
        !memcmp(frame + 24, address, 4))
      return 1;
    // IPv6, next header ICMPv6, type 136 (neighbour advertisement) for the address.
    if (family == AF_INET6 && protocol == ETH_P_IPV6 && count >= 64 && frame[6] == 58 && frame[40] == 136 &&
        !memcmp(frame + 48, address, 16))
      return 1;
  }
}
