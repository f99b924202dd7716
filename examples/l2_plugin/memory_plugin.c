/* An example lmcache L2 native plugin in plain C: an in-memory key-value
 * store behind the C ABI of lmcache/l2_native_plugin.h.
 *
 *   {"type": "native_plugin", "library_path": ".../liblmcache_example_l2_plugin.so",
 *    "config": {"capacity_bytes": 1073741824}}
 *
 * config (both optional):
 *   "capacity_bytes"  0 = unbounded; a put that would exceed it fails
 *                     (-ENOSPC); the adapter's max_capacity_gb is the
 *                     place for eviction.
 *   "name"            a process-wide named store: every create() with the
 *                     same name gets the same table, which lives until the
 *                     process exits (a stand-in for a shared or persistent
 *                     backend: two adapters share it, a re-created adapter
 *                     finds its values). Without a name, values live until
 *                     destroy().
 *
 * A chained hash table (FNV-1a), grown at load factor 2, under a
 * reader-writer lock: gets, exists and list run concurrently, puts and
 * removes exclusively. Thread-safe (LMCACHE_L2_PLUGIN_THREAD_SAFE).
 *
 * Build: cc -std=c11 -shared -fPIC -I<lmcache>/cpp/include memory_plugin.c -o libmemory_plugin.so -lpthread
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strndup, rwlocks */

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lmcache/l2_native_plugin.h"

/* Tests build a second copy with MEMORY_PLUGIN_FLAGS=0 (not thread-safe) to
 * exercise the adapter's serialized calls. */
#ifndef MEMORY_PLUGIN_FLAGS
#define MEMORY_PLUGIN_FLAGS LMCACHE_L2_PLUGIN_THREAD_SAFE
#endif

#if defined(__GNUC__)
#define PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define PLUGIN_EXPORT
#endif

typedef struct entry {
  struct entry* next;
  uint64_t hash;
  char* key;
  unsigned char* data;
  uint64_t size;
} entry;

typedef struct store {
  struct store* next_named; /* the list of named stores */
  char* name;               /* NULL: private to one handle */
  pthread_rwlock_t lock;
  entry** buckets;
  size_t nbuckets; /* a power of two */
  size_t count;
  uint64_t bytes;
  uint64_t capacity_bytes; /* 0: unbounded */
} store;

static uint64_t fnv1a(const char* s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; ++s) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static entry** find_slot(store* st, const char* key, uint64_t h) {
  entry** p = &st->buckets[h & (st->nbuckets - 1)];
  while (*p && ((*p)->hash != h || strcmp((*p)->key, key) != 0)) p = &(*p)->next;
  return p;
}

static int grow(store* st) {
  size_t n = st->nbuckets * 2;
  entry** b = (entry**)calloc(n, sizeof(entry*));
  if (!b) return -1;
  for (size_t i = 0; i < st->nbuckets; ++i) {
    entry* e = st->buckets[i];
    while (e) {
      entry* next = e->next;
      entry** head = &b[e->hash & (n - 1)];
      e->next = *head;
      *head = e;
      e = next;
    }
  }
  free(st->buckets);
  st->buckets = b;
  st->nbuckets = n;
  return 0;
}

/* Reads "capacity_bytes": <non-negative integer> from the config text, if
 * present. 0 on success, -1 (with a message) when it is malformed. */
static int parse_config(const char* json, uint64_t* capacity, char* err, size_t err_size) {
  *capacity = 0;
  if (!json) return 0;
  const char* p = strstr(json, "\"capacity_bytes\"");
  if (!p) return 0;
  p += strlen("\"capacity_bytes\"");
  while (isspace((unsigned char)*p)) ++p;
  if (*p++ != ':') goto bad;
  while (isspace((unsigned char)*p)) ++p;
  if (!isdigit((unsigned char)*p)) goto bad;
  errno = 0;
  char* end = NULL;
  unsigned long long v = strtoull(p, &end, 10);
  if (errno != 0 || (*end != ',' && *end != '}' && !isspace((unsigned char)*end))) goto bad;
  *capacity = (uint64_t)v;
  return 0;
bad:
  snprintf(err, err_size, "memory plugin: \"capacity_bytes\" must be a non-negative integer");
  return -1;
}

