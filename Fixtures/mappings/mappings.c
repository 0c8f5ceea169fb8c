/* mappings: protections, contents and the file backing of several kinds of mapping survive a restore.
 *   ro    3 anon pages, written, then mprotect(PROT_READ). After: "r--p" and the pattern.
 *   none  4 anon pages, written, then mprotect(PROT_NONE), a guard region whose contents must
 *         still be saved. After: "---p"; then mprotect(RW) and the pattern must be there.
 *   fm    a MAP_PRIVATE, PROT_READ|WRITE mapping of a 128 KiB file it creates. Pages 1, 7, 8, 31
 *         are modified in memory (copy-on-write), pages 0, 2-6 only read, the rest untouched.
 *         After: the modified pages show the modifications, all others show the file, and the
 *         file itself is unchanged. Then, because Linux shares the page cache with pages of a
 *         private mapping that were never written, a pwrite to the file must show in untouched
 *         page 20 but not in modified page 8. This catches a restore that copied every page
 *         into anonymous memory instead of mapping the file and writing only the COW'd pages.
 *   fm2   a read-only MAP_PRIVATE mapping of file pages 16-23 (file offset 64 KiB). After: "r--p",
 *         offset 00010000, and the file contents.
 * The file descriptor is closed before "ready": only the mappings hold the file.
 * usage: mappings [DIR]   (file DIR/ckcont-mappings-XXXXXX; default $CKCONT_FIXTURE_DIR or /tmp;
 *                          removed at exit) */
#include "fix.h"
#include <fcntl.h>
#include <sys/mman.h>

#define PG 4096
#define FPAGES 32
static uint8_t fbyte(size_t off) { return (uint8_t)((off / PG) * 37 + off * 11 + 3); }   /* the file */
static uint8_t mbyte(size_t off) { return (uint8_t)~fbyte(off) ^ 0x40; }               /* modifications */
static uint8_t abyte(int which, size_t off) { return (uint8_t)(which * 101 + off * 7 + (off >> 12)); }

/* The /proc/self/maps line whose range contains [addr, addr+len), or "" if there is none. */
static const char *maps_line(const void *addr, size_t len) {
  static char line[600];
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) fx_setup_fail("open /proc/self/maps");
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= (uintptr_t)addr && (uintptr_t)addr + len <= e) {
      fclose(f); line[strcspn(line, "\n")] = 0; return line;
    }
  }
  fclose(f); return "";
}
static void expect_maps(const char *what, const void *addr, size_t len, const char *perms, const char *off, const char *path) {
  const char *l = maps_line(addr, len);
  char p[8] = "", o[20] = "";
  sscanf(l, "%*s %7s %19s", p, o);
  int ok = !strcmp(p, perms) && (!off || !strcmp(o, off)) && (!path || strstr(l, path));
  FX_TRUE(ok, "%s: expected perms %s%s%s%s%s, maps line is \"%s\"", what, perms, off ? " offset " : "", off ? off : "",
          path ? " path " : "", path ? path : "", l);
}
static size_t first_diff(const uint8_t *p, size_t base, size_t n, int modified) {
  for (size_t j = 0; j < n; j++) if (p[j] != (modified ? mbyte(base + j) : fbyte(base + j))) return j;
  return n;
}

