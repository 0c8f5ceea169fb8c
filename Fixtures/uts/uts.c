/* uts: the host and domain name of the container's own UTS namespace come back.
 *
 *   uts
 *
 * As pid 1 of its own UTS namespace (launch makes one) it sets the host name
 * "ckcont-uts-fixture" and the domain name "ckcont.example" before "ready"; after SIGTERM
 * both must read the same again (a restore into a fresh namespace starts from the host's).
 */
#include "fix.h"

int main(void) {
  fx_init("uts");
  fx_term_setup();
  static const char host[] = "ckcont-uts-fixture", domain[] = "ckcont.example";
  FX_SYS(sethostname(host, strlen(host)));
  FX_SYS(setdomainname(domain, strlen(domain)));
  fx_ready();
  fx_wait_term();
  char now[128] = "";
  FX_SYS(gethostname(now, sizeof now));
  if (fx_flip()) now[0] ^= 1;
  FX_TRUE(!strcmp(now, host), "host name \"%s\", expected \"%s\"", now, host);
  memset(now, 0, sizeof now);
  FX_SYS(getdomainname(now, sizeof now));
  FX_TRUE(!strcmp(now, domain), "domain name \"%s\", expected \"%s\"", now, domain);
  fx_finish();
}
