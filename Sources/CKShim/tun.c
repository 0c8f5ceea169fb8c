// tun/tap ioctls (variadic ioctl(2), struct ifreq): see ckshim.h.
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include "ckshim.h"

int ck_tun_get(int fd, char name[16], int *flags) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  if (ioctl(fd, TUNGETIFF, &request) < 0) return -errno;
  memcpy(name, request.ifr_name, IFNAMSIZ);
  name[IFNAMSIZ - 1] = 0;
  *flags = request.ifr_flags;
  return 0;
}

int ck_tun_attach(int fd, const char *name, int flags) {
  struct ifreq request;
  memset(&request, 0, sizeof request);
  strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  request.ifr_flags = (short)flags;
  return ioctl(fd, TUNSETIFF, &request) < 0 ? -errno : 0;
}

int ck_tun_set(int fd, int what, unsigned long value) {
  unsigned long request = what == CK_TUN_PERSIST ? TUNSETPERSIST
    : what == CK_TUN_OWNER ? TUNSETOWNER : what == CK_TUN_GROUP ? TUNSETGROUP : 0;
  if (what == CK_TUN_SNDBUF || what == CK_TUN_VNETHDRSZ) {
    int number = (int)value;
    return ioctl(fd, what == CK_TUN_SNDBUF ? TUNSETSNDBUF : TUNSETVNETHDRSZ, &number) < 0 ? -errno : 0;
  }
  if (!request) return -EINVAL;
  return ioctl(fd, request, value) < 0 ? -errno : 0;
}

int ck_tun_get_int(int fd, int what, int *value) {
  unsigned long request = what == CK_TUN_SNDBUF ? TUNGETSNDBUF : what == CK_TUN_VNETHDRSZ ? TUNGETVNETHDRSZ : 0;
  if (!request) return -EINVAL;
  return ioctl(fd, request, value) < 0 ? -errno : 0;
}
