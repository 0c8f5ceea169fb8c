/* sockets: internet sockets without a connection come back bound, listening and with their
 * options, and serve new connections.
 *
 *   sockets [netns]
 *   sockets unix [DIR]
 *   sockets tcp-connection
 *   sockets unix-outside PATH
 *   sockets unix-dgram [DIR]
 *   sockets scm [DIR]
 *   sockets udp-waiting
 *   sockets udplite
 *   sockets options
 *   sockets icmp
 *   sockets unix-unlinked [DIR]
 *   sockets reuseport
 *   sockets unix-pending [DIR]
 *   sockets unix-peercred [DIR]
 *   sockets tcp-closing
 *   sockets tcp-outside PORT
 *   sockets tcp-pending
 *   sockets raw
 *   sockets packet
 *
 * Before "ready": a TCP listener on 127.0.0.1 (ephemeral port, SO_REUSEADDR, O_NONBLOCK,
 * backlog 7), a TCP listener on [::1] with IPV6_V6ONLY and TCP_NODELAY, a UDP socket bound
 * to 127.0.0.1 and "connected" to a second one, and a TCP socket never bound. With `netns`
 * the fixture first moves into a network namespace of its own, sets loopback up and sets two
 * of the namespace's settings (net.core.somaxconn 321, net.ipv4.ip_local_port_range
 * "41000 41999"), so the restore has to make one (with loopback up and those settings) too.
 * And a NETLINK_ROUTE socket bound to the link group (RTMGRP_LINK).
 * After SIGTERM: every address, option and flag reads as before, each listener accepts a new
 * connection made to its port and echoes over it, and the UDP pair exchanges a datagram; the
 * netlink socket has its groups (and, in its own network namespace, its port id) and answers
 * a request for the links with loopback among them.
 *
 * `unix`: a stream socketpair with bytes waiting in both ends, a datagram socketpair with two
 * messages waiting in one end and one in the other, a seqpacket pair with one waiting, a
 * listener bound to DIR/ckcont-sockets-<pid>.sock (backlog 5) with one accepted connection
 * whose server end has bytes waiting, and a listener with an abstract name with one accepted
 * connection. After SIGTERM the waiting bytes read back exactly, every pair still carries data
 * both ways, each accepted end has its listener's name and its client sees that name as its
 * peer's, and both listeners accept new clients by their names.
 *
 * `tcp-connection`: a TCP listener on 127.0.0.1 with SO_REUSEADDR and an established
 * connection to it, with bytes already exchanged and read, and bytes waiting unread at both
 * ends. After SIGTERM the waiting bytes read back exactly, the server's end still has the
 * SO_REUSEADDR it inherited (repair mode clears it) and the client's none, the connection
 * carries data both ways, and the listener accepts a new client. `tcp-connection big`: the server has also sent as much of a 4 MiB
 * pattern as the connection takes without blocking (well beyond 8 KiB, in the server's send
 * queue and the client's receive queue), which the client reads back whole after SIGTERM.
 *
 * `unix-outside`: a stream connection to the listener at PATH, which the caller runs outside
 * the container and through which it sends "from outside" before "ready". That client is
 * cut off when the container is killed: after SIGTERM the waiting bytes read back, then the
 * connection reads EOF and a write fails with EPIPE.
 *
 * `options`: socket options a program sets, on a TCP listener, a connected TCP client, the
 * end its listener accepted, a UDP socket on IPv4 with a classic BPF filter that drops
 * everything (attached and locked after a datagram arrived), a UDP socket on IPv6 with a
 * datagram waiting (its IPV6_RECVPKTINFO and SO_TIMESTAMPNS add control data to it), and a
 * unix socketpair with bytes waiting past an SO_PEEK_OFF: integer options of every level,
 * SO_LINGER, SO_RCVTIMEO/SO_SNDTIMEO, SO_BINDTODEVICE, TCP_CONGESTION, locked buffer sizes.
 * After SIGTERM each reads as set, the filter is there, locked, the datagram that came before
 * it still reads and a new one is dropped, the IPv6 datagram reads with its control data, and
 * a peek starts at the offset.
 *
 * `icmp`: ping sockets (SOCK_DGRAM, IPPROTO_ICMP and IPPROTO_ICMPV6, allowed by the
 * namespace's net.ipv4.ping_group_range, which the fixture opens): one bound to 127.0.0.1
 * with identifier 4242 and IP_TTL 17 that has had an echo answered, one on ::1 never used.
 * After SIGTERM the first keeps its identifier and TTL and gets an answer to a new echo
 * request; the IPv6 one gets an answer too.
 *
 * `unix-unlinked`: a listener whose socket file in DIR was unlinked and another listener
 * then bound to the same path (a server restarted while the old one still runs), a listener
 * whose file was unlinked, and a datagram socket whose file was unlinked. After SIGTERM each
 * still has its name; the path of the first two is the second listener's (a client reaches
 * it, not the old one); the other two paths are gone.
 *
 * `reuseport`: this process and a child it forked each hold a TCP listener bound to the same
 * port of 127.0.0.1 with SO_REUSEPORT (a prefork server), and a UDP socket bound to one port
 * with SO_REUSEADDR. After SIGTERM both listeners still listen on the port and take
 * connections, and both UDP sockets are bound to theirs.
 *
 * `raw`: raw sockets, in a network namespace of the fixture's own (loopback up; a raw ICMP
 * socket sees every ICMP packet of its namespace): an IPv4 ICMP one with ICMP_FILTER passing
 * echo replies only, IP_TTL 33 and connected to 127.0.0.1 (its echo request is sent with
 * send(2), which needs the connection: getpeername refuses raw sockets); one of protocol 253 with
 * IP_HDRINCL bound to 127.0.0.1; an ICMPv6 one whose ICMP6_FILTER passes echo replies only;
 * one of protocol 253 over IPv6 with IPV6_CHECKSUM at offset 2. After SIGTERM each has its
 * protocol, options, address and peer, and both ICMP ones get the reply to an echo request
 * they send (their filters hold: only the replies come).
 *
 * `packet`: packet sockets, in a network namespace of the fixture's own: a raw one for
 * every ethertype bound to lo with PACKET_AUXDATA, PACKET_VERSION TPACKET_V2 and
 * PACKET_IGNORE_OUTGOING, lo put in promiscuous mode through it and a multicast address
 * added (memberships); a datagram one for IPv4 in fanout group 77 (hash). After SIGTERM each
 * has its type, ethertype, options, link and group, and both see a UDP datagram sent to
 * 127.0.0.1.
 */
#include "fix.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <linux/icmp.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <netinet/icmp6.h>

static int option(int fd, int level, int name) {
  int value = -1;
  socklen_t length = sizeof value;
  if (getsockopt(fd, level, name, &value, &length) < 0) return -1;
  return value;
}

static int port_of(int fd) {
  struct sockaddr_storage address;
  socklen_t length = sizeof address;
  if (getsockname(fd, (struct sockaddr *)&address, &length) < 0) return -1;
  if (address.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&address)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
}

/* Connects a new client to the listener's port, accepts it (waiting: the listener may be
 * non-blocking), and sends a line each way. */
static void serve_once(int listener, int family, const char *what) {
  struct sockaddr_storage address;
  socklen_t length = sizeof address;
  FX_SYS(getsockname(listener, (struct sockaddr *)&address, &length));
  int client = FX_SYS(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(client, (struct sockaddr *)&address, length) < 0) {
    fx_bad("%s: connect to port %d: %s", what, port_of(listener), strerror(errno));
    close(client);
    return;
  }
  int server = -1;
  for (int i = 0; i < 200 && server < 0; i++) {
    server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (server < 0 && errno != EAGAIN) break;
    if (server < 0) usleep(5000);
  }
  FX_TRUE(server >= 0, "%s: accept: %s", what, strerror(errno));
  if (server >= 0) {
    char line[16] = "";
    FX_SYS(write(client, "ping", 4));
    ssize_t n = read(server, line, sizeof line - 1);
    FX_TRUE(n == 4 && !memcmp(line, "ping", 4), "%s: the server read %zd bytes", what, n);
    FX_SYS(write(server, "pong", 4));
    n = read(client, line, sizeof line - 1);
    FX_TRUE(n == 4 && !memcmp(line, "pong", 4), "%s: the client read %zd bytes", what, n);
    close(server);
  }
  close(client);
}

static void expect_read(int fd, const char *want, const char *what) {
  char got[64] = "";
  size_t length = strlen(want);
  ssize_t n = recv(fd, got, sizeof got - 1, MSG_DONTWAIT);
  if (fx_flip()) got[0] ^= 1;
  FX_TRUE(n == (ssize_t)length && !memcmp(got, want, length), "%s: read %zd bytes \"%.*s\", expected \"%s\"", what,
          n, n > 0 ? (int)n : 0, got, want);
}

static void exchange(int a, int b, const char *what) {
  FX_TRUE(send(a, "abc", 3, MSG_DONTWAIT) == 3, "%s: send: %s", what, strerror(errno));
  expect_read(b, "abc", what);
  FX_TRUE(send(b, "xyz", 3, MSG_DONTWAIT) == 3, "%s: send back: %s", what, strerror(errno));
  expect_read(a, "xyz", what);
}

/* A new client of the listener bound to `address`, accepted and exchanging data. */
static void connect_unix(int listener, const struct sockaddr_un *address, socklen_t length, const char *what) {
  int client = FX_SYS(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (connect(client, (const struct sockaddr *)address, length) < 0) {
    fx_bad("%s: connect: %s", what, strerror(errno));
    close(client);
    return;
  }
  int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  FX_TRUE(server >= 0, "%s: accept: %s", what, strerror(errno));
  if (server >= 0) {
    exchange(client, server, what);
    close(server);
  }
  close(client);
}

/* What getsockname/getpeername say of `fd`: `want` of `size` bytes (the family alone when
 * NULL: unnamed). */
static void expect_name(int (*get)(int, struct sockaddr *, socklen_t *), int fd, const struct sockaddr_un *want,
                        socklen_t size, const char *what) {
  struct sockaddr_un got = {0};
  socklen_t length = sizeof got;
  if (get(fd, (struct sockaddr *)&got, &length) < 0) { fx_bad("%s: %s", what, strerror(errno)); return; }
  socklen_t want_length = want ? size : (socklen_t)sizeof(sa_family_t);
  if (want && size == sizeof *want) want_length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(want->sun_path) + 1);
  FX_TRUE(length == want_length && (!want || !memcmp(&got, want, length)), "%s: %u bytes \"%s%s\"", what,
          (unsigned)length, got.sun_path[0] ? "" : "@", got.sun_path[0] ? got.sun_path : got.sun_path + 1);
}

