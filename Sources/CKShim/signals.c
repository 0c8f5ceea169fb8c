// Interruption by SIGINT/SIGTERM/SIGHUP: see ckshim.h.
#include <signal.h>
#include <string.h>
#include "ckshim.h"

static volatile sig_atomic_t received;

static void record(int signal) { received = signal; }

void ck_install_interrupt_handlers(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = record;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGHUP, &action, NULL);
}

int ck_interrupting_signal(void) { return received; }
