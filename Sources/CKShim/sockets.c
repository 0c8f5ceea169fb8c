// What a socket is, asked through a descriptor of ckcont's own (pidfd_getfd): several
// getsockopt calls and an ioctl (variadic) over kernel structs (tcp_info) Swift cannot name.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include "ckshim.h"

static int int_option(int fd, int level, int name, int *value) {
  socklen_t length = sizeof(*value);
  return getsockopt(fd, level, name, value, &length) == 0 ? 0 : -errno;
}

int ck_socket_facts(int fd, struct ck_socket_facts *facts) {
  memset(facts, 0, sizeof(*facts));
  int err;
  if ((err = int_option(fd, SOL_SOCKET, SO_DOMAIN, &facts->family)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_TYPE, &facts->type)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_PROTOCOL, &facts->protocol)) < 0) return err;
  if ((err = int_option(fd, SOL_SOCKET, SO_ACCEPTCONN, &facts->listening)) < 0) return err;
  socklen_t length = sizeof(facts->address);
  if (getsockname(fd, (struct sockaddr *)facts->address, &length) == 0) facts->address_length = length;
  length = sizeof(facts->peer);
  if (getpeername(fd, (struct sockaddr *)facts->peer, &length) == 0) facts->peer_length = length;
  facts->peer_uid = facts->peer_gid = ~0u;
  if (facts->family == AF_UNIX) {
    struct ucred cred;
    length = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) < 0) return -errno;
    facts->peer_pid = cred.pid;
    facts->peer_uid = cred.uid;
    facts->peer_gid = cred.gid;
  }
  if (facts->protocol == IPPROTO_TCP) {
    struct tcp_info info;
    length = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0) return -errno;
    facts->tcp_state = info.tcpi_state;
    if (facts->listening) {
      // For a listener the kernel reports its accept queue here: length and limit.
      facts->waiting = (int)info.tcpi_unacked;
      facts->backlog = (int)info.tcpi_sacked;
    }
  }
  // Netlink sockets answer no SIOCINQ: what waits in them is counted by the caller. Nor do
  // ping sockets: a peek tells the length of the first reply waiting.
  if (!facts->listening && facts->family != AF_NETLINK && ioctl(fd, SIOCINQ, &facts->waiting) < 0) {
    if (errno != ENOTTY) return -errno;
    char byte;
    ssize_t got = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
    if (got < 0 && errno != EAGAIN) return -errno;
    facts->waiting = got < 0 ? 0 : (int)got;
  }
  return 0;
}

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <linux/packet_diag.h>
#include <pthread.h>
#include <sched.h>
#include <sys/un.h>
#include <unistd.h>

struct netns_socket { int netns_fd, result; };

static void *open_in_netns(void *argument) {
  struct netns_socket *job = argument;
  // setns changes only this thread's network namespace; the socket keeps the one it was
  // made in, whatever thread uses it afterwards.
  if (setns(job->netns_fd, CLONE_NEWNET) < 0) { job->result = -errno; return NULL; }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  job->result = fd < 0 ? -errno : fd;
  return NULL;
}

int ck_sock_diag_socket(int netns_fd) {
  if (netns_fd < 0) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    return fd < 0 ? -errno : fd;
  }
  struct netns_socket job = {netns_fd, -EINVAL};
  pthread_t thread;
  int err = pthread_create(&thread, NULL, open_in_netns, &job);
  if (err) return -err;
  pthread_join(thread, NULL);
  return job.result;
}