static int unix_mode(const char *dir) {
  int stream[2], datagram[2];
  FX_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, stream));
  FX_SYS(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, datagram));
  FX_SYS(send(stream[1], "to-zero", 7, 0));
  FX_SYS(send(stream[0], "to-one!!", 8, 0));
  FX_SYS(send(datagram[1], "first", 5, 0));
  FX_SYS(send(datagram[1], "second!", 7, 0));
  FX_SYS(send(datagram[0], "back", 4, 0));
  int records[2];
  FX_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, records));
  FX_SYS(send(records[0], "record", 6, 0));

  struct sockaddr_un named = {.sun_family = AF_UNIX};
  snprintf(named.sun_path, sizeof named.sun_path, "%s/ckcont-sockets-%d.sock", dir, (int)getpid());
  unlink(named.sun_path);
  int listener = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(bind(listener, (struct sockaddr *)&named, sizeof named));
  FX_SYS(listen(listener, 5));
  int client = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(connect(client, (struct sockaddr *)&named, sizeof named));
  int server = FX_SYS(accept(listener, NULL, NULL));
  FX_SYS(send(client, "hello-server", 12, 0));

  struct sockaddr_un abstract = {.sun_family = AF_UNIX};
  int abstract_length = snprintf(abstract.sun_path + 1, sizeof abstract.sun_path - 1, "ckcont-sockets-%d", (int)getpid());
  socklen_t abstract_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + abstract_length);
  int hidden = FX_SYS(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0));
  FX_SYS(bind(hidden, (struct sockaddr *)&abstract, abstract_size));
  FX_SYS(listen(hidden, 3));
  int hidden_client = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(connect(hidden_client, (struct sockaddr *)&abstract, abstract_size));
  int hidden_server = FX_SYS(accept(hidden, NULL, NULL));
  fx_ready();
  fx_wait_term();

  expect_read(stream[0], "to-zero", "stream pair end 0");
  expect_read(stream[1], "to-one!!", "stream pair end 1");
  exchange(stream[0], stream[1], "stream pair");
  expect_read(datagram[0], "first", "first waiting datagram");
  expect_read(datagram[0], "second!", "second waiting datagram");
  expect_read(datagram[1], "back", "datagram waiting at the other end");
  exchange(datagram[0], datagram[1], "datagram pair");
  expect_read(records[1], "record", "waiting seqpacket record");
  exchange(records[0], records[1], "seqpacket pair");
  FX_EQ("SO_TYPE of the datagram pair", SOCK_DGRAM, option(datagram[0], SOL_SOCKET, SO_TYPE));
  expect_read(server, "hello-server", "accepted connection");
  exchange(client, server, "accepted connection");
  FX_EQ("SO_ACCEPTCONN of the named listener", 1, option(listener, SOL_SOCKET, SO_ACCEPTCONN));
  FX_EQ("O_NONBLOCK of the abstract listener", O_NONBLOCK, fcntl(hidden, F_GETFL) & O_NONBLOCK);
  struct sockaddr_un now = {0};
  socklen_t now_length = sizeof now;
  FX_SYS(getsockname(listener, (struct sockaddr *)&now, &now_length));
  FX_TRUE(!strcmp(now.sun_path, named.sun_path), "the listener is bound to \"%s\"", now.sun_path);
  /* An accepted end has its listener's name, and its client sees that name as its peer's. */
  expect_name(getsockname, server, &named, sizeof named, "the accepted end's name");
  expect_name(getpeername, client, &named, sizeof named, "the client's peer name");
  expect_name(getsockname, client, NULL, 0, "the client's own name");
  expect_name(getsockname, hidden_server, &abstract, abstract_size, "the abstract accepted end's name");
  expect_name(getpeername, hidden_client, &abstract, abstract_size, "the abstract client's peer name");
  exchange(hidden_client, hidden_server, "abstract accepted connection");
  connect_unix(listener, &named, sizeof named, "named listener");
  int nonblocking = fcntl(hidden, F_GETFL);
  FX_SYS(fcntl(hidden, F_SETFL, nonblocking & ~O_NONBLOCK));
  connect_unix(hidden, &abstract, abstract_size, "abstract listener");
  unlink(named.sun_path);
  fx_finish();
}

/* `unix-pending`: connections waiting to be accepted. A stream listener bound to
 * DIR/ckcont-pending-<pid>.sock (backlog 4) holds two connections not yet accepted, the first
 * from a client of this process, the second from a forked child's; a seqpacket listener with
 * an abstract name holds one from this process. Neither client has sent anything. After
 * SIGTERM the listeners accept them in the order they came (each client names itself first),
 * each client sees the listener's name as its peer's, and every connection carries data both
 * ways (the child's answers and exits 0). */
static void name_self(int client, const char *id, const char *what) {
  FX_TRUE(send(client, id, strlen(id), MSG_DONTWAIT) == (ssize_t)strlen(id), "%s: send: %s", what, strerror(errno));
}

static int unix_pending_mode(const char *dir) {
  struct sockaddr_un named = {.sun_family = AF_UNIX};
  snprintf(named.sun_path, sizeof named.sun_path, "%s/ckcont-pending-%d.sock", dir, (int)getpid());
  unlink(named.sun_path);
  int listener = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(bind(listener, (struct sockaddr *)&named, sizeof named));
  FX_SYS(listen(listener, 4));
  int first = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(connect(first, (struct sockaddr *)&named, sizeof named));
  int sync[2];
  FX_SYS(pipe(sync));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    close(sync[0]);
    int second = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
    FX_SYS(connect(second, (struct sockaddr *)&named, sizeof named));
    FX_SYS(write(sync[1], "c", 1));
    /* The server speaks first once it has accepted this connection, after the restore. */
    char got[8] = "";
    ssize_t n = recv(second, got, 2, MSG_WAITALL);
    if (n != 2 || memcmp(got, "hi", 2)) _exit(3);
    struct sockaddr_un peer = {0};
    socklen_t length = sizeof peer;
    if (getpeername(second, (struct sockaddr *)&peer, &length) < 0 || strcmp(peer.sun_path, named.sun_path)) _exit(4);
    if (send(second, "2!", 2, 0) != 2) _exit(5);
    _exit(0);
  }
  close(sync[1]);
  char byte;
  if (read(sync[0], &byte, 1) != 1) fx_setup_fail("the child did not connect");
  close(sync[0]);

  struct sockaddr_un abstract = {.sun_family = AF_UNIX};
  int abstract_length = snprintf(abstract.sun_path + 1, sizeof abstract.sun_path - 1, "ckcont-pending-%d", (int)getpid());
  socklen_t abstract_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + abstract_length);
  int records = FX_SYS(socket(AF_UNIX, SOCK_SEQPACKET, 0));
  FX_SYS(bind(records, (struct sockaddr *)&abstract, abstract_size));
  FX_SYS(listen(records, 2));
  int record_client = FX_SYS(socket(AF_UNIX, SOCK_SEQPACKET, 0));
  FX_SYS(connect(record_client, (struct sockaddr *)&abstract, abstract_size));
  fx_ready();
  fx_wait_term();

  expect_name(getpeername, first, &named, sizeof named, "the first client's peer name");
  expect_name(getpeername, record_client, &abstract, abstract_size, "the seqpacket client's peer name");
  name_self(first, "1!", "the first client");
  int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  FX_TRUE(accepted >= 0, "the first waiting connection: accept: %s", strerror(errno));
  if (accepted >= 0) {
    expect_read(accepted, "1!", "the first connection accepted");
    exchange(first, accepted, "the first connection");
    close(accepted);
  }
  accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  FX_TRUE(accepted >= 0, "the child's waiting connection: accept: %s", strerror(errno));
  if (accepted >= 0) {
    FX_TRUE(send(accepted, "hi", 2, 0) == 2, "the child's connection: send: %s", strerror(errno));
    char got[8] = "";
    FX_TRUE(recv(accepted, got, 2, MSG_WAITALL) == 2 && !memcmp(got, "2!", 2), "the child answered \"%s\"", got);
    close(accepted);
  }
  int status = 0;
  FX_TRUE(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child's client failed its checks (status %#x)", status);
  struct pollfd third = {.fd = listener, .events = POLLIN};
  FX_EQ("connections still waiting after both were accepted", 0, poll(&third, 1, 0));
  name_self(record_client, "r", "the seqpacket client");
  accepted = accept4(records, NULL, NULL, SOCK_CLOEXEC);
  FX_TRUE(accepted >= 0, "the waiting seqpacket connection: accept: %s", strerror(errno));
  if (accepted >= 0) {
    expect_read(accepted, "r", "the seqpacket connection accepted");
    exchange(record_client, accepted, "the seqpacket connection");
  }
  unlink(named.sun_path);
  fx_finish();
}

/* `big`: what the server sends unread, as much as the connection takes without blocking. */
#define BIG_SIZE (4 << 20)
static unsigned char big_block[BIG_SIZE];

static int tcp_connection_mode(int big) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int one = 1;
  FX_SYS(setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  FX_SYS(bind(listener, (struct sockaddr *)&local, sizeof local));
  FX_SYS(listen(listener, 4));
  socklen_t length = sizeof local;
  FX_SYS(getsockname(listener, (struct sockaddr *)&local, &length));
  int client = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  FX_SYS(connect(client, (struct sockaddr *)&local, sizeof local));
  int server = FX_SYS(accept(listener, NULL, NULL));
  exchange(client, server, "the connection before");
  FX_SYS(send(client, "hello", 5, 0));
  FX_SYS(send(server, "world!", 6, 0));
  size_t sent = 0;
  if (big) {
    uint64_t seed = fx_seed(41);
    for (size_t i = 0; i < BIG_SIZE; i++) big_block[i] = (unsigned char)fx_rng(&seed);
    for (ssize_t n; sent < BIG_SIZE && (n = send(server, big_block + sent, BIG_SIZE - sent, MSG_DONTWAIT)) > 0;) sent += (size_t)n;
    if (sent <= (64 << 10)) { errno = ENOBUFS; fx_setup_fail("only %zu bytes went into the connection", sent); }
  }
  usleep(50000); /* on loopback the bytes arrive at once; let them settle in the queues */
  fx_ready();
  fx_wait_term();
  FX_EQ("SO_REUSEADDR of the server's end", 1, option(server, SOL_SOCKET, SO_REUSEADDR));
  FX_EQ("SO_REUSEADDR of the client's end", 0, option(client, SOL_SOCKET, SO_REUSEADDR));
  expect_read(server, "hello", "bytes waiting at the server");
  if (big) {
    char word[8] = "";
    FX_EQ("bytes of the word before the block", 6, recv(client, word, 6, MSG_WAITALL));
    FX_TRUE(!memcmp(word, "world!", 6), "the client read \"%.6s\" before the block", word);
    static unsigned char got[BIG_SIZE];
    size_t have = 0;
    for (ssize_t n; have < sent && (n = recv(client, got + have, sent - have, 0)) > 0;) have += (size_t)n;
    FX_EQ("bytes of the block that arrived", sent, have);
    if (fx_flip()) got[have / 2] ^= 1;
    FX_TRUE(!memcmp(got, big_block, sent), "the block differs");
  } else {
    expect_read(client, "world!", "bytes waiting at the client");
  }
  exchange(client, server, "the connection after");
  serve_once(listener, AF_INET, "the listener");
  fx_finish();
}

static void set_sysctl(const char *path, const char *value) {
  int fd = FX_SYS(open(path, O_WRONLY));
  if (write(fd, value, strlen(value)) != (ssize_t)strlen(value)) fx_setup_fail("write %s", path);
  close(fd);
}

/* The first line of a sysctl file, without its newline. */
static void read_sysctl(const char *path, char *out, size_t size) {
  out[0] = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return;
  ssize_t n = read(fd, out, size - 1);
  close(fd);
  out[n > 0 ? n : 0] = 0;
  out[strcspn(out, "\n")] = 0;
}

static int unix_outside_mode(const char *path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  int fd = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(connect(fd, (struct sockaddr *)&address, sizeof address));
  /* The caller's bytes are there before ready, unread. */
  struct pollfd wait = {.fd = fd, .events = POLLIN};
  if (poll(&wait, 1, 5000) != 1) fx_setup_fail("nothing came from outside");
  fx_ready();
  fx_wait_term();
  expect_read(fd, "from outside", "the connection from outside");
  char byte;
  FX_EQ("read after the peer left", 0, read(fd, &byte, 1));
  FX_TRUE(send(fd, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "a write to the peer that left did not fail with EPIPE");
  fx_finish();
}

/* `unix-dgram`: datagrams waiting in unix datagram sockets no peer is connected to, from
 * senders of every kind: a receiver with an abstract name holds "one" and "two" from a named
 * sender that stays, "three" from an unnamed socket and "four" from a named one, both closed
 * since; a receiver bound to DIR/ckcont-dgram-<pid>.sock holds "five" from the named sender.
 * After SIGTERM each message reads back in order with its sender's name (none for the
 * unnamed one), and the named sender still gets a reply sent to its name. */
static struct sockaddr_un unix_name(const char *name, int abstract, socklen_t *length) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  size_t n = strlen(name);
  memcpy(address.sun_path + (abstract ? 1 : 0), name, n);
  *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 1));
  return address;
}

