// The kernel's struct tcp_info (linux/tcp.h), whose later fields glibc's netinet/tcp.h lacks;
// the two headers cannot be included together, hence a file of its own.
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include "ckshim.h"

long ck_tcp_segments_out(int fd) {
  struct tcp_info info;
  memset(&info, 0, sizeof(info));
  socklen_t length = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) return -errno;
  if (length < offsetof(struct tcp_info, tcpi_segs_out) + sizeof(info.tcpi_segs_out)) return -ENOSYS;
  return (long)info.tcpi_segs_out;
}

int ck_tcp_state_of(int fd) {
  struct tcp_info info;
  socklen_t size = sizeof(info);
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) < 0 ? -errno : info.tcpi_state;
}

long long ck_tcp_bytes_acked(int fd) {
  struct tcp_info info;
  memset(&info, 0, sizeof(info));
  socklen_t length = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) return -errno;
  if (length < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(info.tcpi_bytes_acked)) return -ENOSYS;
  return (long long)info.tcpi_bytes_acked;
}
