// csnapshotshim: what the tests' state snapshot must do in C, kept apart from ckcont's own
// shim so that the snapshot shares no code with the dump it checks.
#ifndef CSNAPSHOTSHIM_H
#define CSNAPSHOTSHIM_H

// The bytes waiting to be read (SIOCINQ) and not yet sent (SIOCOUTQ) in socket `fd`: ioctl(2)
// is variadic, which Swift cannot call. Each is -errno when its ioctl failed (a listener).
void ckt_socket_queues(int fd, int *inq, int *outq);

// A packet socket for every frame of interface `ifname` of the network namespace at
// `netns_path` (nonblocking); the descriptor or -errno. The calling thread joins the
// namespace for the while.
int ckt_packet_socket(const char *netns_path, const char *ifname);

// 1 once `fd` (a ckt_packet_socket) brought an announcement of `address` (4 bytes for
// AF_INET: a gratuitous ARP; 16 for AF_INET6: a neighbour advertisement) within
// `timeout_ms`, 0 when none came, -errno on error.
int ckt_saw_announcement(int fd, int family, const unsigned char *address, int timeout_ms);

#endif