static int unix_dgram_mode(const char *dir) {
  char name[128];
  socklen_t receiver_length, sender_length, gone_length, path_length;
  snprintf(name, sizeof name, "ckcont-dgram-r-%d", getpid());
  struct sockaddr_un receiver_name = unix_name(name, 1, &receiver_length);
  snprintf(name, sizeof name, "ckcont-dgram-s-%d", getpid());
  struct sockaddr_un sender_name = unix_name(name, 1, &sender_length);
  snprintf(name, sizeof name, "ckcont-dgram-g-%d", getpid());
  struct sockaddr_un gone_name = unix_name(name, 1, &gone_length);
  snprintf(name, sizeof name, "%s/ckcont-dgram-%d.sock", dir, getpid());
  unlink(name);
  struct sockaddr_un path_name = unix_name(name, 0, &path_length);
  int receiver = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0)), by_path = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
  int sender = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0)), unnamed = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
  int gone = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
  FX_SYS(bind(receiver, (struct sockaddr *)&receiver_name, receiver_length));
  FX_SYS(bind(by_path, (struct sockaddr *)&path_name, path_length));
  FX_SYS(bind(sender, (struct sockaddr *)&sender_name, sender_length));
  FX_SYS(bind(gone, (struct sockaddr *)&gone_name, gone_length));
  FX_SYS(sendto(sender, "one", 3, 0, (struct sockaddr *)&receiver_name, receiver_length));
  FX_SYS(sendto(sender, "two", 3, 0, (struct sockaddr *)&receiver_name, receiver_length));
  FX_SYS(sendto(unnamed, "three", 5, 0, (struct sockaddr *)&receiver_name, receiver_length));
  FX_SYS(sendto(gone, "four", 4, 0, (struct sockaddr *)&receiver_name, receiver_length));
  FX_SYS(sendto(sender, "five", 4, 0, (struct sockaddr *)&path_name, path_length));
  close(unnamed);
  close(gone);
  fx_ready();
  fx_wait_term();

  struct { int socket; const char *text; struct sockaddr_un *from; socklen_t from_length; } expected[] = {
    {receiver, "one", &sender_name, sender_length}, {receiver, "two", &sender_name, sender_length},
    {receiver, "three", NULL, 0}, {receiver, "four", &gone_name, gone_length},
    {by_path, "five", &sender_name, sender_length},
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    char text[16] = "";
    struct sockaddr_un from = {0};
    socklen_t from_length = sizeof from;
    ssize_t got = recvfrom(expected[i].socket, text, sizeof text - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &from_length);
    if (fx_flip()) text[0] ^= 1;
    FX_TRUE(got == (ssize_t)strlen(expected[i].text) && !strcmp(text, expected[i].text), "message %zu: expected \"%s\", got %zd bytes \"%s\"", i + 1,
            expected[i].text, got, got > 0 ? text : "");
    int same_sender = from_length == expected[i].from_length &&
                      (!expected[i].from || !memcmp(from.sun_path, expected[i].from->sun_path, from_length - offsetof(struct sockaddr_un, sun_path)));
    FX_TRUE(same_sender, "message %zu (\"%s\") came from a sender of name length %u, expected %u", i + 1, expected[i].text, from_length,
            expected[i].from_length);
  }
  char rest[16];
  FX_TRUE(recv(receiver, rest, sizeof rest, MSG_DONTWAIT) < 0 && errno == EAGAIN, "the receiver holds more messages");
  FX_EQ("a reply to the sender's name", 5, sendto(receiver, "reply", 5, 0, (struct sockaddr *)&sender_name, sender_length));
  char reply[16] = "";
  FX_EQ("the sender's reply", 5, recv(sender, reply, sizeof reply, MSG_DONTWAIT));
  unlink(path_name.sun_path);
  fx_finish();
}

/* `scm`: descriptors in flight (SCM_RIGHTS) that the process also keeps: a stream pair with
 * "hello" waiting and a pipe's read end attached to it, then "world" without; a seqpacket
 * pair with "first" waiting and two attached (a file at offset 2 and the pipe's write end),
 * then "second" without, then "third" with a file the process closed after sending it (open
 * for reading and writing, at offset 3), then "fourth" with the read end of a second pipe,
 * closed after sending (its write end kept, "inpipe" buffered). After SIGTERM each piece
 * arrives with its descriptors: the kept ones (the file's offset is shared, the pipe carries
 * bytes both ways), the file only the message held, at its offset with its flags, and a read
 * end of the second pipe that reads what was buffered and what is written after. */
static ssize_t receive(int socket, char *text, size_t size, int *fds, int *count) {
  union { char buffer[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } control;
  struct iovec vector = {text, size - 1};
  struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control.buffer, .msg_controllen = sizeof control.buffer};
  ssize_t got = recvmsg(socket, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  text[got > 0 ? got : 0] = 0;
  *count = 0;
  for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header))
    if (header->cmsg_type == SCM_RIGHTS)
      for (size_t i = 0; i < (header->cmsg_len - CMSG_LEN(0)) / sizeof(int) && *count < 4; i++)
        memcpy(&fds[(*count)++], CMSG_DATA(header) + i * sizeof(int), sizeof(int));
  return got;
}

static void send_with(int socket, const char *text, const int *fds, int count) {
  union { char buffer[CMSG_SPACE(4 * sizeof(int))]; struct cmsghdr align; } control;
  memset(&control, 0, sizeof control);
  struct iovec vector = {(void *)text, strlen(text)};
  struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1};
  if (count > 0) {
    message.msg_control = control.buffer;
    message.msg_controllen = CMSG_SPACE(count * sizeof(int));
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(count * sizeof(int));
    memcpy(CMSG_DATA(header), fds, count * sizeof(int));
  }
  FX_SYS(sendmsg(socket, &message, 0));
}

static int scm_mode(const char *dir) {
  int stream[2], packets[2], pipe_fds[2];
  FX_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, stream));
  FX_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, packets));
  FX_SYS(pipe(pipe_fds));
  char path[256];
  /* mkstemp: the pid is 1 in every container, and two may run this mode at once. */
  snprintf(path, sizeof path, "%s/ckcont-scm-XXXXXX", dir);
  int file = FX_SYS(mkstemp(path));
  FX_SYS(write(file, "abcdef", 6));
  FX_SYS(lseek(file, 2, SEEK_SET));
  send_with(stream[0], "hello", &pipe_fds[0], 1);
  send_with(stream[0], "world", NULL, 0);
  int two[] = {file, pipe_fds[1]};
  send_with(packets[0], "first", two, 2);
  send_with(packets[0], "second", NULL, 0);
  char only_path[256];
  snprintf(only_path, sizeof only_path, "%s/ckcont-scm-only-XXXXXX", dir);
  int only = FX_SYS(mkstemp(only_path));
  FX_SYS(write(only, "0123456789", 10));
  FX_SYS(lseek(only, 3, SEEK_SET));
  send_with(packets[0], "third", &only, 1);
  close(only);
  int second_pipe[2];
  FX_SYS(pipe(second_pipe));
  FX_SYS(write(second_pipe[1], "inpipe", 6));
  send_with(packets[0], "fourth", &second_pipe[0], 1);
  close(second_pipe[0]);
  fx_ready();
  fx_wait_term();

  char text[64];
  int fds[4], count = 0;
  ssize_t got = receive(stream[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 5 && !strcmp(text, "hello") && count == 1, "stream: got %zd bytes \"%s\" with %d descriptors", got, text, count);
  if (count == 1) {
    FX_SYS(write(pipe_fds[1], "p", 1));
    char byte = 0;
    if (fx_flip()) FX_SYS(write(pipe_fds[1], "q", 1)), FX_SYS(read(pipe_fds[0], &byte, 1));
    FX_TRUE(read(fds[0], &byte, 1) == 1 && byte == 'p', "the pipe's read end that came with \"hello\" does not read the pipe");
  }
  got = receive(stream[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 5 && !strcmp(text, "world") && count == 0, "stream: then %zd bytes \"%s\" with %d descriptors", got, text, count);
  got = receive(packets[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 5 && !strcmp(text, "first") && count == 2, "seqpacket: got %zd bytes \"%s\" with %d descriptors", got, text, count);
  if (count == 2) {
    FX_EQ("the offset of the file that came with \"first\"", 2, lseek(fds[0], 0, SEEK_CUR));
    char two_bytes[3] = "";
    FX_TRUE(read(fds[0], two_bytes, 2) == 2 && !strcmp(two_bytes, "cd"), "the file that came with \"first\" reads \"%s\"", two_bytes);
    FX_EQ("the kept file's offset, moved through the one that came", 4, lseek(file, 0, SEEK_CUR));
    FX_SYS(write(fds[1], "w", 1));
    char byte = 0;
    FX_TRUE(read(pipe_fds[0], &byte, 1) == 1 && byte == 'w', "the pipe's write end that came with \"first\" does not write the pipe");
  }
  got = receive(packets[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 6 && !strcmp(text, "second") && count == 0, "seqpacket: then %zd bytes \"%s\" with %d descriptors", got, text, count);
  got = receive(packets[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 5 && !strcmp(text, "third") && count == 1, "seqpacket: last %zd bytes \"%s\" with %d descriptors", got, text, count);
  if (count == 1) {
    FX_EQ("the offset of the file only \"third\" held", 3, lseek(fds[0], 0, SEEK_CUR));
    FX_EQ("its access mode", O_RDWR, fcntl(fds[0], F_GETFL) & O_ACCMODE);
    char two_bytes[3] = "";
    FX_TRUE(read(fds[0], two_bytes, 2) == 2 && !strcmp(two_bytes, "34"), "the file only \"third\" held reads \"%s\"", two_bytes);
  }
  got = receive(packets[1], text, sizeof text, fds, &count);
  FX_TRUE(got == 6 && !strcmp(text, "fourth") && count == 1, "seqpacket: then %zd bytes \"%s\" with %d descriptors", got, text, count);
  if (count == 1) {
    FX_EQ("the access mode of the pipe end only \"fourth\" held", O_RDONLY, fcntl(fds[0], F_GETFL) & O_ACCMODE);
    FX_EQ("its O_NONBLOCK", 0, fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    FX_SYS(write(second_pipe[1], "!", 1));
    char piped[16] = "";
    FX_TRUE(read(fds[0], piped, sizeof piped - 1) == 7 && !strcmp(piped, "inpipe!"), "the pipe end only \"fourth\" held reads \"%s\"", piped);
  }
  unlink(only_path);
  unlink(path);
  fx_finish();
}

/* `udp-waiting`: datagrams waiting in a UDP socket bound to 127.0.0.1: "one" and "two" from a
 * socket bound to 127.0.0.1 that stays, "three" from one that sent from an ephemeral port and
 * was closed; and in a UDP socket bound to any address, "four" from the one that stays.
 * After SIGTERM each arrives in order from its sender's address and port, and a reply to the
 * sender that stays reaches it. */
static int udp_waiting_mode(void) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
  int receiver = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0)), wide = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  int sender = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0)), gone = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  FX_SYS(bind(receiver, (struct sockaddr *)&local, sizeof local));
  FX_SYS(bind(wide, (struct sockaddr *)&any, sizeof any));
  FX_SYS(bind(sender, (struct sockaddr *)&local, sizeof local));
  struct sockaddr_in to = local, to_wide = local, from_sender, from_gone;
  to.sin_port = htons((uint16_t)port_of(receiver));
  to_wide.sin_port = htons((uint16_t)port_of(wide));
  FX_SYS(sendto(sender, "one", 3, 0, (struct sockaddr *)&to, sizeof to));
  FX_SYS(sendto(sender, "two", 3, 0, (struct sockaddr *)&to, sizeof to));
  FX_SYS(sendto(gone, "three", 5, 0, (struct sockaddr *)&to, sizeof to));
  FX_SYS(sendto(sender, "four", 4, 0, (struct sockaddr *)&to_wide, sizeof to_wide));
  socklen_t length = sizeof from_sender;
  FX_SYS(getsockname(sender, (struct sockaddr *)&from_sender, &length));
  length = sizeof from_gone;
  FX_SYS(getsockname(gone, (struct sockaddr *)&from_gone, &length));
  from_gone.sin_addr = local.sin_addr;  /* bound to any address by its send, it sent from loopback */
  close(gone);
  usleep(20000);  /* loopback delivers at once; a moment for certainty */
  fx_ready();
  fx_wait_term();

  struct { int socket; const char *text; struct sockaddr_in *from; } expected[] = {
    {receiver, "one", &from_sender}, {receiver, "two", &from_sender}, {receiver, "three", &from_gone}, {wide, "four", &from_sender},
  };
  for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
    char text[16] = "";
    struct sockaddr_in from = {0};
    socklen_t from_length = sizeof from;
    ssize_t got = recvfrom(expected[i].socket, text, sizeof text - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &from_length);
    if (got >= 0) text[got] = 0;
    if (fx_flip()) text[0] ^= 1;
    FX_TRUE(got == (ssize_t)strlen(expected[i].text) && !strcmp(text, expected[i].text), "datagram %zu: expected \"%s\", got %zd bytes \"%s\"",
            i + 1, expected[i].text, got, got > 0 ? text : "");
    FX_TRUE(from.sin_addr.s_addr == expected[i].from->sin_addr.s_addr && from.sin_port == expected[i].from->sin_port,
            "datagram %zu (\"%s\") came from port %d, expected %d", i + 1, expected[i].text, ntohs(from.sin_port),
            ntohs(expected[i].from->sin_port));
  }
  char rest[16];
  FX_TRUE(recv(receiver, rest, sizeof rest, MSG_DONTWAIT) < 0 && errno == EAGAIN, "the receiver holds more datagrams");
  FX_EQ("a reply to the sender", 5, sendto(receiver, "reply", 5, 0, (struct sockaddr *)&from_sender, sizeof from_sender));
  char reply[16] = "";
  ssize_t got = recv(sender, reply, sizeof reply, MSG_DONTWAIT);
  for (int i = 0; got < 0 && errno == EAGAIN && i < 100; i++) {
    usleep(5000);
    got = recv(sender, reply, sizeof reply, MSG_DONTWAIT);
  }
  FX_EQ("the sender's reply", 5, got);
  fx_finish();
}

