// Announcing a restored container's addresses where it now is, so that switches and peers
// learn its MAC's new port: a gratuitous ARP for an IPv4 address (a request for the address
// itself from it, RFC 5227's ARP announcement) and an unsolicited neighbour advertisement for
// an IPv6 one (RFC 4861 7.2.6, override set, to all nodes). In C: sockaddr_ll, the ARP and
// ICMPv6 layouts and IPV6_MULTICAST_HOPS are not in Glibc's Swift overlay. Each returns its
// socket, sent on, for the caller to close: closing a packet socket waits out an RCU grace
// period (packet_release's synchronize_net, 15-20 ms here), which the caller keeps off
// the container's downtime.
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "ckshim.h"

int ck_announce_ipv4(int ifindex, const unsigned char mac[6], const unsigned char address[4]) {
  int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) return -errno;
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ARP), .sll_ifindex = ifindex,
                           .sll_halen = 6};
  memset(to.sll_addr, 0xff, 6);
  // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request; sender = target = the address.
  unsigned char packet[28] = {0, 1, 8, 0, 6, 4, 0, 1};
  memcpy(packet + 8, mac, 6);
  memcpy(packet + 14, address, 4);
  memcpy(packet + 24, address, 4);
  long sent = sendto(fd, packet, sizeof packet, 0, (struct sockaddr *)&to, sizeof to);
  if (sent < 0) {
    int error = -errno;
    close(fd);
    return error;
  }
  return fd;
}

int ck_announce_ipv6(int ifindex, const unsigned char mac[6], const unsigned char address[16]) {
  int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) return -errno;
  int hops = 255;  // a neighbour advertisement with another hop limit is dropped
  if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof hops) < 0 ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof ifindex) < 0) {
    int error = -errno;
    close(fd);
    return error;
  }
  // type 136, code 0, checksum (the kernel's), flags: override; target; option 2 (target
  // link-layer address), length 1 (8 bytes), the MAC.
  unsigned char packet[32] = {136, 0, 0, 0, 0x20};
  memcpy(packet + 8, address, 16);
  packet[24] = 2;
  packet[25] = 1;
  memcpy(packet + 26, mac, 6);
  struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_scope_id = (unsigned)ifindex};
  inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
  long sent = sendto(fd, packet, sizeof packet, 0, (struct sockaddr *)&to, sizeof to);
  if (sent < 0) {
    int error = -errno;
    close(fd);
    return error;
  }
  return fd;
}
