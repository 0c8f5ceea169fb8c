/* tun: what a VPN holds. In a network namespace of its own (the caller's `unshare -n`), a
 * queue of the tun device cktun2 (IFF_TUN|IFF_NO_PI, not persistent: the descriptor holds
 * it), up with 10.55.0.1/24, and a UDP socket. After the restore: the descriptor is still a
 * queue of cktun2 (TUNGETIFF), the device still exists, is up and carries traffic: a
 * datagram sent to 10.55.0.2 comes out of the descriptor as an IPv4 packet to 10.55.0.2.
 * usage: tun */
#include "fix.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static void configure(const char *name) {
  int s = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  struct ifreq request;
  memset(&request, 0, sizeof request);
  snprintf(request.ifr_name, sizeof request.ifr_name, "%s", name);
  struct sockaddr_in *address = (struct sockaddr_in *)&request.ifr_addr;
  address->sin_family = AF_INET;
  inet_pton(AF_INET, "10.55.0.1", &address->sin_addr);
  FX_SYS(ioctl(s, SIOCSIFADDR, &request));
  inet_pton(AF_INET, "255.255.255.0", &address->sin_addr);
  FX_SYS(ioctl(s, SIOCSIFNETMASK, &request));
  FX_SYS(ioctl(s, SIOCGIFFLAGS, &request));
  request.ifr_flags |= IFF_UP;
  FX_SYS(ioctl(s, SIOCSIFFLAGS, &request));
  close(s);
}

int main(void) {
  fx_init("tun");
  fx_term_setup();
  int tun = FX_SYS(open("/dev/net/tun", O_RDWR));
  struct ifreq request;
  memset(&request, 0, sizeof request);
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(request.ifr_name, sizeof request.ifr_name, "cktun2");
  FX_SYS(ioctl(tun, TUNSETIFF, &request));
  configure("cktun2");
  int udp = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  fx_ready();
  fx_wait_term();
  struct ifreq got;
  memset(&got, 0, sizeof got);
  FX_TRUE(ioctl(tun, TUNGETIFF, &got) == 0, "TUNGETIFF: %s", strerror(errno));
  FX_TRUE(!strcmp(got.ifr_name, "cktun2"), "the descriptor is a queue of '%s'", got.ifr_name);
  FX_EQ("its flags", IFF_TUN | IFF_NO_PI, got.ifr_flags & (IFF_TUN | IFF_TAP | IFF_NO_PI));
  FX_TRUE(if_nametoindex("cktun2") > 0, "cktun2 is gone");
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9)};
  inet_pton(AF_INET, "10.55.0.2", &to.sin_addr);
  FX_TRUE(sendto(udp, "ping", 4, 0, (struct sockaddr *)&to, sizeof to) == 4, "sendto: %s", strerror(errno));
  struct pollfd polled = {.fd = tun, .events = POLLIN};
  unsigned char packet[2048];
  int found = 0;
  for (int tries = 0; tries < 20 && !found; tries++) {
    if (poll(&polled, 1, 100) <= 0) continue;
    ssize_t n = read(tun, packet, sizeof packet);
    /* An IPv4 UDP packet to 10.55.0.2 (others, such as IPv6 router solicitations, pass). */
    found = n >= 28 && (packet[0] >> 4) == 4 && packet[9] == 17 && packet[16] == 10 && packet[17] == 55 &&
            packet[18] == 0 && packet[19] == 2;
  }
  FX_TRUE(found, "the datagram to 10.55.0.2 did not come out of the tun descriptor");
  fx_finish();
}