int ck_unix_diag(int diag_fd, unsigned int inode, struct ck_unix_diag *out) {
  memset(out, 0, sizeof(*out));
  struct {
    struct nlmsghdr header;
    struct unix_diag_req request;
  } message = {
      .header = {.nlmsg_len = sizeof(message), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST},
      .request = {.sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = inode,
                  .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS,
                  .udiag_cookie = {~0u, ~0u}},
  };
  if (send(diag_fd, &message, sizeof(message), 0) < 0) return -errno;
  union { char bytes[8192]; struct nlmsghdr align; } reply;
  ssize_t length = recv(diag_fd, reply.bytes, sizeof(reply.bytes), 0);
  if (length < 0) return -errno;
  struct nlmsghdr *header = &reply.align;
  if (!NLMSG_OK(header, (unsigned int)length)) return -EIO;
  if (header->nlmsg_type == NLMSG_ERROR) {
    struct nlmsgerr *error = NLMSG_DATA(header);
    return error->error ? error->error : -EIO;
  }
  if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) return -EIO;
  struct unix_diag_msg *found = NLMSG_DATA(header);
  // The answer to another question (a caller that shares the socket without taking turns).
  if (found->udiag_ino != inode) return -EIO;
  out->type = found->udiag_type;
  out->state = found->udiag_state;
  int rest = (int)header->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*found));
  for (struct rtattr *attribute = (struct rtattr *)(found + 1); RTA_OK(attribute, rest);
       attribute = RTA_NEXT(attribute, rest)) {
    int size = (int)RTA_PAYLOAD(attribute);
    switch (attribute->rta_type) {
    case UNIX_DIAG_NAME:
      if (size > (int)sizeof(out->name)) size = sizeof(out->name);
      memcpy(out->name, RTA_DATA(attribute), (size_t)size);
      out->name_length = (unsigned int)size;
      break;
    case UNIX_DIAG_SHUTDOWN:
      if (size >= 1) out->shutdown = *(unsigned char *)RTA_DATA(attribute);
      break;
    case UNIX_DIAG_PEER:
      if (size >= 4) memcpy(&out->peer, RTA_DATA(attribute), 4);
      break;
    case UNIX_DIAG_VFS:
      if (size >= (int)sizeof(struct unix_diag_vfs))
        out->file_inode = ((struct unix_diag_vfs *)RTA_DATA(attribute))->udiag_vfs_ino;
      break;
    case UNIX_DIAG_ICONS:
      out->icon_count = (unsigned int)size / 4;
      memcpy(out->icons, RTA_DATA(attribute),
             4 * (out->icon_count < CK_UNIX_ICONS ? out->icon_count : CK_UNIX_ICONS));
      break;
    case UNIX_DIAG_RQLEN:
      if (size >= 8) {
        memcpy(&out->receive_queue, RTA_DATA(attribute), 4);
        memcpy(&out->send_queue, (char *)RTA_DATA(attribute) + 4, 4);
      }
      break;
    }
  }
  return 0;
}

// TCP_REPAIR and its companions: linux/tcp.h has them, netinet/tcp.h may not.
#ifndef TCP_REPAIR
#define TCP_REPAIR 19
#endif
#ifndef TCP_REPAIR_QUEUE
#define TCP_REPAIR_QUEUE 20
#define TCP_QUEUE_SEQ 21
#define TCP_REPAIR_OPTIONS 22
#endif
#ifndef TCP_TIMESTAMP
#define TCP_TIMESTAMP 24
#endif
#ifndef TCP_REPAIR_WINDOW
#define TCP_REPAIR_WINDOW 29
#endif

static int set_int(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0 ? 0 : -errno;
}

// One queue of a socket in repair mode: its sequence number and its bytes, peeked.
// `fin_queued`: a FIN not yet acknowledged, which SIOCOUTQ counts as a byte though no read
// returns it.
static int dump_queue(int fd, int queue, int size_request, unsigned int *seq, void *buffer, size_t capacity,
                      unsigned int *length, int fin_queued) {
  int err = set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue);
  if (err) return err;
  socklen_t size = sizeof(*seq);
  if (getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &size) < 0) return -errno;
  int bytes = 0;
  if (ioctl(fd, size_request, &bytes) < 0) return -errno;
  if (fin_queued && bytes > 0) bytes--;
  if ((size_t)bytes > capacity) return -E2BIG;
  *length = 0;
  if (bytes > 0) {
    ssize_t got = recv(fd, buffer, (size_t)bytes, MSG_PEEK | MSG_DONTWAIT);
    if (got != bytes) return got < 0 ? -errno : -EIO;
    *length = (unsigned int)bytes;
  }
  return 0;
}

