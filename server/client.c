/*
 * client.c - who a client is: the key its connections are counted by
 * (listen.c) and the key its requests are shared fairly by (sched.c through
 * generate.c). Identities are hashed with a per-process seed and never kept.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "server/auth.h"
#include "server/server.h"

void srv__addr_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        /* One IPv6 client holds a whole /64: counted as one, or it could
         * open each connection from a new address. */
        memcpy(key, a, memcmp(a, mapped, 12) ? 8 : 16);
    }
}

/* A seeded 64-bit hash of one kind of client identity (FNV-1a, then the
 * splitmix64 finaliser). The identity itself is never kept, and without the
 * per-process seed a client cannot pick the key it lands on. */
uint64_t srv__key_hash(uint64_t seed, char kind, const void *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    h = (h ^ (unsigned char)kind) * 0x100000001b3ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

struct last_header {
    const char *name;
    const char *value;
};

static enum MHD_Result keep_last(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct last_header *h = cls;
    if (key && value && !strcasecmp(key, h->name)) h->value = value;
    return MHD_YES;
}

/* The last address of the client header (a proxy appends the peer it saw
 * to X-Forwarded-For, in a new header line or after a comma, so only the
 * last entry is the proxy's word), trimmed; NULL if absent or empty. */
static const char *forwarded_client(srv_conn *c, const char *header, size_t *len)
{
    struct last_header h = {header, NULL};
    MHD_get_connection_values(c->mhd, MHD_HEADER_KIND, keep_last, &h);
    if (!h.value) return NULL;
    const char *v = strrchr(h.value, ',');
    v = v ? v + 1 : h.value;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    *len = n;
    return n ? v : NULL;
}

/* The API key the request presented, only where keys are required (so it
 * was checked): an unchecked key would let one client pose as many. */
static const char *presented_key(srv_conn *c)
{
    if (c->srv->cfg->n_api_keys == 0) return NULL;
    return srv__auth_presented(
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "X-Api-Key"));
}

/* The peer address as listen.c counts connections (srv__addr_key). */
static uint64_t peer_key(srv_conn *c, uint64_t seed)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    unsigned char addr[16];
    srv__addr_key(ci ? ci->client_addr : NULL, addr);
    return srv__key_hash(seed, 'a', addr, sizeof addr);
}

/* Who the request is from, for fair sharing: the client header's last
 * address if that setting names one and it is present, else the API key,
 * else the peer address. */
uint64_t srv__client_key(srv_conn *c)
{
    uint64_t seed = c->srv->id_seed;
    const char *header = c->srv->cfg->client_header;
    size_t n = 0;
    const char *v = header[0] ? forwarded_client(c, header, &n) : NULL;
    if (v) return srv__key_hash(seed, 'h', v, n);
    if ((v = presented_key(c))) return srv__key_hash(seed, 'k', v, strlen(v));
    return peer_key(c, seed);
}