/* `udplite`: UDP-Lite sockets on 127.0.0.1: a receiver demanding a checksum coverage of 20
 * bytes (UDPLITE_RECV_CSCOV) holds "lite-one" from a sender that covers 20 bytes, and
 * "lite-two" from one that was closed since. A plain UDP socket, made first, is bound to the
 * sender's port number (UDP-Lite has ports of its own). After SIGTERM: the coverages read
 * as before, the datagrams arrive in order from their senders' ports, and a reply to the
 * sender reaches it, not the UDP socket. */
#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11
static int udplite_mode(void) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int twin = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  int receiver = FX_SYS(socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE));
  int sender = FX_SYS(socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE));
  int gone = FX_SYS(socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE));
  int coverage = 20;
  FX_SYS(setsockopt(receiver, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, &coverage, sizeof coverage));
  FX_SYS(setsockopt(sender, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &coverage, sizeof coverage));
  FX_SYS(setsockopt(gone, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &coverage, sizeof coverage));
  FX_SYS(bind(receiver, (struct sockaddr *)&local, sizeof local));
  FX_SYS(bind(sender, (struct sockaddr *)&local, sizeof local));
  FX_SYS(bind(gone, (struct sockaddr *)&local, sizeof local));
  struct sockaddr_in same = local, to = local, from_sender = local, from_gone = local;
  same.sin_port = htons((uint16_t)port_of(sender));
  FX_SYS(bind(twin, (struct sockaddr *)&same, sizeof same));
  to.sin_port = htons((uint16_t)port_of(receiver));
  from_sender.sin_port = same.sin_port;
  from_gone.sin_port = htons((uint16_t)port_of(gone));
  FX_SYS(sendto(sender, "lite-one", 8, 0, (struct sockaddr *)&to, sizeof to));
  FX_SYS(sendto(gone, "lite-two", 8, 0, (struct sockaddr *)&to, sizeof to));
  close(gone);
  usleep(20000);
  fx_ready();
  fx_wait_term();

  FX_EQ("the receiver's UDPLITE_RECV_CSCOV", 20, option(receiver, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV));
  FX_EQ("the sender's UDPLITE_SEND_CSCOV", 20, option(sender, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV));
  FX_EQ("the receiver's protocol", IPPROTO_UDPLITE, option(receiver, SOL_SOCKET, SO_PROTOCOL));
  struct { const char *text; struct sockaddr_in *from; } expected[] = {{"lite-one", &from_sender}, {"lite-two", &from_gone}};
  for (size_t i = 0; i < 2; i++) {
    char text[16] = "";
    struct sockaddr_in from = {0};
    socklen_t length = sizeof from;
    ssize_t got = recvfrom(receiver, text, sizeof text - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &length);
    if (got >= 0) text[got] = 0;
    if (fx_flip()) text[0] ^= 1;
    FX_TRUE(got == 8 && !strcmp(text, expected[i].text), "datagram %zu: expected \"%s\", got %zd bytes \"%s\"", i + 1,
            expected[i].text, got, got > 0 ? text : "");
    FX_EQ("the datagram's source port", ntohs(expected[i].from->sin_port), ntohs(from.sin_port));
  }
  FX_EQ("a reply to the sender", 5, sendto(receiver, "reply", 5, 0, (struct sockaddr *)&from_sender, sizeof from_sender));
  char reply[16] = "";
  ssize_t got = recv(sender, reply, sizeof reply, MSG_DONTWAIT);
  for (int i = 0; got < 0 && errno == EAGAIN && i < 100; i++) {
    usleep(5000);
    got = recv(sender, reply, sizeof reply, MSG_DONTWAIT);
  }
  FX_EQ("the sender's reply", 5, got);
  FX_TRUE(recv(twin, reply, sizeof reply, MSG_DONTWAIT) < 0 && errno == EAGAIN, "the UDP twin got a datagram");
  fx_finish();
}

struct int_setting {
  const char *what;
  int *fd, level, name, value, expected;
};

static void set_int(int fd, int level, int name, int value) {
  FX_SYS(setsockopt(fd, level, name, &value, sizeof value));
}

