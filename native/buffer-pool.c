/*
 * blobcore_buffers: a pool of equal-sized read buffers whose memory is reused only after
 * JavaScript has let go of it.
 *
 * Why: a stream read hands every chunk to its consumer in a new Buffer. Fresh memory must
 * be faulted in page by page, and on a VM that returns freed memory to its host (free
 * page reporting, ballooning) each of those faults is a trip to the host: measured, it
 * halves a 256 MiB read from the page cache (3.3 → 0.7 GB/s) on our CI machines. Reusing
 * memory that is already resident removes that cost, but a JS-side pool cannot know when
 * a consumer is done with a chunk. V8 can: each chunk here is an external Buffer over a
 * slab we own, and its finalizer (run on the JS thread once the Buffer and every view of
 * it are collected) puts the slab back on the free list. A retained chunk is simply never
 * recycled; nothing is ever overwritten while JavaScript can still see it.
 *
 * Every pool operation runs on the JS thread of the environment that created the pool
 * (Node runs external-buffer finalizers there, also at teardown, before the pool's own
 * finalizer), so no locking is needed.
 *
 * Exports:
 *   createPool(slabBytes, maxIdle): External  a pool of slabBytes-sized slabs; at most
 *                                              maxIdle idle slabs are kept, the rest freed
 *   take(pool): Buffer | undefined            a slab (recycled when one is idle), or
 *                                              undefined when this runtime refuses external
 *                                              buffers or memory is short (use a plain Buffer)
 *   trim(pool): number                        frees every idle slab; returns how many
 *   stats(pool): { idle, lent }               idle slabs and slabs lent to JavaScript
 *   readInto(fd, buffer, position, tap?)      a read on the thread pool that can feed a
 *                                              byte tap there (read-into.c)
 */
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "napi-util.h"
#include "read-into.h"

typedef struct slab {
  struct slab *next; /* free-list link, stored in the idle slab itself */
} slab_t;

typedef struct pool {
  size_t slab_bytes;
  uint32_t max_idle;
  uint32_t idle;
  uint32_t lent;  /* slabs handed out whose Buffer is not yet finalized */
  int closed;     /* the pool's handle is gone: slabs coming back are freed */
  slab_t *free_list;
} pool_t;

static void free_idle(pool_t *pool) {
  while (pool->free_list != NULL) {
    slab_t *slab = pool->free_list;
    pool->free_list = slab->next;
    free(slab);
  }
  pool->idle = 0;
}

/* The pool's handle was collected (environment teardown): it lives on until the last
 * lent slab comes back. */
static void pool_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  pool_t *pool = data;
  pool->closed = 1;
  free_idle(pool);
  if (pool->lent == 0) free(pool);
}

/* A lent Buffer was collected: its slab is ours again. */
static void slab_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  pool_t *pool = hint;
  pool->lent--;
  if (pool->closed || pool->idle >= pool->max_idle) {
    free(data);
    if (pool->closed && pool->lent == 0) free(pool);
    return;
  }
  slab_t *slab = data;
  slab->next = pool->free_list;
  pool->free_list = slab;
  pool->idle++;
}

static pool_t *get_pool(napi_env env, napi_value value) {
  napi_valuetype type;
  void *data = NULL;
  if (napi_typeof(env, value, &type) != napi_ok) return NULL;
  if (type != napi_external || napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    throw_type_error(env, "expected a pool from createPool()");
    return NULL;
  }
  return data;
}

/* The pool passed as a call's only argument; NULL (and a TypeError thrown) otherwise. */
static pool_t *pool_arg(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  return get_pool(env, argv[0]);
}

static napi_value CreatePool(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int64_t slab_bytes, max_idle;
  if (napi_get_value_int64(env, argv[0], &slab_bytes) != napi_ok ||
      napi_get_value_int64(env, argv[1], &max_idle) != napi_ok)
    return throw_type_error(env, "slabBytes and maxIdle must be numbers");
  if (slab_bytes < (int64_t)sizeof(slab_t) || slab_bytes > (INT64_C(1) << 30) || max_idle < 0 ||
      max_idle > UINT32_MAX)
    return throw_type_error(env, "slabBytes must be 8 bytes to 1 GiB, maxIdle 0 to 2^32 - 1");
  pool_t *pool = calloc(1, sizeof *pool);
  if (pool == NULL) {
    napi_throw_error(env, "ENOMEM", "cannot allocate a buffer pool");
    return NULL;
  }
  pool->slab_bytes = (size_t)slab_bytes;
  pool->max_idle = (uint32_t)max_idle;
  napi_value result;
  if (napi_create_external(env, pool, pool_finalize, NULL, &result) != napi_ok) {
    free(pool);
    return NULL;
  }
  return result;
}

static napi_value Take(napi_env env, napi_callback_info info) {
  pool_t *pool = pool_arg(env, info);
  if (pool == NULL) return NULL;
  void *memory;
  if (pool->free_list != NULL) {
    slab_t *slab = pool->free_list;
    pool->free_list = slab->next;
    pool->idle--;
    memory = slab;
  } else if ((memory = malloc(pool->slab_bytes)) == NULL) {
    return NULL; /* undefined: the caller allocates a plain Buffer */
  }
  /* Counted as lent before the call: once Node has taken the memory, it runs
   * slab_finalize even when creating the Buffer fails, possibly at once. */
  pool->lent++;
  napi_value buffer;
  napi_status status = napi_create_external_buffer(env, pool->slab_bytes, memory, slab_finalize, pool, &buffer);
  if (status != napi_ok) {
    if (status != napi_generic_failure) {
      /* Refused before Node took the memory (e.g. napi_no_external_buffers_allowed in a
       * V8 sandbox): it is still ours. After a generic failure the finalizer has it. */
      pool->lent--;
      free(memory);
    }
    napi_value ignored;
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending)
      napi_get_and_clear_last_exception(env, &ignored);
    return NULL; /* the caller falls back to a plain Buffer */
  }
  return buffer;
}

static napi_value Trim(napi_env env, napi_callback_info info) {
  pool_t *pool = pool_arg(env, info);
  if (pool == NULL) return NULL;
  uint32_t freed = pool->idle;
  free_idle(pool);
  napi_value result;
  if (napi_create_uint32(env, freed, &result) != napi_ok) return NULL;
  return result;
}

static napi_value Stats(napi_env env, napi_callback_info info) {
  pool_t *pool = pool_arg(env, info);
  if (pool == NULL) return NULL;
  napi_value result, idle, lent;
  if (napi_create_object(env, &result) != napi_ok || napi_create_uint32(env, pool->idle, &idle) != napi_ok ||
      napi_create_uint32(env, pool->lent, &lent) != napi_ok ||
      napi_set_named_property(env, result, "idle", idle) != napi_ok ||
      napi_set_named_property(env, result, "lent", lent) != napi_ok)
    return NULL;
  return result;
}

NAPI_MODULE_INIT() {
  if (!set_function(env, exports, "createPool", CreatePool)) return NULL;
  if (!set_function(env, exports, "take", Take)) return NULL;
  if (!set_function(env, exports, "trim", Trim)) return NULL;
  if (!set_function(env, exports, "stats", Stats)) return NULL;
  if (!register_read_into(env, exports)) return NULL;
  return exports;
}
