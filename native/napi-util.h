/*
 * Small N-API helpers shared by blobcore's addons (sha256.c, buffer-pool.c). Each addon
 * is its own translation unit, so these are static: one private copy per addon.
 */
#ifndef BLOBCORE_NAPI_UTIL_H
#define BLOBCORE_NAPI_UTIL_H

#include <node_api.h>
#include <stddef.h>

static inline napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* The first `want` arguments of a call; 0 (and a TypeError thrown) if fewer were passed. */
static inline int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  if (argc < want) {
    throw_type_error(env, "missing argument");
    return 0;
  }
  return 1;
}

static inline int set_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return 0;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

#endif
