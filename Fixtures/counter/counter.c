/* counter: the demo program. It prints "ready", then every 100 ms a line "count N pid P" on stdout,
 * so a demo (or a test reading the output) can see it stop at the dump and carry on
 * from the same N after the restore. On SIGTERM it prints "PASS counter" and exits 0.
 * Its only check is that the counter agrees with a copy of it kept on the heap: a
 * restore that lost either copy prints FAIL.
 * The relative nanosleep is interrupted by the dump and reissued by the restore. The pid is
 * printed for people to look at; nothing depends on it.
 * usage: counter */
#include "fix.h"
#include <time.h>

static volatile sig_atomic_t term;
static void on_term(int s) { (void)s; term = 1; }

int main(void) {
  fx_init("counter");
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;                      /* no SA_RESTART: SIGTERM ends the sleep */
  FX_SYS(sigaction(SIGTERM, &sa, NULL));
  long *mirror = malloc(sizeof *mirror);
  if (!mirror) fx_setup_fail("malloc");
  long count = 0; *mirror = 0;
  fx_ready();
  while (!term) {
    fx_print("count %ld pid %d", count, (int)getpid());
    struct timespec d = {0, 100 * 1000 * 1000};
    nanosleep(&d, NULL);
    count++; ++*mirror;
  }
  FX_EQ("count vs heap mirror", count, *mirror);
  fx_finish();
}
