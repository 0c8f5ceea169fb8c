// SysV IPC objects, for the dump and restore of a container's IPC namespace: semctl(2) is
// variadic, and the ipc structs are passed here field by field.
#define _GNU_SOURCE
#include "ckshim.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>

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