/* Reads "name": "<string>" (no escapes) into *name (malloc-ed), if present. */
static int parse_name(const char* json, char** name, char* err, size_t err_size) {
  *name = NULL;
  const char* p = json ? strstr(json, "\"name\"") : NULL;
  if (!p) return 0;
  p += strlen("\"name\"");
  while (isspace((unsigned char)*p)) ++p;
  if (*p++ != ':') goto bad;
  while (isspace((unsigned char)*p)) ++p;
  if (*p++ != '"') goto bad;
  const char* end = strchr(p, '"');
  if (!end || end == p || memchr(p, '\\', (size_t)(end - p))) goto bad;
  *name = strndup(p, (size_t)(end - p));
  return *name ? 0 : -1;
bad:
  snprintf(err, err_size, "memory plugin: \"name\" must be a non-empty string without escapes");
  return -1;
}

static pthread_mutex_t g_named_mu = PTHREAD_MUTEX_INITIALIZER;
static store* g_named = NULL; /* named stores, never freed */

static store* new_store(uint64_t capacity, char* err, size_t err_size);

static void* mem_create(const char* config_json, char* err, size_t err_size) {
  uint64_t capacity = 0;
  char* name = NULL;
  if (parse_config(config_json, &capacity, err, err_size) != 0) return NULL;
  if (parse_name(config_json, &name, err, err_size) != 0) return NULL;
  if (!name) return new_store(capacity, err, err_size);
  pthread_mutex_lock(&g_named_mu);
  store* st = g_named;
  while (st && strcmp(st->name, name) != 0) st = st->next_named;
  if (!st && (st = new_store(capacity, err, err_size)) != NULL) {
    st->name = name;
    name = NULL;
    st->next_named = g_named;
    g_named = st;
  }
  pthread_mutex_unlock(&g_named_mu);
  free(name);
  return st;
}

static store* new_store(uint64_t capacity, char* err, size_t err_size) {
  store* st = (store*)calloc(1, sizeof(store));
  if (!st) {
    snprintf(err, err_size, "memory plugin: out of memory");
    return NULL;
  }
  st->nbuckets = 64;
  st->buckets = (entry**)calloc(st->nbuckets, sizeof(entry*));
  if (!st->buckets || pthread_rwlock_init(&st->lock, NULL) != 0) {
    free(st->buckets);
    free(st);
    snprintf(err, err_size, "memory plugin: cannot initialize");
    return NULL;
  }
  st->capacity_bytes = capacity;
  return st;
}

static void mem_destroy(void* handle) {
  store* st = (store*)handle;
  if (!st || st->name) return; /* named stores outlive their handles */
  for (size_t i = 0; i < st->nbuckets; ++i) {
    entry* e = st->buckets[i];
    while (e) {
      entry* next = e->next;
      free(e->key);
      free(e->data);
      free(e);
      e = next;
    }
  }
  free(st->buckets);
  pthread_rwlock_destroy(&st->lock);
  free(st);
}

