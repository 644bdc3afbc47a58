/*
 * A byte tap: something that must see a stream's bytes exactly once and in order (a
 * digest being computed), fed by read jobs that run on libuv's thread pool. sha256.c
 * creates taps (createTap); read-into.c feeds one right after each read, on the worker
 * thread that did the read, while the bytes are still in that core's cache.
 *
 * Why: hashing a chunk on the JS thread just after another core copied it out of the page
 * cache runs at memory speed (measured ~1.0 GB/s on our CI machines, against 1.8 GB/s from
 * cache), and the JS thread then does nothing else. Read and hash on the same worker, two
 * chunks in flight, run at ~1.2 GB/s with the JS thread idle.
 *
 * Order: each job takes a ticket on the JS thread when it is queued (tap_ticket); on its
 * worker it waits until every earlier ticket is done (tap_wait_turn), feeds, and passes
 * the turn on (tap_end_turn). libuv starts queued work in order, so the job waited for has
 * always started and will finish: no deadlock, whatever the pool size. A job whose read
 * failed ends its turn with ok = 0, which breaks the tap: its digest is then refused. A
 * job that never runs (cancelled) abandons the tap, which releases every later turn.
 *
 * The tap is an External with BLOBCORE_TAP_TAG, so another addon can check what it was
 * given before using the pointer (both addons include this header).
 */
#ifndef BLOBCORE_BYTE_TAP_H
#define BLOBCORE_BYTE_TAP_H

#include <node_api.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "napi-util.h"

typedef struct blobcore_tap blobcore_tap_t;

struct blobcore_tap {
  void (*update)(blobcore_tap_t *tap, const void *data, size_t length);
  pthread_mutex_t lock;
  pthread_cond_t turn;
  uint64_t issued; /* tickets handed out; JS thread only */
  uint64_t fed;    /* tickets done; under lock */
  int broken;      /* a ticket passed without its bytes; under lock */
  int abandoned;   /* a ticket will never be done (its job never ran): no turn comes again; under lock */
};

static const napi_type_tag BLOBCORE_TAP_TAG = {0x626c6f62636f7265ULL, 0x2d627974652d7461ULL};

static inline int tap_init(blobcore_tap_t *tap, void (*update)(blobcore_tap_t *, const void *, size_t)) {
  tap->update = update;
  tap->issued = 0;
  tap->fed = 0;
  tap->broken = 0;
  tap->abandoned = 0;
  if (pthread_mutex_init(&tap->lock, NULL) != 0) return 0;
  if (pthread_cond_init(&tap->turn, NULL) != 0) {
    pthread_mutex_destroy(&tap->lock);
    return 0;
  }
  return 1;
}

static inline void tap_destroy(blobcore_tap_t *tap) {
  pthread_cond_destroy(&tap->turn);
  pthread_mutex_destroy(&tap->lock);
}

/* The next place in line. JS thread only, in the order the bytes come in the stream. */
static inline uint64_t tap_ticket(blobcore_tap_t *tap) {
  return tap->issued++;
}

/*
 * Waits until every earlier ticket is done: from then until tap_end_turn this thread alone
 * may call tap->update. Returns 0 when it must not feed: the tap is broken (bytes went
 * missing before this turn) or abandoned (an earlier ticket will never be done, so this
 * turn never comes). Either way, call tap_end_turn next.
 */
static inline int tap_wait_turn(blobcore_tap_t *tap, uint64_t ticket) {
  pthread_mutex_lock(&tap->lock);
  while (tap->fed != ticket && !tap->abandoned) pthread_cond_wait(&tap->turn, &tap->lock);
  int usable = tap->fed == ticket && !tap->broken && !tap->abandoned;
  pthread_mutex_unlock(&tap->lock);
  return usable;
}

/* Passes `ticket`'s turn on; ok = 0 says its bytes did not all reach the tap. */
static inline void tap_end_turn(blobcore_tap_t *tap, uint64_t ticket, int ok) {
  pthread_mutex_lock(&tap->lock);
  if (!ok) tap->broken = 1;
  if (tap->fed == ticket) tap->fed++;
  pthread_cond_broadcast(&tap->turn);
  pthread_mutex_unlock(&tap->lock);
}

/* `ticket`'s job will never run (cancelled, or never queued): release every later turn. */
static inline void tap_abandon(blobcore_tap_t *tap) {
  pthread_mutex_lock(&tap->lock);
  tap->abandoned = 1;
  tap->broken = 1;
  pthread_cond_broadcast(&tap->turn);
  pthread_mutex_unlock(&tap->lock);
}

/* Feeds `length` bytes at `ticket`'s turn, in one go. */
static inline void tap_feed(blobcore_tap_t *tap, uint64_t ticket, const void *data, size_t length) {
  if (tap_wait_turn(tap, ticket) && length > 0) tap->update(tap, data, length);
  tap_end_turn(tap, ticket, 1);
}

/* The tap behind a JS value; NULL (and a TypeError thrown) if it is not one. */
static inline blobcore_tap_t *get_tap(napi_env env, napi_value value) {
  bool tagged = false;
  void *data = NULL;
  if (napi_check_object_type_tag(env, value, &BLOBCORE_TAP_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    throw_type_error(env, "expected a tap from createTap()");
    return NULL;
  }
  return data;
}

#endif
