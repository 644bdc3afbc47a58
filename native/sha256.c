/*
 * blobcore_sha256: a tiny N-API addon over the SHA-256 that Node's own bundled
 * OpenSSL exports from the `node` executable (SHA256_Init / SHA256_Update /
 * SHA256_Final), so a hash state can be exported, persisted and resumed in another
 * process without re-reading the data.
 *
 * The hash context lives in a JS-owned Uint8Array (the caller allocates
 * `CTX_SIZE` bytes), so exporting it is reading 112 bytes and a non-finalizing
 * digest is a 112-byte memcpy onto the stack followed by SHA256_Final on the copy.
 * Input bytes are hashed in place (no copy), from any TypedArray or DataView.
 *
 * We declare OpenSSL's SHA256_CTX and the three prototypes ourselves instead of
 * including OpenSSL headers: the layout has been stable since OpenSSL 0.9.8 and is
 * the same in BoringSSL; src/hash/native.ts checks it against known vectors when
 * the addon is loaded and refuses the addon if it does not match.
 *
 * Linked with -z now (binding.gyp): if the running `node` does not export these
 * symbols, dlopen fails at load time and blobcore falls back to hash-wasm, instead
 * of the process dying at the first update().
 *
 * Exports:
 *   CTX_SIZE                       sizeof(SHA256_CTX) (112)
 *   init(ctx: Uint8Array): void    SHA256_Init into ctx
 *   update(ctx, data): void        SHA256_Update(ctx, data)
 *   digest(ctx): string            'sha256:<hex>' of a finalized copy; ctx unchanged
 */
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "napi-util.h"

typedef struct blobcore_sha256_ctx {
  uint32_t h[8];
  uint32_t Nl, Nh;      /* message length in bits, low and high word */
  uint32_t data[16];    /* partial block, raw bytes in memory order */
  unsigned int num;     /* bytes in data */
  unsigned int md_len;  /* 32 for SHA-256 */
} SHA256_CTX;

/* Provided by the node executable (its statically linked OpenSSL). */
int SHA256_Init(SHA256_CTX *c);
int SHA256_Update(SHA256_CTX *c, const void *data, size_t len);
int SHA256_Final(unsigned char *md, SHA256_CTX *c);

#define SHA256_DIGEST_LENGTH 32
#define PREFIX "sha256:"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, "ERR_BLOBCORE_SHA256", message);
  return NULL;
}

static size_t element_size(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array:
      return 1;
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 0;
  }
}

/* Bytes of a TypedArray or DataView, without copying. Returns 0 and throws on error. */
static int get_bytes(napi_env env, napi_value value, void **data, size_t *byte_length) {
  bool is_typedarray = false;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok) return 0;
  if (is_typedarray) {
    napi_typedarray_type type;
    size_t length = 0;
    if (napi_get_typedarray_info(env, value, &type, &length, data, NULL, NULL) != napi_ok) return 0;
    size_t size = element_size(type);
    if (size == 0) {
      throw_type_error(env, "unsupported TypedArray type");
      return 0;
    }
    *byte_length = length * size;
    return 1;
  }
  bool is_dataview = false;
  if (napi_is_dataview(env, value, &is_dataview) != napi_ok) return 0;
  if (is_dataview) {
    if (napi_get_dataview_info(env, value, byte_length, data, NULL, NULL) != napi_ok) return 0;
    return 1;
  }
  throw_type_error(env, "expected a TypedArray or DataView");
  return 0;
}

/* The SHA256_CTX stored in a JS Uint8Array of at least CTX_SIZE bytes. */
static SHA256_CTX *get_ctx(napi_env env, napi_value value) {
  void *data = NULL;
  size_t byte_length = 0;
  if (!get_bytes(env, value, &data, &byte_length)) return NULL;
  if (byte_length < sizeof(SHA256_CTX) || data == NULL) {
    throw_type_error(env, "hash context must be a Uint8Array of CTX_SIZE bytes");
    return NULL;
  }
  /* V8 backing stores are at least 8-byte aligned; a subarray at an odd offset is not. */
  if (((uintptr_t)data) % _Alignof(SHA256_CTX) != 0) {
    throw_type_error(env, "hash context is not aligned");
    return NULL;
  }
  return (SHA256_CTX *)data;
}

static napi_value Init(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  SHA256_CTX *ctx = get_ctx(env, argv[0]);
  if (ctx == NULL) return NULL;
  if (SHA256_Init(ctx) != 1) return throw_error(env, "SHA256_Init failed");
  return NULL;
}

static napi_value Update(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  SHA256_CTX *ctx = get_ctx(env, argv[0]);
  if (ctx == NULL) return NULL;
  void *data = NULL;
  size_t length = 0;
  if (!get_bytes(env, argv[1], &data, &length)) return NULL;
  if (length == 0) return NULL; /* a detached or empty buffer may have a NULL pointer */
  if (SHA256_Update(ctx, data, length) != 1) return throw_error(env, "SHA256_Update failed");
  return NULL;
}

static napi_value Digest(napi_env env, napi_callback_info info) {
  static const char hex[] = "0123456789abcdef";
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  SHA256_CTX *ctx = get_ctx(env, argv[0]);
  if (ctx == NULL) return NULL;
  SHA256_CTX copy;
  memcpy(&copy, ctx, sizeof copy);
  unsigned char md[SHA256_DIGEST_LENGTH];
  if (SHA256_Final(md, &copy) != 1) return throw_error(env, "SHA256_Final failed");
  char out[PREFIX_LEN + 2 * SHA256_DIGEST_LENGTH];
  memcpy(out, PREFIX, PREFIX_LEN);
  for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    out[PREFIX_LEN + 2 * i] = hex[md[i] >> 4];
    out[PREFIX_LEN + 2 * i + 1] = hex[md[i] & 15];
  }
  napi_value result;
  if (napi_create_string_latin1(env, out, sizeof out, &result) != napi_ok) return NULL;
  return result;
}

NAPI_MODULE_INIT() {
  napi_value ctx_size;
  if (napi_create_uint32(env, (uint32_t)sizeof(SHA256_CTX), &ctx_size) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "CTX_SIZE", ctx_size) != napi_ok) return NULL;
  if (!set_function(env, exports, "init", Init)) return NULL;
  if (!set_function(env, exports, "update", Update)) return NULL;
  if (!set_function(env, exports, "digest", Digest)) return NULL;
  return exports;
}