static int options_mode(void) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in6 local6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int client = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int udp = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  int udp6 = FX_SYS(socket(AF_INET6, SOCK_DGRAM, 0));
  int pair[2];
  FX_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
  int accepted = -1;
  struct int_setting settings[] = {
      // IP_TOS sets the priority too: first, so that SO_PRIORITY has the last word.
      {"the listener's IP_TOS", &listener, IPPROTO_IP, IP_TOS, 0x10, 0x10},
      {"the listener's SO_PRIORITY", &listener, SOL_SOCKET, SO_PRIORITY, 5, 5},
      {"the listener's SO_MARK", &listener, SOL_SOCKET, SO_MARK, 7, 7},
      {"the listener's SO_RCVLOWAT", &listener, SOL_SOCKET, SO_RCVLOWAT, 3, 3},
      {"the listener's SO_KEEPALIVE", &listener, SOL_SOCKET, SO_KEEPALIVE, 1, 1},
      {"the listener's IP_TTL", &listener, IPPROTO_IP, IP_TTL, 33, 33},
      {"the listener's IP_FREEBIND", &listener, IPPROTO_IP, IP_FREEBIND, 1, 1},
      {"the listener's TCP_USER_TIMEOUT", &listener, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345, 12345},
      {"the listener's TCP_DEFER_ACCEPT", &listener, IPPROTO_TCP, TCP_DEFER_ACCEPT, 7, 7},
      {"the listener's TCP_KEEPIDLE", &listener, IPPROTO_TCP, TCP_KEEPIDLE, 77, 77},
      {"the listener's TCP_KEEPINTVL", &listener, IPPROTO_TCP, TCP_KEEPINTVL, 11, 11},
      {"the listener's TCP_KEEPCNT", &listener, IPPROTO_TCP, TCP_KEEPCNT, 4, 4},
      {"the listener's TCP_NODELAY", &listener, IPPROTO_TCP, TCP_NODELAY, 1, 1},
      {"the listener's TCP_NOTSENT_LOWAT", &listener, IPPROTO_TCP, TCP_NOTSENT_LOWAT, 4096, 4096},
      {"the listener's TCP_SYNCNT", &listener, IPPROTO_TCP, TCP_SYNCNT, 3, 3},
      {"the listener's TCP_LINGER2", &listener, IPPROTO_TCP, TCP_LINGER2, 9, 9},
      {"the client's SO_SNDBUF (the kernel doubles it)", &client, SOL_SOCKET, SO_SNDBUF, 50000, 100000},
      {"the client's SO_DEBUG", &client, SOL_SOCKET, SO_DEBUG, 1, 1},
      {"the client's TCP_CORK", &client, IPPROTO_TCP, TCP_CORK, 1, 1},
      {"the client's TCP_KEEPIDLE", &client, IPPROTO_TCP, TCP_KEEPIDLE, 99, 99},
      {"the client's TCP_USER_TIMEOUT", &client, IPPROTO_TCP, TCP_USER_TIMEOUT, 2222, 2222},
      {"the client's TCP_THIN_LINEAR_TIMEOUTS", &client, IPPROTO_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1, 1},
      {"the UDP socket's SO_RCVBUF (the kernel doubles it)", &udp, SOL_SOCKET, SO_RCVBUF, 30000, 60000},
      {"the UDP socket's IP_PKTINFO", &udp, IPPROTO_IP, IP_PKTINFO, 1, 1},
      {"the UDP socket's IP_RECVTTL", &udp, IPPROTO_IP, IP_RECVTTL, 1, 1},
      {"the UDP socket's IP_RECVTOS", &udp, IPPROTO_IP, IP_RECVTOS, 1, 1},
      {"the UDP socket's IP_MTU_DISCOVER", &udp, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DO},
      {"the UDP socket's IP_MULTICAST_TTL", &udp, IPPROTO_IP, IP_MULTICAST_TTL, 7, 7},
      {"the UDP socket's IP_MULTICAST_LOOP", &udp, IPPROTO_IP, IP_MULTICAST_LOOP, 0, 0},
      {"the UDP socket's SO_BROADCAST", &udp, SOL_SOCKET, SO_BROADCAST, 1, 1},
      {"the IPv6 socket's IPV6_V6ONLY", &udp6, IPPROTO_IPV6, IPV6_V6ONLY, 1, 1},
      {"the IPv6 socket's IPV6_TCLASS", &udp6, IPPROTO_IPV6, IPV6_TCLASS, 0x20, 0x20},
      {"the IPv6 socket's IPV6_UNICAST_HOPS", &udp6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, 9, 9},
      {"the IPv6 socket's IPV6_MULTICAST_HOPS", &udp6, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 5, 5},
      {"the IPv6 socket's IPV6_RECVPKTINFO", &udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, 1},
      {"the IPv6 socket's IPV6_RECVTCLASS", &udp6, IPPROTO_IPV6, IPV6_RECVTCLASS, 1, 1},
      {"the IPv6 socket's IPV6_FREEBIND", &udp6, IPPROTO_IPV6, IPV6_FREEBIND, 1, 1},
      {"the IPv6 socket's IPV6_TRANSPARENT", &udp6, IPPROTO_IPV6, IPV6_TRANSPARENT, 1, 1},
      {"the IPv6 socket's SO_TIMESTAMPNS", &udp6, SOL_SOCKET, SO_TIMESTAMPNS, 1, 1},
      {"the IPv6 socket's SO_RXQ_OVFL", &udp6, SOL_SOCKET, SO_RXQ_OVFL, 1, 1},
      {"the unix socket's SO_PASSCRED", &pair[1], SOL_SOCKET, SO_PASSCRED, 1, 1},
      {"the unix socket's SO_SNDBUF (the kernel doubles it)", &pair[1], SOL_SOCKET, SO_SNDBUF, 40000, 80000},
      {"the unix socket's SO_PEEK_OFF", &pair[0], SOL_SOCKET, SO_PEEK_OFF, 3, 3},
      {"the unix socket's SO_RCVLOWAT", &pair[0], SOL_SOCKET, SO_RCVLOWAT, 2, 2},
  };
  size_t count = sizeof settings / sizeof settings[0];
  for (size_t i = 0; i < count; i++) set_int(*settings[i].fd, settings[i].level, settings[i].name, settings[i].value);
  struct linger linger = {.l_onoff = 1, .l_linger = 9};
  FX_SYS(setsockopt(listener, SOL_SOCKET, SO_LINGER, &linger, sizeof linger));
  struct timeval receive_timeout = {2, 500000}, send_timeout = {1, 250000};
  FX_SYS(setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, sizeof receive_timeout));
  FX_SYS(setsockopt(pair[0], SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout));
  // Kept in jiffies: 1.25 s may read back as 1.252 s. What it reads now must read after.
  socklen_t length = sizeof send_timeout;
  FX_SYS(getsockopt(pair[0], SOL_SOCKET, SO_SNDTIMEO, &send_timeout, &length));
  FX_SYS(setsockopt(udp, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3));
  FX_SYS(setsockopt(client, IPPROTO_TCP, TCP_CONGESTION, "reno", 4));

  FX_SYS(bind(listener, (struct sockaddr *)&local, sizeof local));
  FX_SYS(listen(listener, 4));
  struct sockaddr_in to = local;
  to.sin_port = htons((uint16_t)port_of(listener));
  FX_SYS(connect(client, (struct sockaddr *)&to, sizeof to));
  accepted = FX_SYS(accept(listener, NULL, NULL));
  FX_SYS(bind(udp, (struct sockaddr *)&local, sizeof local));
  FX_SYS(bind(udp6, (struct sockaddr *)&local6, sizeof local6));
  int sender = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  int sender6 = FX_SYS(socket(AF_INET6, SOCK_DGRAM, 0));
  to.sin_port = htons((uint16_t)port_of(udp));
  struct sockaddr_in6 to6 = local6;
  to6.sin6_port = htons((uint16_t)port_of(udp6));
  FX_SYS(sendto(sender, "before", 6, 0, (struct sockaddr *)&to, sizeof to));
  FX_SYS(sendto(sender6, "six", 3, 0, (struct sockaddr *)&to6, sizeof to6));
  FX_SYS(write(pair[1], "abcdefgh", 8));
  usleep(20000);
  struct sock_filter drop[] = {{BPF_RET | BPF_K, 0, 0, 0}};
  struct sock_fprog program = {.len = 1, .filter = drop};
  FX_SYS(setsockopt(udp, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program));
  set_int(udp, SOL_SOCKET, SO_LOCK_FILTER, 1);
  fx_ready();
  fx_wait_term();

  for (size_t i = 0; i < count; i++) FX_EQ(settings[i].what, settings[i].expected, option(*settings[i].fd, settings[i].level, settings[i].name));
  // IP_TOS sets the priority too (rt_tos2priority): the accepted end has the TOS but not
  // the priority of its listener.
  FX_EQ("the accepted end's IP_TOS (from its listener)", 0x10, option(accepted, IPPROTO_IP, IP_TOS));
  FX_EQ("the accepted end's SO_PRIORITY", 0, option(accepted, SOL_SOCKET, SO_PRIORITY));
  struct linger linger_now = {0};
  length = sizeof linger_now;
  FX_SYS(getsockopt(listener, SOL_SOCKET, SO_LINGER, &linger_now, &length));
  FX_TRUE(linger_now.l_onoff == 1 && linger_now.l_linger == 9, "the listener's SO_LINGER is {%d, %d}", linger_now.l_onoff, linger_now.l_linger);
  struct timeval now = {0};
  length = sizeof now;
  FX_SYS(getsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &now, &length));
  FX_TRUE(now.tv_sec == 2 && now.tv_usec == 500000, "SO_RCVTIMEO is %ld.%06ld s", (long)now.tv_sec, (long)now.tv_usec);
  length = sizeof now;
  FX_SYS(getsockopt(pair[0], SOL_SOCKET, SO_SNDTIMEO, &now, &length));
  FX_TRUE(now.tv_sec == send_timeout.tv_sec && now.tv_usec == send_timeout.tv_usec, "SO_SNDTIMEO is %ld.%06ld s, was %ld.%06ld s",
          (long)now.tv_sec, (long)now.tv_usec, (long)send_timeout.tv_sec, (long)send_timeout.tv_usec);
  char name[32] = "";
  length = sizeof name;
  FX_SYS(getsockopt(udp, SOL_SOCKET, SO_BINDTODEVICE, name, &length));
  FX_TRUE(!strcmp(name, "lo"), "the UDP socket is bound to device \"%s\"", name);
  memset(name, 0, sizeof name);
  length = sizeof name;
  FX_SYS(getsockopt(client, IPPROTO_TCP, TCP_CONGESTION, name, &length));
  FX_TRUE(!strcmp(name, "reno"), "the client's congestion control is \"%s\"", name);
  FX_EQ("the UDP socket's SO_LOCK_FILTER", 1, option(udp, SOL_SOCKET, SO_LOCK_FILTER));
  struct sock_filter got_filter[4];
  length = 4;  // SO_GET_FILTER counts instructions
  FX_SYS(getsockopt(udp, SOL_SOCKET, SO_GET_FILTER, got_filter, &length));
  FX_TRUE(length == 1 && got_filter[0].code == (BPF_RET | BPF_K) && got_filter[0].k == 0, "the UDP socket's filter has %u instructions", length);
  char text[16] = "";
  ssize_t got = recv(udp, text, sizeof text - 1, MSG_DONTWAIT);
  FX_TRUE(got == 6 && !memcmp(text, "before", 6), "the datagram from before the filter: %zd bytes", got);
  FX_SYS(sendto(sender, "after", 5, 0, (struct sockaddr *)&to, sizeof to));
  usleep(20000);
  FX_TRUE(recv(udp, text, sizeof text, MSG_DONTWAIT) < 0 && errno == EAGAIN, "a datagram passed the filter that drops all");
  char control[256];
  struct iovec vector = {text, sizeof text};
  struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  got = recvmsg(udp6, &message, MSG_DONTWAIT);
  int pktinfo = 0;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&message); h; h = CMSG_NXTHDR(&message, h)) pktinfo |= h->cmsg_level == IPPROTO_IPV6 && h->cmsg_type == IPV6_PKTINFO;
  FX_TRUE(got == 3 && !memcmp(text, "six", 3) && pktinfo, "the IPv6 datagram: %zd bytes, IPV6_PKTINFO %d", got, pktinfo);
  memset(text, 0, sizeof text);
  got = recv(pair[0], text, sizeof text - 1, MSG_PEEK | MSG_DONTWAIT);
  FX_TRUE(got == 5 && !strcmp(text, "defgh"), "a peek at the unix socket from SO_PEEK_OFF 3 got \"%s\"", text);
  close(sender);
  close(sender6);
  fx_finish();
}

/* Sends an echo request with `sequence` on ping socket `fd` to `to` and waits for its reply;
 * 1 when it came back with that sequence. */
static int ping_once(int fd, const struct sockaddr *to, socklen_t length, int v6, uint16_t sequence) {
  unsigned char request[16] = {v6 ? 128 : 8, 0}, reply[64];
  memcpy(request + 6, &sequence, 2);
  memcpy(request + 8, "ckcont!!", 8);
  if (sendto(fd, request, sizeof request, 0, to, length) != sizeof request) return 0;
  struct pollfd ready = {.fd = fd, .events = POLLIN};
  if (poll(&ready, 1, 2000) != 1) return 0;
  ssize_t got = recv(fd, reply, sizeof reply, MSG_DONTWAIT);
  uint16_t answered = 0;
  if (got >= 8) memcpy(&answered, reply + 6, 2);
  return got == 16 && reply[0] == (v6 ? 129 : 0) && answered == sequence;
}

/* Moves into a network namespace of its own, loopback up. */
static void own_network(void) {
  FX_SYS(unshare(CLONE_NEWNET));
  int probe = FX_SYS(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct ifreq request = {0};
  strcpy(request.ifr_name, "lo");
  request.ifr_flags = IFF_UP;
  FX_SYS(ioctl(probe, SIOCSIFFLAGS, &request));
  close(probe);
}

/* Sends an echo request with `sequence` on raw ICMP socket `fd` (IPv4 when !v6) to the
 * loopback address and waits for its reply, which comes after the IPv4 header; 1 when it
 * came with that sequence and nothing else came (the filter lets replies only through). */
static int raw_ping(int fd, int v6, uint16_t sequence) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  unsigned char request[16] = {v6 ? 128 : 8, 0}, reply[128];
  uint16_t identifier = 0x4b43;
  memcpy(request + 4, &identifier, 2);
  memcpy(request + 6, &sequence, 2);
  memcpy(request + 8, "ckcont!!", 8);
  if (!v6) {
    /* The ICMP checksum, which the kernel computes only for ICMPv6 raw sockets. */
    uint32_t sum = 0;
    for (int i = 0; i < 16; i += 2) sum += (uint32_t)request[i] << 8 | request[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    request[2] = (unsigned char)(~sum >> 8);
    request[3] = (unsigned char)~sum;
  }
  /* The IPv4 one is connected to the loopback address: send(2) without one fails otherwise. */
  (void)to;
  ssize_t sent = v6 ? sendto(fd, request, sizeof request, 0, (struct sockaddr *)&to6, sizeof to6)
                    : send(fd, request, sizeof request, 0);
  if (sent != sizeof request) return 0;
  struct pollfd ready = {.fd = fd, .events = POLLIN};
  if (poll(&ready, 1, 2000) != 1) return 0;
  ssize_t got = recv(fd, reply, sizeof reply, MSG_DONTWAIT);
  unsigned char *icmp = v6 ? reply : reply + 20;
  ssize_t length = v6 ? got : got - 20;
  uint16_t answered = 0;
  if (length >= 8) memcpy(&answered, icmp + 6, 2);
  int more = recv(fd, reply, sizeof reply, MSG_DONTWAIT) >= 0;
  return length == 16 && icmp[0] == (v6 ? 129 : 0) && answered == sequence && !more;
}

static int raw_mode(void) {
  own_network();
  int icmp = FX_SYS(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  struct icmp_filter filter = {.data = ~(1u << ICMP_ECHOREPLY)};
  FX_SYS(setsockopt(icmp, SOL_RAW, ICMP_FILTER, &filter, sizeof filter));
  set_int(icmp, IPPROTO_IP, IP_TTL, 33);
  struct sockaddr_in loopback = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  FX_SYS(connect(icmp, (struct sockaddr *)&loopback, sizeof loopback));
  int headers = FX_SYS(socket(AF_INET, SOCK_RAW, 253));
  set_int(headers, IPPROTO_IP, IP_HDRINCL, 1);
  FX_SYS(bind(headers, (struct sockaddr *)&loopback, sizeof loopback));
  int icmp6 = FX_SYS(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6));
  struct icmp6_filter filter6;
  ICMP6_FILTER_SETBLOCKALL(&filter6);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter6);
  FX_SYS(setsockopt(icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &filter6, sizeof filter6));
  int checksummed = FX_SYS(socket(AF_INET6, SOCK_RAW, 253));
  set_int(checksummed, IPPROTO_IPV6, IPV6_CHECKSUM, 2);
  fx_ready();
  fx_wait_term();

  FX_EQ("the ICMP socket's protocol", IPPROTO_ICMP, option(icmp, SOL_SOCKET, SO_PROTOCOL));
  FX_EQ("the ICMP socket's type", SOCK_RAW, option(icmp, SOL_SOCKET, SO_TYPE));
  struct icmp_filter now = {0};
  socklen_t length = sizeof now;
  FX_SYS(getsockopt(icmp, SOL_RAW, ICMP_FILTER, &now, &length));
  FX_EQ("the ICMP socket's filter", (int)filter.data, (int)now.data);
  FX_EQ("the ICMP socket's IP_TTL", 33, option(icmp, IPPROTO_IP, IP_TTL));
  FX_EQ("the header socket's protocol", 253, option(headers, SOL_SOCKET, SO_PROTOCOL));
  FX_EQ("the header socket's IP_HDRINCL", 1, option(headers, IPPROTO_IP, IP_HDRINCL));
  struct sockaddr_in bound = {0};
  length = sizeof bound;
  FX_SYS(getsockname(headers, (struct sockaddr *)&bound, &length));
  FX_EQ("the header socket's address", (int)htonl(INADDR_LOOPBACK), (int)bound.sin_addr.s_addr);
  struct icmp6_filter now6;
  length = sizeof now6;
  FX_SYS(getsockopt(icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &now6, &length));
  FX_TRUE(!memcmp(&now6, &filter6, sizeof now6), "the ICMPv6 socket's filter changed");
  FX_EQ("the checksum socket's IPV6_CHECKSUM", 2, option(checksummed, IPPROTO_IPV6, IPV6_CHECKSUM));
  FX_TRUE(raw_ping(icmp, 0, 7), "no echo reply (alone) on the raw ICMP socket after the restore");
  FX_TRUE(raw_ping(icmp6, 1, 8), "no echo reply (alone) on the raw ICMPv6 socket after the restore");
  fx_finish();
}