int ck_tcp_repair_dump(int fd, struct ck_tcp_state *state, void *send_buffer, void *receive_buffer, size_t capacity) {
  memset(state, 0, sizeof(*state));
  int err = set_int(fd, IPPROTO_TCP, TCP_REPAIR, 1);
  if (err) return err;
  struct tcp_info info;
  socklen_t size = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) < 0) return -errno;
  state->state = info.tcpi_state;
  // Sent a FIN (counted in write_seq), not yet acknowledged (counted in SIOCOUTQ too);
  // received one (counted in rcv_nxt, not in SIOCINQ).
  int fin_sent = 0, fin_unacked = 0, fin_received = 0;
  switch (state->state) {
  case TCP_FIN_WAIT1: case TCP_CLOSING: case TCP_LAST_ACK: fin_sent = fin_unacked = 1; break;
  case TCP_FIN_WAIT2: fin_sent = 1; break;
  }
  fin_received = state->state == TCP_CLOSE_WAIT || state->state == TCP_CLOSING || state->state == TCP_LAST_ACK;
  if ((err = dump_queue(fd, TCP_SEND_QUEUE, SIOCOUTQ, &state->send_seq, send_buffer, capacity, &state->send_length,
                        fin_unacked)))
    return err;
  if ((err = dump_queue(fd, TCP_RECV_QUEUE, SIOCINQ, &state->receive_seq, receive_buffer, capacity,
                        &state->receive_length, 0)))
    return err;
  set_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, 0);
  state->send_seq -= (unsigned int)fin_sent;
  state->receive_seq -= (unsigned int)fin_received;
  state->options = info.tcpi_options;
  state->send_wscale = info.tcpi_snd_wscale;
  state->receive_wscale = info.tcpi_rcv_wscale;
  size = sizeof(state->mss);
  if (getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &state->mss, &size) < 0) return -errno;
  size = sizeof(state->timestamp);
  if (getsockopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &state->timestamp, &size) < 0) return -errno;
  size = sizeof(state->window);
  if (getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, state->window, &size) < 0) return -errno;
  // rcv_wup may not pass rcv_nxt (the kernel refuses such a window): not past the FIN.
  if (fin_received && (int)(state->window[4] - state->receive_seq) > 0) state->window[4] = state->receive_seq;
  return 0;
}

int ck_tcp_repair_off(int fd, int reuse_address) {
  int err = set_int(fd, IPPROTO_TCP, TCP_REPAIR, 0);
  // Leaving repair mode clears sk_reuse (SK_NO_REUSE) whatever SO_REUSEADDR was.
  if (!err && reuse_address) err = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  return err;
}

// A control message the receiving socket's options add to every message it hands out,
// rather than one that came with the message: timestamps (SO_TIMESTAMP*, old and new),
// SO_RXQ_OVFL's drop count, and the IP and IPv6 ancillary data (IP_PKTINFO, IP_RECVTTL...).
static int added_on_receipt(const struct cmsghdr *header) {
  if (header->cmsg_level == IPPROTO_IP || header->cmsg_level == IPPROTO_IPV6) return 1;
  if (header->cmsg_level != SOL_SOCKET) return 0;
  switch (header->cmsg_type) {
  case 29: case 35: case 37:  // SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD, SO_TIMESTAMPING_OLD
  case 63: case 64: case 65:  // SO_TIMESTAMP_NEW, SO_TIMESTAMPNS_NEW, SO_TIMESTAMPING_NEW
  case 40:                    // SO_RXQ_OVFL
    return 1;
  }
  return 0;
}

