/* sysv-ipc: the SysV objects of the container's own IPC namespace come back with their ids,
 * keys, modes and contents, and an attached segment stays shared between processes.
 *
 * pid 1 creates (ids chosen by the kernel, kept in memory, must stay valid):
 *  - segment A, key 0x5e9a, 1 MiB + 100 bytes, mode 0640, filled with a pattern, attached
 *    read-write by pid 1 and by a child it forks (inherited), and attached read-only at a
 *    second address by pid 1;
 *  - segment B, IPC_PRIVATE, 8 KiB holding "private segment", not attached at all;
 *  - segment C, IPC_PRIVATE, attached and then removed (IPC_RMID): it lives while attached;
 *  - a semaphore set, key 0x5e9b, three semaphores 7, 0, 32767 (SEMVMX), mode 0600;
 *  - a message queue, key 0x5e9c, holding "first" (type 3) then "second message" (type 1).
 * A second semaphore set is created and removed first, so that ids are not all 0.
 * After SIGTERM: every id still names the same object (by key where it has one), the
 * contents, values, modes and messages (in order) are as before; pid 1 writes a token into
 * segment A and the child must see it, and answer; segment C is still marked removed
 * (SHM_DEST: it goes with its last detach) and still mapped with its bytes.
 */
#include "fix.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define SIZE_A ((1 << 20) + 100)
static volatile uint64_t *a;

/* Objects left by an earlier run in the host's namespace (the refusal test runs there). */
static void remove_keyed(void) {
  int id;
  if ((id = shmget(0x5e9a, 0, 0)) >= 0) shmctl(id, IPC_RMID, NULL);
  if ((id = semget(0x5e9b, 0, 0)) >= 0) semctl(id, 0, IPC_RMID);
  if ((id = msgget(0x5e9c, 0)) >= 0) msgctl(id, IPC_RMID, NULL);
}

int main(void) {
  fx_init("sysv-ipc");
  fx_term_setup();
  remove_keyed();
  int scratch = FX_SYS(semget(IPC_PRIVATE, 1, IPC_CREAT | 0600));
  FX_SYS(semctl(scratch, 0, IPC_RMID));
  int id_a = FX_SYS(shmget(0x5e9a, SIZE_A, IPC_CREAT | IPC_EXCL | 0640));
  a = shmat(id_a, NULL, 0);
  if (a == (void *)-1) fx_setup_fail("shmat A");
  const char *a_ro = shmat(id_a, NULL, SHM_RDONLY);
  if (a_ro == (void *)-1) fx_setup_fail("shmat A read-only");
  uint64_t seed = fx_seed(11);
  for (size_t i = 2; i < SIZE_A / 8; i++) a[i] = fx_rng(&seed);
  int id_b = FX_SYS(shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600));
  char *b = shmat(id_b, NULL, 0);
  if (b == (void *)-1) fx_setup_fail("shmat B");
  strcpy(b, "private segment");
  FX_SYS(shmdt(b));
  int id_c = FX_SYS(shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600));
  char *c = shmat(id_c, NULL, 0);
  if (c == (void *)-1) fx_setup_fail("shmat C");
  strcpy(c, "removed but attached");
  FX_SYS(shmctl(id_c, IPC_RMID, NULL));
  int sem = FX_SYS(semget(0x5e9b, 3, IPC_CREAT | IPC_EXCL | 0600));
  unsigned short values[3] = {7, 0, 32767};
  FX_SYS(semctl(sem, 0, SETALL, values));
  int queue = FX_SYS(msgget(0x5e9c, IPC_CREAT | IPC_EXCL | 0620));
  struct { long type; char text[64]; } message = {3, "first"};
  FX_SYS(msgsnd(queue, &message, 6, 0));
  message.type = 1;
  strcpy(message.text, "second message");
  FX_SYS(msgsnd(queue, &message, 15, 0));

  pid_t child = FX_SYS(fork());
  if (child == 0) {
    fx_wait_term();
    int ok = fx_await(&a[0], 0xA11CE);
    a[1] = 0xB0B;
    uint64_t check = fx_seed(11);
    for (size_t i = 2; i < SIZE_A / 8; i++)
      if (a[i] != fx_rng(&check)) { ok = 0; break; }
    _exit(ok ? 0 : 1);
  }
  fx_ready();
  fx_wait_term();

  FX_EQ("shmget of key 0x5e9a", id_a, shmget(0x5e9a, 0, 0));
  struct shmid_ds ds;
  FX_EQ("IPC_STAT of segment A", 0, shmctl(id_a, IPC_STAT, &ds));
  FX_EQ("size of segment A", SIZE_A, ds.shm_segsz);
  FX_EQ("mode of segment A", 0640, ds.shm_perm.mode & 0777);
  a[0] = 0xA11CE;
  fx_stop_child(child, "the child did not see pid 1's write or lost the pattern");
  FX_TRUE(fx_await(&a[1], 0xB0B), "pid 1 did not see the child's write");
  FX_EQ("the read-only attachment sees the token", 0xA11CE, *(const volatile uint64_t *)a_ro);
  uint64_t check = fx_seed(11);
  if (fx_flip()) a[100] ^= 1;
  for (size_t i = 2; i < SIZE_A / 8; i++)
    if (a[i] != fx_rng(&check)) { fx_bad("segment A differs at word %zu", i); break; }
  b = shmat(id_b, NULL, SHM_RDONLY);
  FX_TRUE(b != (void *)-1 && !strcmp(b, "private segment"), "segment B (id %d) is lost or changed", id_b);
  FX_TRUE(!strcmp(c, "removed but attached"), "segment C's mapping lost its bytes");
  FX_EQ("IPC_STAT of segment C", 0, shmctl(id_c, IPC_STAT, &ds));
  FX_TRUE(ds.shm_perm.mode & SHM_DEST, "segment C is no longer marked removed (mode %#o)", ds.shm_perm.mode);
  FX_EQ("semget of key 0x5e9b", sem, semget(0x5e9b, 0, 0));
  unsigned short now[3] = {1, 1, 1};
  FX_EQ("GETALL", 0, semctl(sem, 0, GETALL, now));
  FX_EQ("semaphore 0", 7, now[0]);
  FX_EQ("semaphore 1", 0, now[1]);
  FX_EQ("semaphore 2", 32767, now[2]);
  FX_EQ("msgget of key 0x5e9c", queue, msgget(0x5e9c, 0));
  struct msqid_ds qs;
  FX_EQ("IPC_STAT of the queue", 0, msgctl(queue, IPC_STAT, &qs));
  FX_EQ("mode of the queue", 0620, qs.msg_perm.mode & 0777);
  FX_EQ("first message size", 6, msgrcv(queue, &message, sizeof message.text, 0, IPC_NOWAIT));
  FX_TRUE(message.type == 3 && !strcmp(message.text, "first"), "first message: type %ld \"%s\"", message.type, message.text);
  FX_EQ("second message size", 15, msgrcv(queue, &message, sizeof message.text, 0, IPC_NOWAIT));
  FX_TRUE(message.type == 1 && !strcmp(message.text, "second message"), "second message: type %ld \"%s\"", message.type, message.text);
  remove_keyed();
  shmctl(id_b, IPC_RMID, NULL);
  fx_finish();
}