/* Sends a UDP datagram to 127.0.0.1 and waits for packet socket `fd` to see it; 1 when
 * it did (a packet longer than an IPv4 and UDP header). */
static int packet_sees_udp(int fd) {
  int udp = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  ssize_t sent = sendto(udp, "ckcont", 6, 0, (struct sockaddr *)&to, sizeof to);
  close(udp);
  if (sent != 6) return 0;
  struct pollfd ready = {.fd = fd, .events = POLLIN};
  unsigned char packet[2048];
  for (int tries = 0; tries < 8; tries++) {
    if (poll(&ready, 1, 1000) != 1) return 0;
    ssize_t got = recv(fd, packet, sizeof packet, MSG_DONTWAIT);
    if (got >= 28 + 6 && !memcmp(packet + got - 6, "ckcont", 6)) return 1;
  }
  return 0;
}

static int packet_mode(void) {
  own_network();
  int lo = (int)if_nametoindex("lo");
  int all = FX_SYS(socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  struct sockaddr_ll on_lo = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = lo};
  FX_SYS(bind(all, (struct sockaddr *)&on_lo, sizeof on_lo));
  set_int(all, SOL_PACKET, PACKET_AUXDATA, 1);
  set_int(all, SOL_PACKET, PACKET_VERSION, TPACKET_V2);
  set_int(all, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
  struct packet_mreq promisc = {.mr_ifindex = lo, .mr_type = PACKET_MR_PROMISC};
  FX_SYS(setsockopt(all, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &promisc, sizeof promisc));
  struct packet_mreq multicast = {
      .mr_ifindex = lo, .mr_type = PACKET_MR_MULTICAST, .mr_alen = 6, .mr_address = {0x01, 0x00, 0x5e, 0, 0, 0x42}};
  FX_SYS(setsockopt(all, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &multicast, sizeof multicast));
  int ip = FX_SYS(socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP)));
  int fanout = 77 | PACKET_FANOUT_HASH << 16;
  set_int(ip, SOL_PACKET, PACKET_FANOUT, fanout);
  fx_ready();
  fx_wait_term();

  FX_EQ("the raw packet socket's type", SOCK_RAW, option(all, SOL_SOCKET, SO_TYPE));
  FX_EQ("its PACKET_AUXDATA", 1, option(all, SOL_PACKET, PACKET_AUXDATA));
  FX_EQ("its PACKET_VERSION", TPACKET_V2, option(all, SOL_PACKET, PACKET_VERSION));
  FX_EQ("its PACKET_IGNORE_OUTGOING", 1, option(all, SOL_PACKET, PACKET_IGNORE_OUTGOING));
  struct sockaddr_ll bound = {0};
  socklen_t length = sizeof bound;
  FX_SYS(getsockname(all, (struct sockaddr *)&bound, &length));
  FX_EQ("the link it is bound to", (int)if_nametoindex("lo"), bound.sll_ifindex);
  /* SO_PROTOCOL reads 0 for a packet socket: the ethertype is in its address. */
  FX_EQ("the raw packet socket's ethertype", htons(ETH_P_ALL), bound.sll_protocol);
  FX_EQ("the datagram packet socket's type", SOCK_DGRAM, option(ip, SOL_SOCKET, SO_TYPE));
  length = sizeof bound;
  FX_SYS(getsockname(ip, (struct sockaddr *)&bound, &length));
  FX_EQ("its ethertype", htons(ETH_P_IP), bound.sll_protocol);
  FX_EQ("its link (every one)", 0, bound.sll_ifindex);
  FX_EQ("its fanout group", fanout, option(ip, SOL_PACKET, PACKET_FANOUT));
  FX_TRUE(packet_sees_udp(all), "the raw packet socket did not see a datagram on lo");
  FX_TRUE(packet_sees_udp(ip), "the datagram packet socket did not see a datagram");
  fx_finish();
}

static int icmp_mode(void) {
  set_sysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(4242), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in6 local6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int ping = FX_SYS(socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP));
  int ping6 = FX_SYS(socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6));
  set_int(ping, IPPROTO_IP, IP_TTL, 17);
  FX_SYS(bind(ping, (struct sockaddr *)&local, sizeof local));
  if (!ping_once(ping, (struct sockaddr *)&local, sizeof local, 0, 1)) fx_setup_fail("no echo reply before the dump");
  fx_ready();
  fx_wait_term();

  FX_EQ("the ping socket's identifier", 4242, port_of(ping));
  FX_EQ("the ping socket's IP_TTL", 17, option(ping, IPPROTO_IP, IP_TTL));
  FX_EQ("the ping socket's protocol", IPPROTO_ICMP, option(ping, SOL_SOCKET, SO_PROTOCOL));
  FX_TRUE(ping_once(ping, (struct sockaddr *)&local, sizeof local, 0, 2), "no echo reply after the restore");
  FX_EQ("the IPv6 ping socket's protocol", IPPROTO_ICMPV6, option(ping6, SOL_SOCKET, SO_PROTOCOL));
  FX_TRUE(ping_once(ping6, (struct sockaddr *)&local6, sizeof local6, 1, 3), "no IPv6 echo reply after the restore");
  fx_finish();
}

static int unix_path_socket(int type, const char *path, int listening) {
  int fd = FX_SYS(socket(AF_UNIX, type | SOCK_NONBLOCK, 0));
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  FX_SYS(bind(fd, (struct sockaddr *)&address, sizeof address));
  if (listening) FX_SYS(listen(fd, 4));
  return fd;
}

static void check_name(const char *what, int fd, const char *path) {
  struct sockaddr_un now = {0};
  socklen_t length = sizeof now;
  FX_SYS(getsockname(fd, (struct sockaddr *)&now, &length));
  FX_TRUE(!strcmp(now.sun_path, path), "%s is named \"%s\"", what, now.sun_path);
}

static int unix_unlinked_mode(const char *dir) {
  char shared[108], gone[108], dgram[108];
  snprintf(shared, sizeof shared, "%s/ckcont-unlinked-%d.sock", dir, getpid());
  snprintf(gone, sizeof gone, "%s/ckcont-gone-%d.sock", dir, getpid());
  snprintf(dgram, sizeof dgram, "%s/ckcont-gone-dgram-%d.sock", dir, getpid());
  int old = unix_path_socket(SOCK_STREAM, shared, 1);
  FX_SYS(unlink(shared));
  int replacement = unix_path_socket(SOCK_STREAM, shared, 1);
  int orphan = unix_path_socket(SOCK_STREAM, gone, 1);
  FX_SYS(unlink(gone));
  int datagrams = unix_path_socket(SOCK_DGRAM, dgram, 0);
  FX_SYS(unlink(dgram));
  fx_ready();
  fx_wait_term();

  check_name("the old listener", old, shared);
  check_name("the listener bound in its place", replacement, shared);
  check_name("the listener whose file was unlinked", orphan, gone);
  check_name("the datagram socket whose file was unlinked", datagrams, dgram);
  struct stat st;
  FX_TRUE(lstat(gone, &st) < 0 && errno == ENOENT, "%s is there again", gone);
  FX_TRUE(lstat(dgram, &st) < 0 && errno == ENOENT, "%s is there again", dgram);
  int client = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  struct sockaddr_un to = {.sun_family = AF_UNIX};
  snprintf(to.sun_path, sizeof to.sun_path, "%s", shared);
  FX_EQ("a client's connect to the shared path", 0, connect(client, (struct sockaddr *)&to, sizeof to));
  int accepted = accept(replacement, NULL, NULL);
  FX_TRUE(accepted >= 0, "the listener bound in the old one's place got no connection");
  FX_TRUE(accept(old, NULL, NULL) < 0 && errno == EAGAIN, "the old listener got a connection");
  unlink(shared);
  fx_finish();
}

static int reuse_socket(int type, int option, uint16_t port) {
  int fd = FX_SYS(socket(AF_INET, type, 0));
  set_int(fd, SOL_SOCKET, option, 1);
  struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  FX_SYS(bind(fd, (struct sockaddr *)&at, sizeof at));
  if (type == SOCK_STREAM) FX_SYS(listen(fd, 8));
  return fd;
}

static const char *check_reuse(int listener, int udp, int tcp_port, int udp_port) {
  if (port_of(listener) != tcp_port || option(listener, SOL_SOCKET, SO_ACCEPTCONN) != 1) return "the listener moved";
  if (option(listener, SOL_SOCKET, SO_REUSEPORT) != 1) return "the listener lost SO_REUSEPORT";
  if (port_of(udp) != udp_port || option(udp, SOL_SOCKET, SO_REUSEADDR) != 1) return "the UDP socket moved";
  return NULL;
}

