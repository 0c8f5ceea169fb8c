// Memory-introspection ioctls: ioctl(2) is variadic, and PAGEMAP_SCAN / userfaultfd WP_ASYNC
// are newer than the system headers.
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>
#include "ckshim.h"

_Static_assert(sizeof(struct ck_page_region) == 24, "struct page_region");
_Static_assert(sizeof(struct ck_pm_scan_arg) == 96, "struct pm_scan_arg");

// include/uapi/linux/fs.h: #define PAGEMAP_SCAN _IOWR(PAGEMAP_IOCTL_MAGIC 'f', 16, struct pm_scan_arg)
#define CK_PAGEMAP_SCAN _IOWR('f', 16, struct ck_pm_scan_arg)

long ck_pagemap_scan(int pagemap_fd, struct ck_pm_scan_arg *arg) {
  return ioctl(pagemap_fd, CK_PAGEMAP_SCAN, arg);
}

int ck_userfaultfd_api(int flags, uint64_t features, uint64_t *granted) {
  int fd = (int)syscall(SYS_userfaultfd, flags);
  if (fd < 0) return -errno;
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  if (ioctl(fd, UFFDIO_API, &api) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  *granted = api.features;
  return fd;
}

int ck_uffd_api_features(int uffd, uint64_t features) {
  struct uffdio_api api = {.api = UFFD_API, .features = features};
  return ioctl(uffd, UFFDIO_API, &api) < 0 ? -errno : 0;
}

int ck_uffd_register_wp(int uffd, uint64_t start, uint64_t length) {
  struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = UFFDIO_REGISTER_MODE_WP};
  return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int ck_uffd_writeprotect(int uffd, uint64_t start, uint64_t length) {
  struct uffdio_writeprotect wp = {.range = {.start = start, .len = length}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
  return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

int ck_uffd_prepare(int uffd) {
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  return ioctl(uffd, UFFDIO_API, &api) < 0 ? -errno : 0;
}

int ck_uffd_register_missing(int uffd, uint64_t start, uint64_t length) {
  struct uffdio_register reg = {.range = {.start = start, .len = length}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int ck_uffd_copy(int uffd, uint64_t destination, const void *source, uint64_t length) {
  uint64_t done = 0;
  while (done < length) {
    struct uffdio_copy copy = {.dst = destination + done, .src = (uint64_t)(uintptr_t)source + done, .len = length - done};
    if (ioctl(uffd, UFFDIO_COPY, &copy) == 0) return 0;
    // A partial copy reports how far it got (EAGAIN: the address space changed meanwhile).
    if (copy.copy > 0) {
      done += (uint64_t)copy.copy;
      continue;
    }
    if (errno == EAGAIN) continue;
    return copy.copy < 0 ? (int)copy.copy : -errno;
  }
  return 0;
}
