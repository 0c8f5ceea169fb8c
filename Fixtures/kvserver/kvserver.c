/* kvserver: a small key-value server over TCP, and its client, for the migration tests
 * (a container moved to another host while a client keeps a connection and asks).
 *
 * kvserver serve PORT [MIB]: listens on 0.0.0.0:PORT, serves any number of clients with
 *   poll; each line is a command: "SET k v" -> "OK", "GET k" -> "VALUE v" or "NONE",
 *   "INCR k" -> the new value. With MIB, it holds MIB MiB of memory and writes 20 MiB of it
 *   a second in random pages (a container whose memory changes while it moves). Prints
 *   "ready" once listening; on SIGTERM it checks that its table is consistent (each key
 *   once, the memory's checksum pages as written) and prints PASS.
 * kvserver client HOST PORT COUNT [KEY]: one connection; COUNT times, every 20 ms, "INCR
 *   KEY" (default n), each reply must be the previous one plus one (no reply lost,
 *   repeated, or from a fresh server; no reset; a redis server's ":N" replies too); prints "client: COUNT replies, first F,
 *   max wait W ms (the longest a reply took)" and exits 0, or "client: ..." with what went wrong and exits 1. Stops by
 *   itself after COUNT requests (or a reply that takes 30 s). */
#include "fix.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#define KEYS 256
#define CLIENTS 32
#define LINE 256

static char keys[KEYS][64], values[KEYS][128];
static int nkeys;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int slot(const char *key, int make) {
  for (int i = 0; i < nkeys; i++)
    if (!strcmp(keys[i], key)) return i;
  if (!make || nkeys == KEYS) return -1;
  snprintf(keys[nkeys], sizeof keys[0], "%s", key);
  values[nkeys][0] = 0;
  return nkeys++;
}

/* One command line -> the reply (with its newline). */
static void answer(char *line, char *reply, size_t size) {
  char *verb = strtok(line, " "), *key = strtok(NULL, " "), *value = strtok(NULL, "");
  if (!verb || !key) { snprintf(reply, size, "ERROR\n"); return; }
  if (!strcmp(verb, "SET") && value) {
    int i = slot(key, 1);
    if (i < 0) { snprintf(reply, size, "FULL\n"); return; }
    snprintf(values[i], sizeof values[0], "%s", value);
    snprintf(reply, size, "OK\n");
  } else if (!strcmp(verb, "GET")) {
    int i = slot(key, 0);
    if (i < 0) snprintf(reply, size, "NONE\n");
    else snprintf(reply, size, "VALUE %s\n", values[i]);
  } else if (!strcmp(verb, "INCR")) {
    int i = slot(key, 1);
    if (i < 0) { snprintf(reply, size, "FULL\n"); return; }
    long n = atol(values[i]) + 1;
    snprintf(values[i], sizeof values[0], "%ld", n);
    snprintf(reply, size, "%ld\n", n);
  } else {
    snprintf(reply, size, "ERROR\n");
  }
}

struct client { int fd; char buffer[LINE]; size_t used; };

/* Memory the server keeps changing: each page starts with its index and a generation, the
 * rest filled from them, and its generation kept apart too, so that the end can check
 * every page, and that none came back older than it was. */
static uint64_t *memory, *generations;
static size_t pages;

static void write_page(size_t index, uint64_t generation) {
  uint64_t *page = memory + index * 512;
  generations[index] = generation;
  page[0] = index;
  page[1] = generation;
  for (int w = 2; w < 512; w += 61) page[w] = index * 31 + generation;
}

static int check_pages(void) {
  for (size_t i = 0; i < pages; i++) {
    uint64_t *page = memory + i * 512;
    if (page[0] != i || page[1] != generations[i]) return 0;
    for (int w = 2; w < 512; w += 61)
      if (page[w] != i * 31 + page[1]) return 0;
  }
  return 1;
}