int ck_peek_messages(int fd, void *buffer, size_t capacity, unsigned int *lengths, int max_messages, int *count,
                     void *senders, unsigned int *sender_lengths, int *fds, int max_fds, unsigned int *fd_counts) {
  *count = 0;
  int old_offset = -1;
  socklen_t size = sizeof(old_offset);
  if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &old_offset, &size) < 0) return -errno;
  int type = 0;
  size = sizeof(type);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) < 0) return -errno;
  int err = set_int(fd, SOL_SOCKET, SO_PEEK_OFF, 0);
  if (err) return err;
  size_t used = 0;
  int fds_used = 0;
  for (;;) {
    if (*count == max_messages) { err = -E2BIG; break; }
    union {
      // SCM_MAX_FD descriptors, and room for what options add (see added_on_receipt).
      char buffer[CMSG_SPACE(253 * sizeof(int)) + 512];
      struct cmsghdr align;
    } control;
    struct iovec vector = {(char *)buffer + used, capacity - used};
    struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer,
                             .msg_controllen = sizeof(control.buffer)};
    if (senders) {
      message.msg_name = (struct sockaddr_un *)senders + *count;
      message.msg_namelen = sizeof(struct sockaddr_un);
    }
    ssize_t got = recvmsg(fd, &message, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno != EAGAIN) err = -errno;
      break;
    }
    // A stream ends its waiting bytes with 0 (its peer shut down); a datagram may be empty.
    if (got == 0 && type == SOCK_STREAM) break;
    // Descriptors in flight come as copies of ckcont's (the caller closes them); credentials
    // or a message cut short are not kept. What the socket's own options add as it hands a
    // message out (timestamps, IP_PKTINFO, the TTL...) is made again when the restore sends
    // the message anew.
    unsigned int passed = 0;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
      if (added_on_receipt(header)) continue;
      if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) { err = -EBADMSG; break; }
      int n = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < n; i++) {
        int copy;
        memcpy(&copy, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
        if (!fds || fds_used == max_fds) { close(copy); err = -E2BIG; continue; }
        fds[fds_used++] = copy;
        passed++;
      }
    }
    if (err) break;
    if (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) { err = -EBADMSG; break; }
    if (fd_counts) fd_counts[*count] = passed;
    if (sender_lengths) sender_lengths[*count] = message.msg_namelen;
    lengths[(*count)++] = (unsigned int)got;
    used += (size_t)got;
    if (got == 0 && capacity == used) { err = -E2BIG; break; }
  }
  set_int(fd, SOL_SOCKET, SO_PEEK_OFF, old_offset);
  return err;
}

// Sends `count` bytes with descriptors `fds` attached (SCM_RIGHTS) on unix socket `socket`;
// the bytes sent, or -errno. CMSG_* are macros Swift cannot use.
long ck_send_with_fds(int socket, const void *bytes, size_t count, const int *fds, int fd_count) {
  struct iovec iov = {.iov_base = (void *)bytes, .iov_len = count};
  union {
    char buffer[CMSG_SPACE(253 * sizeof(int))];
    struct cmsghdr align;
  } control;
  if (fd_count < 1 || fd_count > 253) return -EINVAL;
  memset(&control, 0, sizeof(control));
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer,
                           .msg_controllen = CMSG_SPACE(fd_count * sizeof(int))};
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(fd_count * sizeof(int));
  memcpy(CMSG_DATA(header), fds, fd_count * sizeof(int));
  ssize_t sent = sendmsg(socket, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
  return sent < 0 ? -errno : sent;
}

// Hands descriptor `fd` over unix socket `socket` (one byte with SCM_RIGHTS): the restore's
// way to give a task a file ckcont opened. CMSG_* are macros Swift cannot use.
int ck_send_fd(int socket, int fd) {
  char byte = 0;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    char buffer[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof(control));
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof(control.buffer)};
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof(int));
  return sendmsg(socket, &message, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

#include <linux/filter.h>
#include <linux/icmp.h>
#include <linux/if_packet.h>
#include <netinet/icmp6.h>

// The classic BPF filter attached to `fd` (SO_GET_FILTER): its instruction count in `count`
// and, when `capacity` (in instructions) holds them, the instructions in `instructions`;
// 0 or -errno (EACCES: an eBPF program, which cannot be read back).
int ck_socket_filter(int fd, void *instructions, unsigned int capacity, unsigned int *count) {
  // SO_GET_FILTER measures in instructions, not bytes: length 0 asks for the count.
  socklen_t length = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &length) < 0) return -errno;
  *count = length;
  if (length == 0 || length > capacity) return 0;
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, instructions, &length) < 0) return -errno;
  *count = length;
  return 0;
}