static int reuseport_mode(void) {
  int listener = reuse_socket(SOCK_STREAM, SO_REUSEPORT, 0);
  int tcp_port = port_of(listener);
  int udp = reuse_socket(SOCK_DGRAM, SO_REUSEADDR, 0);
  int udp_port = port_of(udp);
  int report[2];
  FX_SYS(pipe(report));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    close(listener);
    close(udp);
    int own = reuse_socket(SOCK_STREAM, SO_REUSEPORT, (uint16_t)tcp_port);
    int own_udp = reuse_socket(SOCK_DGRAM, SO_REUSEADDR, (uint16_t)udp_port);
    FX_SYS(write(report[1], "r", 1));
    fx_wait_term();
    const char *problem = check_reuse(own, own_udp, tcp_port, udp_port);
    FX_TRUE(problem == NULL, "the child: %s", problem);
    fx_finish();
  }
  char byte;
  if (read(report[0], &byte, 1) != 1) fx_setup_fail("the child did not bind");
  fx_ready();
  fx_wait_term();
  const char *problem = check_reuse(listener, udp, tcp_port, udp_port);
  FX_TRUE(problem == NULL, "the parent: %s", problem);
  int connected = 0;
  for (int i = 0; i < 4; i++) {
    int client = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)tcp_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    connected += connect(client, (struct sockaddr *)&to, sizeof to) == 0;
    close(client);
  }
  FX_EQ("connections to the shared port", 4, connected);
  fx_stop_child(child, "the child's checks failed");
  fx_finish();
}

/* `unix-peercred`: who is at the other end of a connection (SO_PEERCRED) is the process
 * that made it, with the effective ids it had then. This process listens at
 * DIR/ckcont-peercred-<pid>.sock and accepts the connection of a child that had set its ids
 * to 1234/2345 and its groups to 3456, 4567 first; a second child made a socketpair and passed one end to this process
 * over a socketpair this process made before forking it. After SIGTERM every end names the
 * right process and ids: the accepted end the first child (1234/2345, groups 3456 and 4567
 * as SO_PEERGROUPS shows), that child's end this
 * process (0/0, as it was when it listened), both ends of the passed pair the second child,
 * both ends of the first pair this process. Each child checks its own ends when told to and
 * answers with its verdict. And a datagram socket connected to one with an abstract name (as
 * syslog(3) connects to /dev/log), which gives neither credentials: after SIGTERM neither has
 * any, and a datagram sent without an address reaches the named one. */
/* SO_PEERGROUPS: the supplementary groups the peer had when it made the connection. */
static void expect_peer_groups(int fd, const gid_t *groups, int count, const char *what) {
  gid_t got[16] = {0};
  socklen_t length = sizeof got;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, got, &length) < 0) { fx_bad("%s: SO_PEERGROUPS: %s", what, strerror(errno)); return; }
  int ok = length == count * sizeof(gid_t);
  for (int i = 0; ok && i < count; i++) ok = got[i] == groups[i];
  FX_TRUE(ok, "%s: SO_PEERGROUPS has %u groups (first %u), expected %d (first %u)", what, (unsigned)(length / sizeof(gid_t)),
          (unsigned)got[0], count, (unsigned)groups[0]);
}

static void expect_peer(int fd, pid_t pid, uid_t uid, gid_t gid, const char *what) {
  struct ucred cred = {0};
  socklen_t length = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) < 0) { fx_bad("%s: SO_PEERCRED: %s", what, strerror(errno)); return; }
  FX_TRUE(cred.pid == pid && cred.uid == uid && cred.gid == gid, "%s: SO_PEERCRED pid %d uid %u gid %u, expected %d %u %u",
          what, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid, (int)pid, (unsigned)uid, (unsigned)gid);
}

/* In a child: its ends once told, then its verdict ("ok" or what was wrong) back. */
static int peer_ok(int fd, pid_t pid, uid_t uid, gid_t gid) {
  struct ucred cred = {0};
  socklen_t length = sizeof cred;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 && cred.pid == pid && cred.uid == uid && cred.gid == gid;
}

static void wait_until_told(int talk) {
  char go[4] = "";
  if (recv(talk, go, 2, MSG_WAITALL) != 2) _exit(3);
}

static void answer(int talk, int ok) {
  if (send(talk, ok ? "ok" : "no", 2, 0) != 2) _exit(4);
  _exit(0);
}

static void ask_child(int talk, pid_t child, const char *what) {
  FX_TRUE(send(talk, "go", 2, 0) == 2, "%s: send: %s", what, strerror(errno));
  char verdict[4] = "";
  FX_TRUE(recv(talk, verdict, 2, MSG_WAITALL) == 2 && !memcmp(verdict, "ok", 2), "%s: its ends name the wrong peers (\"%s\")", what, verdict);
  int status = 0;
  FX_TRUE(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %#x", what, status);
}

static int unix_peercred_mode(const char *dir) {
  pid_t self = getpid();
  struct sockaddr_un named = {.sun_family = AF_UNIX};
  snprintf(named.sun_path, sizeof named.sun_path, "%s/ckcont-peercred-%d.sock", dir, (int)self);
  unlink(named.sun_path);
  int listener = FX_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
  FX_SYS(bind(listener, (struct sockaddr *)&named, sizeof named));
  FX_SYS(chmod(named.sun_path, 0777)); /* connect(2) needs write permission on the file */
  FX_SYS(listen(listener, 2));
  pid_t client = FX_SYS(fork());
  if (client == 0) {
    gid_t groups[] = {3456, 4567};
    if (setgroups(2, groups) < 0 || setresgid(2345, 2345, 2345) < 0 || setresuid(1234, 1234, 1234) < 0) _exit(2);
    int end = socket(AF_UNIX, SOCK_STREAM, 0);
    if (end < 0 || connect(end, (struct sockaddr *)&named, sizeof named) < 0) _exit(2);
    wait_until_told(end);
    answer(end, peer_ok(end, self, 0, 0));
  }
  int accepted = FX_SYS(accept(listener, NULL, NULL));
  int channel[2];
  FX_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, channel));
  pid_t maker = FX_SYS(fork());
  if (maker == 0) {
    close(channel[0]);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair) < 0) _exit(2);
    send_with(channel[1], "p", &pair[0], 1);
    close(pair[0]);
    pid_t me = getpid();
    wait_until_told(channel[1]);
    answer(channel[1], peer_ok(channel[1], getppid(), 0, 0) && peer_ok(pair[1], me, 0, 0));
  }
  close(channel[1]);
  /* A datagram socket connected to a named one (as syslog(3) connects to /dev/log): no
   * credentials at either end, and the connection goes one way. */
  struct sockaddr_un log_name = {.sun_family = AF_UNIX};
  int log_length = snprintf(log_name.sun_path + 1, sizeof log_name.sun_path - 1, "ckcont-peercred-log-%d", (int)self);
  socklen_t log_size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + log_length);
  int log_receiver = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
  FX_SYS(bind(log_receiver, (struct sockaddr *)&log_name, log_size));
  int log_sender = FX_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
  FX_SYS(connect(log_sender, (struct sockaddr *)&log_name, log_size));
  char text[8];
  int passed[4], count = 0;
  struct pollfd arrived = {.fd = channel[0], .events = POLLIN};
  poll(&arrived, 1, 5000);
  if (receive(channel[0], text, sizeof text, passed, &count) != 1 || count != 1) fx_setup_fail("the passed socket did not come");
  fx_ready();
  fx_wait_term();

  expect_peer(accepted, client, 1234, 2345, "the end accepted from the child with ids 1234/2345");
  expect_peer_groups(accepted, (gid_t[]){3456, 4567}, 2, "the end accepted from the child with groups 3456, 4567");
  expect_peer(channel[0], self, 0, 0, "this process's end of the pair it made");
  expect_peer(passed[0], maker, 0, 0, "the end of the pair the second child made and passed");
  expect_peer(log_sender, 0, (uid_t)-1, (gid_t)-1, "a datagram socket connected to a named one");
  expect_peer(log_receiver, 0, (uid_t)-1, (gid_t)-1, "the named datagram socket");
  FX_TRUE(send(log_sender, "log", 3, 0) == 3, "send on the connected datagram socket: %s", strerror(errno));
  expect_read(log_receiver, "log", "the named datagram socket");
  expect_name(getpeername, log_sender, &log_name, log_size, "the connected datagram socket's peer name");
  ask_child(accepted, client, "the connecting child");
  ask_child(channel[0], maker, "the child that made a pair");
  unlink(named.sun_path);
  fx_finish();
}

/* `tcp-closing`: TCP connections on loopback half closed. The first: the client sent "bye"
 * and shut down its sending (FIN-WAIT-2), the server has "bye" unread and has sent "late",
 * which the client has not read (CLOSE-WAIT). The second: its client set a small receive
 * buffer and reads nothing; the server sent until its buffers were full, then shut down its
 * sending, so that its FIN waits behind the bytes (FIN-WAIT-1, the client ESTABLISHED).
 * After SIGTERM every end is in its state again; the server reads "bye" then the end of
 * the stream, still sends "ok", which the client reads after "late", and the client cannot
 * send; the second client reads every byte, then the end, and its server is in FIN-WAIT-2. */
static int tcp_state(int fd) {
  struct tcp_info info;
  socklen_t length = sizeof info;
  return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0 ? -1 : info.tcpi_state;
}

static int tcp_pair(int listener, int *client, int receive_buffer) {
  struct sockaddr_in address;
  socklen_t length = sizeof address;
  FX_SYS(getsockname(listener, (struct sockaddr *)&address, &length));
  *client = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  if (receive_buffer) FX_SYS(setsockopt(*client, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer));
  FX_SYS(connect(*client, (struct sockaddr *)&address, sizeof address));
  return FX_SYS(accept(listener, NULL, NULL));
}

static int tcp_closing_mode(void) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  FX_SYS(bind(listener, (struct sockaddr *)&local, sizeof local));
  FX_SYS(listen(listener, 4));
  int client, small;
  int server = tcp_pair(listener, &client, 0);
  FX_SYS(send(client, "bye", 3, 0));
  FX_SYS(shutdown(client, SHUT_WR));
  FX_SYS(send(server, "late", 4, 0));
  int stuck = tcp_pair(listener, &small, 4096);
  int send_buffer = 4096;
  FX_SYS(setsockopt(stuck, SOL_SOCKET, SO_SNDBUF, &send_buffer, sizeof send_buffer));
  static char block[1 << 20];
  memset(block, 'z', sizeof block);
  size_t sent = 0;
  for (int quiet = 0; quiet < 20; quiet++) {
    ssize_t n = send(stuck, block, sizeof block, MSG_DONTWAIT);
    if (n > 0) { sent += (size_t)n; quiet = 0; }
    usleep(2000);
  }
  FX_SYS(shutdown(stuck, SHUT_WR));
  usleep(50000);
  int states[4] = {tcp_state(client), tcp_state(server), tcp_state(stuck), tcp_state(small)};
  if (states[0] != TCP_FIN_WAIT2 || states[1] != TCP_CLOSE_WAIT || states[2] != TCP_FIN_WAIT1 || states[3] != TCP_ESTABLISHED)
    fx_setup_fail("states %d %d %d %d after the shutdowns", states[0], states[1], states[2], states[3]);
  fx_ready();
  fx_wait_term();

  FX_EQ("the state of the client that shut down", TCP_FIN_WAIT2, tcp_state(client));
  FX_EQ("the state of its server", TCP_CLOSE_WAIT, tcp_state(server));
  FX_EQ("the state of the server whose FIN waits behind its bytes", TCP_FIN_WAIT1, tcp_state(stuck));
  FX_EQ("the state of the client that reads nothing", TCP_ESTABLISHED, tcp_state(small));
  char text[8] = "";
  FX_TRUE(recv(server, text, sizeof text, MSG_DONTWAIT) == 3 && !memcmp(text, "bye", 3), "the server read \"%s\"", text);
  FX_EQ("the server's read after \"bye\" (the end)", 0, recv(server, text, sizeof text, MSG_DONTWAIT));
  FX_TRUE(send(server, "ok", 2, MSG_NOSIGNAL) == 2, "the server's send after the client's FIN: %s", strerror(errno));
  memset(text, 0, sizeof text);
  FX_TRUE(recv(client, text, 6, MSG_WAITALL) == 6 && !memcmp(text, "lateok", 6), "the client read \"%s\"", text);
  FX_TRUE(send(client, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "the client could send after shutting down");
  static char got[1 << 20];
  size_t have = 0;
  for (ssize_t n; have <= sent && (n = recv(small, got, sizeof got, 0)) > 0;) {
    if (memcmp(got, block, (size_t)n)) { fx_bad("the bytes that waited differ"); break; }
    have += (size_t)n;
  }
  FX_EQ("bytes that waited behind the FIN", sent, have);
  for (int i = 0; i < 200 && tcp_state(stuck) != TCP_FIN_WAIT2; i++) usleep(5000);
  FX_EQ("the state of that server once they were read", TCP_FIN_WAIT2, tcp_state(stuck));
  fx_finish();
}

