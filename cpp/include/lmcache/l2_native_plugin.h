/* lmcache L2 native plugin ABI, version 1 (plain C, usable from C and C++).
 *
 * A native plugin is a shared library that stores opaque byte strings under
 * string keys: a key-value store the `native_plugin` L2 adapter drives.
 *
 *   {"type": "native_plugin", "library_path": "/opt/x/libmystore.so",
 *    "config": {...any JSON, handed to create() as text...}}
 *
 * The library exports one function, found with dlsym (the library is opened
 * with RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE: its other symbols stay
 * private, and it is never unmapped, so process-wide state it keeps
 * outlives a destroyed handle):
 *
 *   const lmcache_l2_plugin_api_v1* lmcache_l2_plugin_v1(void);
 *
 * It returns a pointer to a static table (valid until the library is
 * unloaded) with abi_version = LMCACHE_L2_PLUGIN_ABI_VERSION and
 * struct_size = sizeof(lmcache_l2_plugin_api_v1). Later versions only append
 * members and bump the version; an adapter refuses a table whose version it
 * does not speak.
 *
 * Division of labour. Every call is synchronous and may block (network,
 * disk). The adapter runs them on its worker threads and provides the rest
 * of the L2 contract: asynchrony and eventfds, lookup locks, first writer
 * wins across its own callers, usage per cache_salt, capacity and eviction,
 * and integrity: each value the adapter writes is the object's bytes
 * followed by a 24-byte footer (magic "LMCF", version, object size, XXH64 of
 * the bytes) that it verifies on every get. The plugin stores values as
 * given and needs no knowledge of either.
 *
 * Keys are NUL-terminated strings: the LMCache fs file stem of the object
 * key ("model@kv_rank@group@hash[@salt]", '/' in the model written as
 * "-SEP-"), at most 4096 bytes, never empty.
 *
 * Buffers are given as scatter/gather lists (lmcache_l2_iovec): a value is
 * the concatenation of its parts. No pointer passed in is kept after the
 * call returns.
 *
 * Return codes: LMCACHE_L2_OK, LMCACHE_L2_NOT_FOUND, LMCACHE_L2_EXISTS,
 * LMCACHE_L2_TOO_SMALL, or a negative value for any other failure (the
 * adapter counts it as an I/O error and the key's bit is 0).
 *
 * Thread safety: with LMCACHE_L2_PLUGIN_THREAD_SAFE in `flags` the adapter
 * calls put/get/exists/remove/list concurrently from several threads on one
 * handle; without it, it serializes every call on a handle. create and
 * destroy are never concurrent with other calls on the same handle.
 */
#ifndef LMCACHE_L2_NATIVE_PLUGIN_H_
#define LMCACHE_L2_NATIVE_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMCACHE_L2_PLUGIN_ABI_VERSION 1u
#define LMCACHE_L2_PLUGIN_ENTRY_V1 "lmcache_l2_plugin_v1"

/* flags */
#define LMCACHE_L2_PLUGIN_THREAD_SAFE 1u

/* return codes */
#define LMCACHE_L2_OK 0
#define LMCACHE_L2_NOT_FOUND 1 /* no value under the key */
#define LMCACHE_L2_EXISTS 2    /* put: the key already has a value; nothing was written */
#define LMCACHE_L2_TOO_SMALL 3 /* get: the value is larger than the buffers; *size says how large */
#define LMCACHE_L2_ERROR (-1)  /* any negative value: failure */

typedef struct lmcache_l2_iovec {
  void* base;
  uint64_t len;
} lmcache_l2_iovec;

/* list callback: one call per stored key, with the value's size in bytes. */
typedef void (*lmcache_l2_list_fn)(void* ctx, const char* key, uint64_t size);

typedef struct lmcache_l2_plugin_api_v1 {
  uint32_t abi_version; /* LMCACHE_L2_PLUGIN_ABI_VERSION */
  uint32_t struct_size; /* sizeof(lmcache_l2_plugin_api_v1) */
  uint32_t flags;       /* LMCACHE_L2_PLUGIN_THREAD_SAFE, ... */
  uint32_t reserved;    /* 0 */
  const char* name;     /* short name for status pages, e.g. "memory" */

  /* A new store from the adapter's "config" (JSON text, "{}" when absent).
   * NULL on failure, with a one-line NUL-terminated reason written to
   * err[0..err_size). */
  void* (*create)(const char* config_json, char* err, size_t err_size);
  /* Release the store. Values may stay in whatever backs the store. */
  void (*destroy)(void* handle);

  /* Store the concatenation of parts[0..nparts) under key if the key has no
   * value: LMCACHE_L2_OK, or LMCACHE_L2_EXISTS (nothing written). */
  int (*put)(void* handle, const char* key, const lmcache_l2_iovec* parts, uint32_t nparts);
  /* Copy the value of key into parts[0..nparts) in order and set *size to
   * its length: LMCACHE_L2_OK; LMCACHE_L2_NOT_FOUND; LMCACHE_L2_TOO_SMALL
   * when the value is longer than the parts together (*size = its length;
   * the parts' content is then undefined). */
  int (*get)(void* handle, const char* key, const lmcache_l2_iovec* parts, uint32_t nparts, uint64_t* size);
  /* LMCACHE_L2_OK with *size = the value's length, or LMCACHE_L2_NOT_FOUND. */
  int (*exists)(void* handle, const char* key, uint64_t* size);
  /* LMCACHE_L2_OK (removed) or LMCACHE_L2_NOT_FOUND. */
  int (*remove)(void* handle, const char* key);
  /* Optional (NULL if the store cannot enumerate): call fn once per stored
   * key; the adapter calls it once, at start-up, to find values stored
   * before (a persistent or shared store). LMCACHE_L2_OK or a failure. */
  int (*list)(void* handle, lmcache_l2_list_fn fn, void* ctx);
} lmcache_l2_plugin_api_v1;

/* The entry point a plugin defines (and exports). */
typedef const lmcache_l2_plugin_api_v1* (*lmcache_l2_plugin_v1_fn)(void);
const lmcache_l2_plugin_api_v1* lmcache_l2_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* LMCACHE_L2_NATIVE_PLUGIN_H_ */