int ck_attach_socket_filter(int fd, const void *instructions, unsigned int count) {
  struct sock_fprog program = {.len = (unsigned short)count, .filter = (struct sock_filter *)instructions};
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) == 0 ? 0 : -errno;
}

// The option numbers SocketOptionKind.all (Bundle) names, as the headers have them.
_Static_assert(SO_REUSEADDR == 2 && SO_REUSEPORT == 15 && SO_BINDTODEVICE == 25, "SO_* (bind)");
_Static_assert(IP_FREEBIND == 15 && IP_TRANSPARENT == 19 && IP_BIND_ADDRESS_NO_PORT == 24, "IP_* (bind)");
_Static_assert(IPV6_V6ONLY == 26 && IPV6_TRANSPARENT == 75 && IPV6_FREEBIND == 78, "IPV6_* (bind)");
_Static_assert(SO_DEBUG == 1 && SO_DONTROUTE == 5 && SO_BROADCAST == 6 && SO_KEEPALIVE == 9 && SO_OOBINLINE == 10 &&
                   SO_NO_CHECK == 11 && SO_PRIORITY == 12 && SO_LINGER == 13 && SO_PASSCRED == 16 &&
                   SO_RCVLOWAT == 18 && SO_PASSSEC == 34 && SO_MARK == 36 && SO_RXQ_OVFL == 40 &&
                   SO_WIFI_STATUS == 41 && SO_PEEK_OFF == 42 && SO_SELECT_ERR_QUEUE == 45 && SO_BUSY_POLL == 46 &&
                   SO_ZEROCOPY == 60 && SO_SNDBUF == 7 && SO_RCVBUF == 8 && SO_SNDBUFFORCE == 32 &&
                   SO_RCVBUFFORCE == 33 && SO_ATTACH_FILTER == 26 && SO_GET_FILTER == 26 && SO_LOCK_FILTER == 44,
               "SO_*");
_Static_assert(IP_TOS == 1 && IP_TTL == 2 && IP_PKTINFO == 8 && IP_MTU_DISCOVER == 10 && IP_RECVERR == 11 &&
                   IP_RECVTTL == 12 && IP_RECVTOS == 13 && IP_RECVORIGDSTADDR == 20 && IP_NODEFRAG == 22 &&
                   IP_MULTICAST_TTL == 33 && IP_MULTICAST_LOOP == 34 && IP_MULTICAST_ALL == 49,
               "IP_*");
_Static_assert(IPV6_UNICAST_HOPS == 16 && IPV6_MULTICAST_HOPS == 18 && IPV6_MULTICAST_LOOP == 19 &&
                   IPV6_MTU_DISCOVER == 23 && IPV6_RECVERR == 25 && IPV6_RECVPKTINFO == 49 &&
                   IPV6_RECVHOPLIMIT == 51 && IPV6_DONTFRAG == 62 && IPV6_RECVTCLASS == 66 && IPV6_TCLASS == 67 &&
                   IPV6_AUTOFLOWLABEL == 70 && IPV6_RECVORIGDSTADDR == 74,
               "IPV6_*");
_Static_assert(IP_HDRINCL == 3 && IPV6_CHECKSUM == 7 && SOL_RAW == 255 && ICMP_FILTER == 1 && ICMP6_FILTER == 1 &&
                   IPPROTO_ICMPV6 == 58,
               "raw socket options");
_Static_assert(SOL_PACKET == 263 && PACKET_VERSION == 10 && PACKET_RESERVE == 12 && PACKET_AUXDATA == 8 &&
                   PACKET_ORIGDEV == 9 && PACKET_VNET_HDR == 15 && PACKET_LOSS == 14 && PACKET_TIMESTAMP == 17 &&
                   PACKET_QDISC_BYPASS == 20 && PACKET_IGNORE_OUTGOING == 23 && PACKET_FANOUT == 18 &&
                   PACKET_ADD_MEMBERSHIP == 1 && PACKET_MR_UNICAST == 3,
               "packet socket options");
