// SysV IPC objects, for the dump and restore of a container's IPC namespace: semctl(2) is
// variadic, and the ipc structs are passed here field by field.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ckshim.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/mqueue.h>
#include <sys/vfs.h>
#include <stdio.h>
#include <fcntl.h>

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif

static void from_perm(const struct ipc_perm *in, struct ck_ipc_perm *out) {
  out->key = in->__key;
  out->uid = in->uid;
  out->gid = in->gid;
  out->mode = in->mode;
}

int ck_ipc_stat(int kind, int id, struct ck_ipc_perm *perm) {
  memset(perm, 0, sizeof *perm);
  if (kind == CK_IPC_SHM) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0) return -1;
    from_perm(&ds.shm_perm, perm);
    perm->size = ds.shm_segsz;
    perm->count = ds.shm_nattch;
  } else if (kind == CK_IPC_SEM) {
    struct semid_ds ds;
    if (semctl(id, 0, IPC_STAT, &ds) < 0) return -1;
    from_perm(&ds.sem_perm, perm);
    perm->size = ds.sem_nsems;
  } else {
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) < 0) return -1;
    from_perm(&ds.msg_perm, perm);
    perm->size = ds.msg_qbytes;
    perm->count = ds.msg_qnum;
  }
  return 0;
}

int ck_ipc_set(int kind, int id, const struct ck_ipc_perm *perm) {
  if (kind == CK_IPC_SHM) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0) return -1;
    ds.shm_perm.uid = perm->uid;
    ds.shm_perm.gid = perm->gid;
    ds.shm_perm.mode = perm->mode & 0777;
    return shmctl(id, IPC_SET, &ds);
  } else if (kind == CK_IPC_SEM) {
    struct semid_ds ds;
    if (semctl(id, 0, IPC_STAT, &ds) < 0) return -1;
    ds.sem_perm.uid = perm->uid;
    ds.sem_perm.gid = perm->gid;
    ds.sem_perm.mode = perm->mode & 0777;
    return semctl(id, 0, IPC_SET, &ds);
  } else {
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) < 0) return -1;
    ds.msg_perm.uid = perm->uid;
    ds.msg_perm.gid = perm->gid;
    ds.msg_perm.mode = perm->mode & 0777;
    ds.msg_qbytes = perm->size;
    return msgctl(id, IPC_SET, &ds);
  }
}

int ck_ipc_create(int kind, int32_t key, uint64_t size, uint32_t mode) {
  int flags = IPC_CREAT | IPC_EXCL | (int)(mode & 0777);
  if (kind == CK_IPC_SHM) return shmget(key, size, flags);
  if (kind == CK_IPC_SEM) return semget(key, (int)size, flags);
  return msgget(key, flags);
}

int ck_ipc_remove(int kind, int id) {
  if (kind == CK_IPC_SHM) return shmctl(id, IPC_RMID, NULL);
  if (kind == CK_IPC_SEM) return semctl(id, 0, IPC_RMID);
  return msgctl(id, IPC_RMID, NULL);
}

void *ck_shm_attach(int id, int writable) {
  void *address = shmat(id, NULL, writable ? 0 : SHM_RDONLY);
  return address == (void *)-1 ? NULL : address;
}

int ck_shm_detach(const void *address) { return shmdt(address); }

int ck_sem_getall(int id, uint16_t *values) { return semctl(id, 0, GETALL, values); }

int ck_sem_setall(int id, const uint16_t *values) { return semctl(id, 0, SETALL, values); }

long ck_msg_copy(int id, long index, long *type, void *text, size_t capacity) {
  struct { long type; char text[]; } *message = malloc(sizeof(long) + capacity);
  if (!message) { errno = ENOMEM; return -1; }
  ssize_t n = msgrcv(id, message, capacity, index, IPC_NOWAIT | MSG_COPY);
  if (n >= 0) {
    *type = message->type;
    memcpy(text, message->text, (size_t)n);
  }
  int saved = errno;
  free(message);
  errno = saved;
  return n;
}

int ck_msg_send(int id, long type, const void *text, size_t size) {
  struct { long type; char text[]; } *message = malloc(sizeof(long) + size);
  if (!message) { errno = ENOMEM; return -1; }
  message->type = type;
  memcpy(message->text, text, size);
  int result = msgsnd(id, message, size, IPC_NOWAIT);
  int saved = errno;
  free(message);
  errno = saved;
  return result;
}

// A deadline already past: the timed calls then never wait.
static const struct timespec past = {0, 0};

int ck_mq_capture(pid_t pid, int fd, struct ck_mq_attr *out, void *buffer, size_t capacity, uint32_t *lengths,
                  uint32_t *priorities, int max_messages, int *count) {
  *count = 0;
  // A description of our own, read-write and non-blocking, through the descriptor's magic
  // link: the task's may be read-only, and the messages must go back in.
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
  int ours = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (ours < 0) return -errno;
  struct mq_attr attr;
  int err = 0;
  if (syscall(SYS_mq_getsetattr, ours, NULL, &attr) < 0) {
    err = -errno;
    goto done;
  }
  out->flags = attr.mq_flags;
  out->max_messages = attr.mq_maxmsg;
  out->message_size = attr.mq_msgsize;
  out->current = attr.mq_curmsgs;
  if (attr.mq_curmsgs > max_messages || (size_t)(attr.mq_curmsgs * attr.mq_msgsize) > capacity) {
    err = -E2BIG;
    goto done;
  }
  size_t used = 0;
  for (long i = 0; i < attr.mq_curmsgs; i++) {
    unsigned int priority = 0;
    long n = syscall(SYS_mq_timedreceive, ours, (char *)buffer + used, (size_t)attr.mq_msgsize, &priority, &past);
    if (n < 0) {
      err = -errno;
      break;
    }
    lengths[*count] = (uint32_t)n;
    priorities[*count] = priority;
    (*count)++;
    used += (size_t)n;
  }
  // Back in the order taken: the queue holds them as before (by priority, then age).
  int refill = ck_mq_fill(ours, buffer, lengths, priorities, *count);
  if (!err) err = refill;
done:
  close(ours);
  return err;
}

int ck_mq_fill(int fd, const void *buffer, const uint32_t *lengths, const uint32_t *priorities, int count) {
  size_t used = 0;
  for (int i = 0; i < count; i++) {
    if (syscall(SYS_mq_timedsend, fd, (const char *)buffer + used, (size_t)lengths[i], priorities[i], &past) < 0) return -errno;
    used += lengths[i];
  }
  return 0;
}

long ck_fs_magic(const char *path) {
  struct statfs fs;
  return statfs(path, &fs) < 0 ? -errno : (long)fs.f_type;
}