int main(int argc, char **argv) {
  fx_init("mappings");
  fx_term_setup();
  char path[4096];
  snprintf(path, sizeof path, "%s/ckcont-mappings-XXXXXX", fx_dir(argc > 1 ? argv[1] : NULL));
  int fd = FX_SYS(mkstemp(path));
  char *real = realpath(path, NULL);             /* the spelling /proc/self/maps uses */
  if (!real) fx_setup_fail("realpath %s", path);
  static uint8_t fbuf[FPAGES * PG];
  for (size_t j = 0; j < sizeof fbuf; j++) fbuf[j] = fbyte(j);
  if (write(fd, fbuf, sizeof fbuf) != (ssize_t)sizeof fbuf) fx_setup_fail("write %s", path);

  uint8_t *ro = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *none = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *fm = mmap(NULL, FPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  uint8_t *fm2 = mmap(NULL, 8 * PG, PROT_READ, MAP_PRIVATE, fd, 16 * PG);
  if (ro == MAP_FAILED || none == MAP_FAILED || fm == MAP_FAILED || fm2 == MAP_FAILED) fx_setup_fail("mmap");
  close(fd);
  for (size_t j = 0; j < 3 * PG; j++) ro[j] = abyte(1, j);
  for (size_t j = 0; j < 4 * PG; j++) none[j] = abyte(2, j);
  FX_SYS(mprotect(ro, 3 * PG, PROT_READ));
  FX_SYS(mprotect(none, 4 * PG, PROT_NONE));
  /* modified ranges of fm: {offset, length} */
  static const size_t mods[][2] = {{1 * PG, 1}, {7 * PG + 1000, 100}, {8 * PG, PG}, {32 * PG - 1, 1}};
  for (int m = 0; m < 4; m++) for (size_t j = 0; j < mods[m][1]; j++) fm[mods[m][0] + j] = mbyte(mods[m][0] + j);
  volatile uint8_t sink = 0;
  for (int pg = 0; pg <= 6; pg++) sink += fm[pg * PG + 5];     /* read-only touches */
  sink += fm2[3 * PG];
  (void)sink;

  fx_ready();
  fx_wait_term();

  expect_maps("read-only anon", ro, 3 * PG, "r--p", NULL, NULL);
  expect_maps("PROT_NONE anon", none, 4 * PG, "---p", NULL, NULL);
  expect_maps("private file mapping", fm, FPAGES * PG, "rw-p", "00000000", real);
  expect_maps("read-only file mapping at 64 KiB", fm2, 8 * PG, "r--p", "00010000", real);
  size_t j;
  for (j = 0; j < 3 * PG && ro[j] == abyte(1, j); j++) {}
  FX_TRUE(j == 3 * PG, "read-only anon differs at offset %zu", j);
  if (mprotect(none, 4 * PG, PROT_READ | PROT_WRITE)) fx_bad("mprotect(PROT_NONE region, RW): %s", strerror(errno));
  else {
    if (fx_flip()) none[3 * PG + 17] ^= 1;
    for (j = 0; j < 4 * PG && none[j] == abyte(2, j); j++) {}
    if (j < 4 * PG) fx_bad("PROT_NONE region differs at offset %zu: expected %#x got %#x", j, abyte(2, j), none[j]);
  }
  if (fx_flip()) fm[3 * PG] ^= 1;                 /* an unmodified page */
  if (fx_flip()) fm[7 * PG + 1050] ^= 1;          /* inside a modification */
  for (size_t pos = 0; pos < FPAGES * PG;) {      /* walk the file mapping range by range */
    size_t end = FPAGES * PG; int modified = 0;
    for (int m = 0; m < 4; m++) {
      if (pos >= mods[m][0] && pos < mods[m][0] + mods[m][1]) { modified = 1; end = mods[m][0] + mods[m][1]; break; }
      if (mods[m][0] > pos && mods[m][0] < end) end = mods[m][0];
    }
    size_t d = first_diff(fm + pos, pos, end - pos, modified);
    if (d < end - pos) fx_bad("file mapping page %zu offset %zu (%s): expected %#x got %#x", (pos + d) / PG, (pos + d) % PG,
                              modified ? "modified in memory" : "file contents", modified ? mbyte(pos + d) : fbyte(pos + d), fm[pos + d]);
    pos = end;
  }
  for (j = 0; j < 8 * PG && fm2[j] == fbyte(16 * PG + j); j++) {}
  FX_TRUE(j == 8 * PG, "read-only file mapping differs at offset %zu", j);

  fd = open(path, O_RDWR);
  if (fd < 0) fx_bad("reopen %s: %s", path, strerror(errno));
  else {
    static uint8_t now[FPAGES * PG + 1];
    ssize_t n = pread(fd, now, sizeof now, 0);
    if (fx_flip()) now[9 * PG] ^= 1;
    FX_EQ("file size", sizeof fbuf, n);
    for (j = 0; j < sizeof fbuf && now[j] == fbuf[j]; j++) {}
    FX_TRUE(j == sizeof fbuf, "file changed at offset %zu", j);
    /* Untouched private pages still share the page cache; modified ones do not. */
    uint8_t x = 0xee, y = 0xdd;
    if (pwrite(fd, &x, 1, 20 * PG + 9) != 1 || pwrite(fd, &y, 1, 8 * PG + 9) != 1) fx_setup_fail("pwrite");
    FX_EQ("untouched private page 20 after pwrite to the file", x, fm[20 * PG + 9]);
    FX_EQ("modified private page 8 after pwrite to the file", mbyte(8 * PG + 9), fm[8 * PG + 9]);
    close(fd);
  }
  unlink(path);
  fx_finish();
}