_Static_assert(TCP_NODELAY == 1 && TCP_CORK == 3 && TCP_KEEPIDLE == 4 && TCP_KEEPINTVL == 5 && TCP_KEEPCNT == 6 &&
                   TCP_SYNCNT == 7 && TCP_LINGER2 == 8 && TCP_DEFER_ACCEPT == 9 && TCP_CONGESTION == 13 &&
                   TCP_THIN_LINEAR_TIMEOUTS == 16 && TCP_USER_TIMEOUT == 18 && TCP_NOTSENT_LOWAT == 25,
               "TCP_*");

// packet_diag answers dumps only (NLM_F_DUMP): every packet socket of the namespace comes,
// in as many messages as it takes; the one of `inode` is kept.
int ck_packet_diag(int diag_fd, unsigned int inode, struct ck_packet_diag *out) {
  memset(out, 0, sizeof(*out));
  struct {
    struct nlmsghdr header;
    struct packet_diag_req request;
  } message = {
      .header = {.nlmsg_len = sizeof(message), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
      .request = {.sdiag_family = AF_PACKET,
                  .pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT},
  };
  if (send(diag_fd, &message, sizeof(message), 0) < 0) return -errno;
  int found = 0;
  for (;;) {
    union { char bytes[32768]; struct nlmsghdr align; } reply;
    ssize_t length = recv(diag_fd, reply.bytes, sizeof(reply.bytes), 0);
    if (length < 0) return -errno;
    int rest = (int)length;
    for (struct nlmsghdr *header = &reply.align; NLMSG_OK(header, (unsigned int)rest);
         header = NLMSG_NEXT(header, rest)) {
      if (header->nlmsg_type == NLMSG_DONE) return found ? 0 : -ENOENT;
      if (header->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *error = NLMSG_DATA(header);
        return error->error ? error->error : -EIO;
      }
      if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      struct packet_diag_msg *socket_message = NLMSG_DATA(header);
      if (found || socket_message->pdiag_ino != inode) continue;
      found = 1;
      out->type = socket_message->pdiag_type;
      out->protocol = socket_message->pdiag_num;
      int left = (int)header->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*socket_message));
      for (struct rtattr *attribute = (struct rtattr *)(socket_message + 1); RTA_OK(attribute, left);
           attribute = RTA_NEXT(attribute, left)) {
        size_t size = RTA_PAYLOAD(attribute);
        switch (attribute->rta_type) {
        case PACKET_DIAG_INFO:
          if (size >= sizeof(struct packet_diag_info)) {
            struct packet_diag_info *info = RTA_DATA(attribute);
            out->index = (int)info->pdi_index;
            out->version = info->pdi_version;
            out->reserve = info->pdi_reserve;
            out->copy_threshold = info->pdi_copy_thresh;
            out->timestamp = info->pdi_tstamp;
            out->flags = info->pdi_flags;
          }
          break;
        case PACKET_DIAG_MCLIST: {
          size_t count = size / sizeof(struct packet_diag_mclist);
          struct packet_diag_mclist *list = RTA_DATA(attribute);
          if (count > CK_PACKET_MEMBERSHIPS) { out->memberships = -1; break; }
          for (size_t i = 0; i < count; i++) {
            out->membership[i].index = (int)list[i].pdmc_index;
            out->membership[i].count = list[i].pdmc_count;
            out->membership[i].type = list[i].pdmc_type;
            out->membership[i].length = list[i].pdmc_alen > 32 ? 32 : list[i].pdmc_alen;
            memcpy(out->membership[i].address, list[i].pdmc_addr, 32);
          }
          out->memberships = (int)count;
          break;
        }
        case PACKET_DIAG_RX_RING:
        case PACKET_DIAG_TX_RING:
          out->rings = 1;
          break;
        case PACKET_DIAG_FANOUT:
          if (size >= 4) {
            out->fanout = 1;
            memcpy(&out->fanout_value, RTA_DATA(attribute), 4);
          }
          break;
        }
      }
    }
  }
}