static int serve(int port, long mib) {
  fx_term_setup();
  if (mib > 0) {
    pages = (size_t)mib * 256;
    memory = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    generations = calloc(pages, sizeof *generations);
    if (memory == MAP_FAILED || !generations) fx_setup_fail("mmap %ld MiB", mib);
    for (size_t i = 0; i < pages; i++) write_page(i, 0);
  }
  int listener = FX_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int one = 1;
  FX_SYS(setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
  FX_SYS(bind(listener, (struct sockaddr *)&address, sizeof address));
  FX_SYS(listen(listener, 16));
  static struct client clients[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) clients[i].fd = -1;
  fx_ready();
  uint64_t rng = 7, generation = 0;
  double last = now_ms();
  while (!fx_term) {
    struct pollfd polled[CLIENTS + 1];
    polled[0] = (struct pollfd){.fd = listener, .events = POLLIN};
    for (int i = 0; i < CLIENTS; i++) polled[i + 1] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
    /* fx_term_setup blocks SIGTERM: it may arrive only inside the wait. */
    struct timespec tick = {0, 10 * 1000 * 1000};
    sigset_t open_mask;
    sigemptyset(&open_mask);
    int ready = ppoll(polled, CLIENTS + 1, &tick, &open_mask);
    if (pages) {
      /* 20 MiB a second: 5120 pages, spread over the time since the last round. */
      double t = now_ms();
      size_t count = (size_t)((t - last) * 5.12);
      if (count > 0) last = t;
      generation++;
      for (size_t k = 0; k < count; k++) write_page(fx_rng(&rng) % pages, generation);
    }
    if (ready <= 0) continue;
    if (polled[0].revents & POLLIN) {
      int fd = accept(listener, NULL, NULL);
      for (int i = 0; fd >= 0 && i < CLIENTS; i++)
        if (clients[i].fd < 0) { clients[i].fd = fd; clients[i].used = 0; fd = -1; }
      if (fd >= 0) close(fd);
    }
    for (int i = 0; i < CLIENTS; i++) {
      struct client *c = &clients[i];
      if (c->fd < 0 || !(polled[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(c->fd, c->buffer + c->used, sizeof c->buffer - 1 - c->used);
      if (n <= 0) { close(c->fd); c->fd = -1; continue; }
      c->used += n;
      char *end;
      while ((end = memchr(c->buffer, '\n', c->used))) {
        *end = 0;
        char reply[LINE];
        answer(c->buffer, reply, sizeof reply);
        fx_write(c->fd, reply, strlen(reply));
        size_t consumed = end + 1 - c->buffer;
        memmove(c->buffer, end + 1, c->used - consumed);
        c->used -= consumed;
      }
      if (c->used == sizeof c->buffer - 1) c->used = 0;
    }
  }
  for (int i = 0; i < nkeys; i++)
    for (int j = i + 1; j < nkeys; j++) FX_TRUE(strcmp(keys[i], keys[j]), "key %s twice", keys[i]);
  FX_TRUE(!pages || check_pages(), "a page of the changing memory is not as written");
  fx_finish();
}

static int client(const char *host, int port, long count, const char *key) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (fd < 0 || inet_pton(AF_INET, host, &address.sin_addr) != 1 ||
      connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
    printf("client: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
    return 1;
  }
  struct timeval limit = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  long first = 0, previous = 0;
  double gap = 0, last = now_ms();
  char line[LINE];
  snprintf(line, sizeof line, "INCR %s\n", key);
  for (long i = 0; i < count; i++) {
    if (write(fd, line, strlen(line)) < 0) {
      printf("client: request %ld: %s\n", i, strerror(errno));
      return 1;
    }
    char reply[LINE];
    size_t used = 0;
    while (used == 0 || reply[used - 1] != '\n') {
      ssize_t n = read(fd, reply + used, sizeof reply - 1 - used);
      if (n <= 0) {
        printf("client: reply %ld: %s\n", i, n == 0 ? "connection closed" : strerror(errno));
        return 1;
      }
      used += n;
    }
    reply[used] = 0;
    /* redis answers INCR with ":N\r\n" (its inline commands take the same request). */
    long value = atol(reply[0] == ':' ? reply + 1 : reply);
    if (i == 0) first = value;
    else if (value != previous + 1) {
      printf("client: reply %ld is %ld after %ld\n", i, value, previous);
      return 1;
    }
    previous = value;
    double t = now_ms();
    if (t - last > gap) gap = t - last;
    last = t;
    usleep(20000);
    last += 20;
  }
  printf("client: %ld replies, first %ld, max wait %.0f ms\n", count, first, gap);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 3 && !strcmp(argv[1], "serve")) {
    fx_init("kvserver");
    return serve(atoi(argv[2]), argc > 3 ? atol(argv[3]) : 0);
  }
  if (argc >= 5 && !strcmp(argv[1], "client")) return client(argv[2], atoi(argv[3]), atol(argv[4]), argc > 5 ? argv[5] : "n");
  fprintf(stderr, "usage: kvserver serve PORT [MIB] | kvserver client HOST PORT COUNT [KEY]\n");
  return 2;
}
