// Socket queue lengths for the state snapshot: ioctl(2) is variadic, which Swift cannot call.
#include "csnapshotshim.h"

#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

void ckt_socket_queues(int fd, int *inq, int *outq) {
  if (ioctl(fd, SIOCINQ, inq) < 0) *inq = -errno;
  if (ioctl(fd, SIOCOUTQ, outq) < 0) *outq = -errno;
}