/* `tcp-outside PORT`: a TCP connection to 127.0.0.1:PORT, whose listener the caller runs
 * outside the container and whose accepted end it shuts down for sending before "ready"
 * (CLOSE-WAIT here: a dump must refuse it, as nothing would send that FIN again). After
 * SIGTERM, in this same process, the connection reads its end. */
static int tcp_outside_mode(const char *port) {
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons((uint16_t)atoi(port))};
  int fd = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  FX_SYS(connect(fd, (struct sockaddr *)&address, sizeof address));
  for (int i = 0; i < 500 && tcp_state(fd) != TCP_CLOSE_WAIT; i++) usleep(10000);
  if (tcp_state(fd) != TCP_CLOSE_WAIT) fx_setup_fail("the peer outside did not shut down (state %d)", tcp_state(fd));
  fx_ready();
  fx_wait_term();
  char byte;
  FX_EQ("a read of the connection its peer shut down", 0, read(fd, &byte, 1));
  fx_finish();
}

/* `tcp-pending`: a TCP listener on 127.0.0.1 (backlog 4) holding two connections not yet
 * accepted, one from a client of this process, one from a forked child's; neither sent
 * anything. After SIGTERM the listener accepts both (each accepted end's peer is one of
 * the clients), each connection carries data both ways (the child answers and exits 0),
 * and no third waits. */
static int tcp_pending_mode(void) {
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  FX_SYS(bind(listener, (struct sockaddr *)&local, sizeof local));
  FX_SYS(listen(listener, 4));
  socklen_t length = sizeof local;
  FX_SYS(getsockname(listener, (struct sockaddr *)&local, &length));
  int first = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  FX_SYS(connect(first, (struct sockaddr *)&local, sizeof local));
  int sync[2];
  FX_SYS(pipe(sync));
  pid_t child = FX_SYS(fork());
  if (child == 0) {
    close(sync[0]);
    int second = socket(AF_INET, SOCK_STREAM, 0);
    if (second < 0 || connect(second, (struct sockaddr *)&local, sizeof local) < 0) _exit(2);
    if (write(sync[1], "c", 1) != 1) _exit(2);
    char got[4] = "";
    if (recv(second, got, 2, MSG_WAITALL) != 2 || memcmp(got, "hi", 2)) _exit(3);
    if (send(second, "2!", 2, 0) != 2) _exit(4);
    _exit(0);
  }
  close(sync[1]);
  char byte;
  if (read(sync[0], &byte, 1) != 1) fx_setup_fail("the child did not connect");
  close(sync[0]);
  usleep(20000);
  fx_ready();
  fx_wait_term();

  int first_port = port_of(first);
  for (int i = 0; i < 2; i++) {
    int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    FX_TRUE(accepted >= 0, "waiting connection %d: accept: %s", i + 1, strerror(errno));
    if (accepted < 0) continue;
    struct sockaddr_in peer;
    socklen_t size = sizeof peer;
    FX_SYS(getpeername(accepted, (struct sockaddr *)&peer, &size));
    if (ntohs(peer.sin_port) == first_port) {
      exchange(first, accepted, "the first waiting connection");
    } else {
      FX_TRUE(send(accepted, "hi", 2, 0) == 2, "the child's connection: send: %s", strerror(errno));
      char got[4] = "";
      FX_TRUE(recv(accepted, got, 2, MSG_WAITALL) == 2 && !memcmp(got, "2!", 2), "the child answered \"%s\"", got);
    }
    close(accepted);
  }
  int status = 0;
  FX_TRUE(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child's client failed its checks (status %#x)", status);
  struct pollfd third = {.fd = listener, .events = POLLIN};
  FX_EQ("connections still waiting after both were accepted", 0, poll(&third, 1, 0));
  fx_finish();
}

int main(int argc, char **argv) {
  fx_init("sockets");
  fx_term_setup();
  if (argc > 2 && !strcmp(argv[1], "unix-outside")) return unix_outside_mode(argv[2]);
  if (argc > 1 && !strcmp(argv[1], "tcp-connection")) return tcp_connection_mode(argc > 2 && !strcmp(argv[2], "big"));
  if (argc > 1 && !strcmp(argv[1], "unix")) return unix_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 1 && !strcmp(argv[1], "unix-dgram")) return unix_dgram_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 1 && !strcmp(argv[1], "scm")) return scm_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 1 && !strcmp(argv[1], "udp-waiting")) return udp_waiting_mode();
  if (argc > 1 && !strcmp(argv[1], "udplite")) return udplite_mode();
  if (argc > 1 && !strcmp(argv[1], "options")) return options_mode();
  if (argc > 1 && !strcmp(argv[1], "icmp")) return icmp_mode();
  if (argc > 1 && !strcmp(argv[1], "reuseport")) return reuseport_mode();
  if (argc > 1 && !strcmp(argv[1], "unix-pending")) return unix_pending_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 2 && !strcmp(argv[1], "tcp-outside")) return tcp_outside_mode(argv[2]);
  if (argc > 1 && !strcmp(argv[1], "tcp-pending")) return tcp_pending_mode();
  if (argc > 1 && !strcmp(argv[1], "raw")) return raw_mode();
  if (argc > 1 && !strcmp(argv[1], "packet")) return packet_mode();
  if (argc > 1 && !strcmp(argv[1], "tcp-closing")) return tcp_closing_mode();
  if (argc > 1 && !strcmp(argv[1], "unix-peercred")) return unix_peercred_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 1 && !strcmp(argv[1], "unix-unlinked")) return unix_unlinked_mode(fx_dir(argc > 2 ? argv[2] : NULL));
  if (argc > 1 && !strcmp(argv[1], "netns")) {
    own_network();
    set_sysctl("/proc/sys/net/core/somaxconn", "321");
    set_sysctl("/proc/sys/net/ipv4/ip_local_port_range", "41000 41999");
  }
  int one = 1;
  struct sockaddr_in local4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int tcp4 = FX_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  FX_SYS(setsockopt(tcp4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  FX_SYS(bind(tcp4, (struct sockaddr *)&local4, sizeof local4));
  FX_SYS(listen(tcp4, 7));

  struct sockaddr_in6 local6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int tcp6 = FX_SYS(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  FX_SYS(setsockopt(tcp6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
  FX_SYS(setsockopt(tcp6, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  FX_SYS(bind(tcp6, (struct sockaddr *)&local6, sizeof local6));
  FX_SYS(listen(tcp6, 64));

  int udp_a = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0)), udp_b = FX_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  FX_SYS(bind(udp_a, (struct sockaddr *)&local4, sizeof local4));
  FX_SYS(bind(udp_b, (struct sockaddr *)&local4, sizeof local4));
  struct sockaddr_in peer = local4;
  peer.sin_port = htons((uint16_t)port_of(udp_b));
  FX_SYS(connect(udp_a, (struct sockaddr *)&peer, sizeof peer));

  int unbound = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int netlink = FX_SYS(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  struct sockaddr_nl nl = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
  FX_SYS(bind(netlink, (struct sockaddr *)&nl, sizeof nl));
  struct sockaddr_nl nl_before;
  socklen_t nl_length = sizeof nl_before;
  FX_SYS(getsockname(netlink, (struct sockaddr *)&nl_before, &nl_length));
  int ports[] = {port_of(tcp4), port_of(tcp6), port_of(udp_a), port_of(udp_b)};
  fx_ready();
  fx_wait_term();

  if (argc > 1 && !strcmp(argv[1], "netns")) {
    char value[64];
    read_sysctl("/proc/sys/net/core/somaxconn", value, sizeof value);
    FX_TRUE(!strcmp(value, "321"), "net.core.somaxconn is %s", value);
    read_sysctl("/proc/sys/net/ipv4/ip_local_port_range", value, sizeof value);
    FX_TRUE(!strcmp(value, "41000\t41999"), "net.ipv4.ip_local_port_range is %s", value);
  }
  struct sockaddr_nl nl_now;
  nl_length = sizeof nl_now;
  FX_EQ("getsockname of the netlink socket", 0, getsockname(netlink, (struct sockaddr *)&nl_now, &nl_length));
  FX_EQ("the netlink socket's groups", RTMGRP_LINK, nl_now.nl_groups);
  if (argc > 1 && !strcmp(argv[1], "netns")) FX_EQ("the netlink socket's port id", nl_before.nl_pid, nl_now.nl_pid);
  struct { struct nlmsghdr header; struct ifinfomsg info; } request = {
    .header = {.nlmsg_len = sizeof request, .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 7},
    .info = {.ifi_family = AF_UNSPEC},
  };
  FX_EQ("send of RTM_GETLINK", (long)sizeof request, send(netlink, &request, sizeof request, 0));
  static char reply[65536];
  ssize_t listed = recv(netlink, reply, sizeof reply, 0);
  FX_TRUE(listed > 0 && memmem(reply, (size_t)listed, "lo", 3) != NULL, "the netlink socket did not list loopback (%zd bytes)", listed);
  int now[] = {port_of(tcp4), port_of(tcp6), port_of(udp_a), port_of(udp_b)};
  for (int i = 0; i < 4; i++) FX_EQ("a bound port", ports[i], now[i]);
  FX_EQ("port of the unbound socket", 0, port_of(unbound));
  FX_EQ("SO_ACCEPTCONN of the IPv4 listener", 1, option(tcp4, SOL_SOCKET, SO_ACCEPTCONN));
  FX_EQ("SO_ACCEPTCONN of the IPv6 listener", 1, option(tcp6, SOL_SOCKET, SO_ACCEPTCONN));
  FX_EQ("SO_REUSEADDR", 1, option(tcp4, SOL_SOCKET, SO_REUSEADDR));
  FX_EQ("IPV6_V6ONLY", 1, option(tcp6, IPPROTO_IPV6, IPV6_V6ONLY));
  FX_EQ("TCP_NODELAY", 1, option(tcp6, IPPROTO_TCP, TCP_NODELAY));
  FX_EQ("O_NONBLOCK of the IPv4 listener", O_NONBLOCK, fcntl(tcp4, F_GETFL) & O_NONBLOCK);
  FX_EQ("FD_CLOEXEC of the IPv6 listener", FD_CLOEXEC, fcntl(tcp6, F_GETFD) & FD_CLOEXEC);
  FX_EQ("SO_TYPE of the UDP socket", SOCK_DGRAM, option(udp_a, SOL_SOCKET, SO_TYPE));
  serve_once(tcp4, AF_INET, "IPv4 listener");
  serve_once(tcp6, AF_INET6, "IPv6 listener");
  /* The UDP socket is still connected to its peer: send() needs no address. */
  ssize_t sent = send(udp_a, "hello", 5, 0);
  FX_TRUE(sent == 5, "UDP send: %s", strerror(errno));
  char datagram[16] = "";
  ssize_t got = recv(udp_b, datagram, sizeof datagram, MSG_DONTWAIT);
  for (int i = 0; got < 0 && errno == EAGAIN && i < 100; i++) {
    usleep(5000);
    got = recv(udp_b, datagram, sizeof datagram, MSG_DONTWAIT);
  }
  FX_TRUE(got == 5 && !memcmp(datagram, "hello", 5), "UDP: received %zd bytes", got);
  fx_finish();
}
