// Memory-introspection ioctls: ioctl(2) is variadic, and PAGEMAP_SCAN / userfaultfd WP_ASYNC
// are newer than the system headers.
#include <poll.h>
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

_Static_assert(CK_UFFD_EVENT_PAGEFAULT == UFFD_EVENT_PAGEFAULT && CK_UFFD_EVENT_FORK == UFFD_EVENT_FORK &&
                   CK_UFFD_EVENT_REMAP == UFFD_EVENT_REMAP && CK_UFFD_EVENT_REMOVE == UFFD_EVENT_REMOVE &&
                   CK_UFFD_EVENT_UNMAP == UFFD_EVENT_UNMAP,
               "userfaultfd events");
_Static_assert(CK_UFFD_FEATURES_NONCOOPERATIVE ==
                   (UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
                    UFFD_FEATURE_EVENT_UNMAP),
               "userfaultfd non-cooperative features");
_Static_assert(sizeof(struct uffd_msg) == 32, "struct uffd_msg");

int ck_uffd_read_event(int uffd, struct ck_uffd_event *event) {
  struct uffd_msg msg;
  ssize_t n;
  do n = read(uffd, &msg, sizeof msg);
  while (n < 0 && errno == EINTR);
  if (n < 0) return errno == EAGAIN ? 0 : -errno;
  if (n != sizeof msg) return -EIO;
  *event = (struct ck_uffd_event){.kind = msg.event, .ufd = -1};
  switch (msg.event) {
  case UFFD_EVENT_PAGEFAULT: event->address = msg.arg.pagefault.address; break;
  case UFFD_EVENT_FORK: event->ufd = (int32_t)msg.arg.fork.ufd; break;
  case UFFD_EVENT_REMAP:
    event->from = msg.arg.remap.from;
    event->to = msg.arg.remap.to;
    event->length = msg.arg.remap.len;
    break;
  case UFFD_EVENT_REMOVE:
  case UFFD_EVENT_UNMAP:
    event->start = msg.arg.remove.start;
    event->end = msg.arg.remove.end;
    break;
  default: break;
  }
  return 1;
}

int ck_uffd_copy_nowait(int uffd, uint64_t destination, const void *source, uint64_t length, uint64_t *done) {
  *done = 0;
  while (*done < length) {
    struct uffdio_copy copy = {.dst = destination + *done, .src = (uint64_t)(uintptr_t)source + *done, .len = length - *done};
    if (ioctl(uffd, UFFDIO_COPY, &copy) == 0) return 0;
    if (copy.copy > 0) {
      *done += (uint64_t)copy.copy;
      continue;
    }
    return copy.copy < 0 ? (int)copy.copy : -errno;
  }
  return 0;
}

int ck_poll_for(struct pollfd *fds, unsigned long count, long long nanoseconds) {
  if (nanoseconds < 0) return ppoll(fds, count, NULL, NULL);
  struct timespec timeout = {.tv_sec = nanoseconds / 1000000000, .tv_nsec = nanoseconds % 1000000000};
  return ppoll(fds, count, &timeout, NULL);
}

int ck_uffd_wake(int uffd, uint64_t address) {
  struct uffdio_range range = {.start = address, .len = 4096};
  return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

int ck_uffd_zeropage(int uffd, uint64_t address) {
  struct uffdio_zeropage zero = {.range = {.start = address, .len = 4096}};
  if (ioctl(uffd, UFFDIO_ZEROPAGE, &zero) == 0) return 0;
  if (errno == EEXIST) return ck_uffd_wake(uffd, address);
  return -errno;
}
