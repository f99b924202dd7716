/* Broken lmcache L2 plugins for the native_plugin adapter's error paths,
 * one shared library per variant (see CMakeLists.txt):
 *   BAD_PLUGIN_NO_ENTRY     exports no lmcache_l2_plugin_v1
 *   BAD_PLUGIN_BAD_VERSION  a table of ABI version 99
 *   BAD_PLUGIN_NO_PUT       a version 1 table without put */
#include <stdio.h>

#include "lmcache/l2_native_plugin.h"

#if defined(BAD_PLUGIN_NO_ENTRY)
__attribute__((visibility("default"))) int lmcache_not_a_plugin(void) { return 0; }
#else
static void* bad_create(const char* config, char* err, size_t err_size) {
  (void)config;
  snprintf(err, err_size, "bad plugin: never creates");
  return NULL;
}
static void bad_destroy(void* h) { (void)h; }
#if !defined(BAD_PLUGIN_NO_PUT)
static int bad_put(void* h, const char* k, const lmcache_l2_iovec* p, uint32_t n) {
  (void)h, (void)k, (void)p, (void)n;
  return LMCACHE_L2_ERROR;
}
#endif
static int bad_get(void* h, const char* k, const lmcache_l2_iovec* p, uint32_t n, uint64_t* s) {
  (void)h, (void)k, (void)p, (void)n, (void)s;
  return LMCACHE_L2_NOT_FOUND;
}
static int bad_exists(void* h, const char* k, uint64_t* s) {
  (void)h, (void)k, (void)s;
  return LMCACHE_L2_NOT_FOUND;
}
static int bad_remove(void* h, const char* k) {
  (void)h, (void)k;
  return LMCACHE_L2_NOT_FOUND;
}
#if defined(BAD_PLUGIN_BAD_VERSION)
#define BAD_VERSION 99u
#else
#define BAD_VERSION LMCACHE_L2_PLUGIN_ABI_VERSION
#endif
#if defined(BAD_PLUGIN_NO_PUT)
#define BAD_PUT NULL
#else
#define BAD_PUT bad_put
#endif
static const lmcache_l2_plugin_api_v1 kApi = {
    BAD_VERSION, (uint32_t)sizeof(lmcache_l2_plugin_api_v1), 0, 0, "bad", bad_create, bad_destroy, BAD_PUT, bad_get,
    bad_exists, bad_remove, NULL,
};
__attribute__((visibility("default"))) const lmcache_l2_plugin_api_v1* lmcache_l2_plugin_v1(void) { return &kApi; }
#endif
