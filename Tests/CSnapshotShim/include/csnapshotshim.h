// csnapshotshim: what the tests' state snapshot must do in C, kept apart from ckcont's own
// shim so that the snapshot shares no code with the dump it checks.
#ifndef CSNAPSHOTSHIM_H
#define CSNAPSHOTSHIM_H

// The bytes waiting to be read (SIOCINQ) and not yet sent (SIOCOUTQ) in socket `fd`: ioctl(2)
// is variadic, which Swift cannot call. Each is -errno when its ioctl failed (a listener).
void ckt_socket_queues(int fd, int *inq, int *outq);

#endif