static int mem_put(void* handle, const char* key, const lmcache_l2_iovec* parts, uint32_t nparts) {
  store* st = (store*)handle;
  uint64_t total = 0;
  for (uint32_t i = 0; i < nparts; ++i) total += parts[i].len;
  /* Copy outside the lock; most puts are of new keys. */
  unsigned char* data = (unsigned char*)malloc(total ? total : 1);
  entry* e = (entry*)malloc(sizeof(entry));
  char* k = strdup(key);
  if (!data || !e || !k) {
    free(data);
    free(e);
    free(k);
    return LMCACHE_L2_ERROR;
  }
  uint64_t off = 0;
  for (uint32_t i = 0; i < nparts; ++i) {
    memcpy(data + off, parts[i].base, parts[i].len);
    off += parts[i].len;
  }
  const uint64_t h = fnv1a(key);
  int rc = LMCACHE_L2_OK;
  pthread_rwlock_wrlock(&st->lock);
  entry** slot = find_slot(st, key, h);
  if (*slot) {
    rc = LMCACHE_L2_EXISTS;
  } else if (st->capacity_bytes && st->bytes + total > st->capacity_bytes) {
    rc = -ENOSPC;
  } else {
    e->next = NULL;
    e->hash = h;
    e->key = k;
    e->data = data;
    e->size = total;
    *slot = e;
    st->count++;
    st->bytes += total;
    if (st->count > 2 * st->nbuckets) grow(st); /* on failure the chains just get longer */
  }
  pthread_rwlock_unlock(&st->lock);
  if (rc != LMCACHE_L2_OK) {
    free(data);
    free(e);
    free(k);
  }
  return rc;
}

static int mem_get(void* handle, const char* key, const lmcache_l2_iovec* parts, uint32_t nparts, uint64_t* size) {
  store* st = (store*)handle;
  uint64_t room = 0;
  for (uint32_t i = 0; i < nparts; ++i) room += parts[i].len;
  int rc = LMCACHE_L2_OK;
  pthread_rwlock_rdlock(&st->lock);
  entry* e = *find_slot(st, key, fnv1a(key));
  if (!e) {
    rc = LMCACHE_L2_NOT_FOUND;
  } else {
    *size = e->size;
    if (e->size > room) {
      rc = LMCACHE_L2_TOO_SMALL;
    } else {
      uint64_t off = 0;
      for (uint32_t i = 0; i < nparts && off < e->size; ++i) {
        uint64_t n = e->size - off < parts[i].len ? e->size - off : parts[i].len;
        memcpy(parts[i].base, e->data + off, n);
        off += n;
      }
    }
  }
  pthread_rwlock_unlock(&st->lock);
  return rc;
}

static int mem_exists(void* handle, const char* key, uint64_t* size) {
  store* st = (store*)handle;
  pthread_rwlock_rdlock(&st->lock);
  entry* e = *find_slot(st, key, fnv1a(key));
  if (e) *size = e->size;
  pthread_rwlock_unlock(&st->lock);
  return e ? LMCACHE_L2_OK : LMCACHE_L2_NOT_FOUND;
}

static int mem_remove(void* handle, const char* key) {
  store* st = (store*)handle;
  pthread_rwlock_wrlock(&st->lock);
  entry** slot = find_slot(st, key, fnv1a(key));
  entry* e = *slot;
  if (e) {
    *slot = e->next;
    st->count--;
    st->bytes -= e->size;
  }
  pthread_rwlock_unlock(&st->lock);
  if (!e) return LMCACHE_L2_NOT_FOUND;
  free(e->key);
  free(e->data);
  free(e);
  return LMCACHE_L2_OK;
}

static int mem_list(void* handle, lmcache_l2_list_fn fn, void* ctx) {
  store* st = (store*)handle;
  pthread_rwlock_rdlock(&st->lock);
  for (size_t i = 0; i < st->nbuckets; ++i) {
    for (entry* e = st->buckets[i]; e; e = e->next) fn(ctx, e->key, e->size);
  }
  pthread_rwlock_unlock(&st->lock);
  return LMCACHE_L2_OK;
}

static const lmcache_l2_plugin_api_v1 kApi = {
    LMCACHE_L2_PLUGIN_ABI_VERSION,
    (uint32_t)sizeof(lmcache_l2_plugin_api_v1),
    MEMORY_PLUGIN_FLAGS,
    0,
    "memory",
    mem_create,
    mem_destroy,
    mem_put,
    mem_get,
    mem_exists,
    mem_remove,
    mem_list,
};

PLUGIN_EXPORT const lmcache_l2_plugin_api_v1* lmcache_l2_plugin_v1(void) { return &kApi; }
