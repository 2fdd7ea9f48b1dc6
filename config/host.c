/*
 * host.c - what the process may use of the machine: CPUs (online cores,
 * the affinity mask, the cgroup v2 quota cpu.max) and memory (cgroup v2
 * memory.max, else MemTotal), so that defaults follow a container's limits
 * rather than the node's size.
 *
 * The process's cgroup is the "0::PATH" line of /proc/self/cgroup, under
 * the cgroup v2 mount. A limit set on an ancestor binds too, so each file is
 * read from that directory up to the mount and the smallest limit wins.
 * Every file is a parameter (cfg_host_paths), so tests point them at
 * fixtures. A missing or unreadable file means "no limit there", never an
 * error: the node's own size is then the answer.
 */
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

const cfg_host_paths cfg_host_default = {
    .proc_cgroup = "/proc/self/cgroup",
    .cgroup_root = "/sys/fs/cgroup",
    .meminfo = "/proc/meminfo",
};

/* The first line of a small file, without its newline; -1 if unreadable. */
static int read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    char *ok = fgets(buf, (int)len, f);
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

int cfg_cgroup_dir(const cfg_host_paths *p, char *out, size_t len)
{
    FILE *f = fopen(p->proc_cgroup, "re");
    if (!f) return -1;
    char line[4096];
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::/", 4)) continue; /* v1 controllers: not ours */
        line[strcspn(line, "\n")] = '\0';
        const char *rel = line + 3;
        /* "(deleted)" or a path climbing out: no directory to read. */
        if (strstr(rel, "/..") || strstr(rel, " (deleted)")) break;
        int n = snprintf(out, len, "%s%s", p->cgroup_root, strcmp(rel, "/") ? rel : "");
        rc = n > 0 && (size_t)n < len ? 0 : -1;
        break;
    }
    fclose(f);
    return rc;
}

int cfg_cpu_quota(const char *cpu_max)
{
    char buf[128];
    if (read_line(cpu_max, buf, sizeof buf)) return 0;
    char *end;
    if (!strncmp(buf, "max", 3)) return 0;
    long long quota = strtoll(buf, &end, 10);
    if (end == buf || *end != ' ' || quota <= 0) return 0;
    char *p = end + 1;
    long long period = strtoll(p, &end, 10);
    if (end == p || period <= 0) return 0;
    long long cpus = quota / period + (quota % period != 0);
    return cpus > 1000000 ? 1000000 : (int)cpus;
}

int64_t cfg_memory_max(const char *memory_max)
{
    char buf[128];
    if (read_line(memory_max, buf, sizeof buf) || !strncmp(buf, "max", 3)) return 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    return end != buf && v > 0 ? v : 0;
}

/* The smallest positive value that `read` finds in `file` of dir and each
 * ancestor up to the cgroup root; 0 when none has a limit. */
static int64_t smallest_up(const cfg_host_paths *p, const char *file,
                           int64_t (*read)(const char *path))
{
    char dir[4096], path[4200];
    if (cfg_cgroup_dir(p, dir, sizeof dir)) return 0;
    size_t root = strlen(p->cgroup_root);
    int64_t best = 0;
    for (;;) {
        snprintf(path, sizeof path, "%s/%s", dir, file);
        int64_t v = read(path);
        if (v > 0 && (best == 0 || v < best)) best = v;
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= root || !slash || (size_t)(slash - dir) < root) break;
        *slash = '\0';
    }
    return best;
}

static int64_t read_cpu_quota(const char *path)
{
    return cfg_cpu_quota(path);
}

int cfg_cpu_count(const cfg_host_paths *p)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int cpus = online > 0 ? (int)online : 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int allowed = CPU_COUNT(&set);
        if (allowed > 0 && allowed < cpus) cpus = allowed;
    }
    int64_t quota = smallest_up(p, "cpu.max", read_cpu_quota);
    if (quota > 0 && quota < cpus) cpus = (int)quota;
    return cpus;
}

/* MemTotal of a meminfo file in bytes; 0 if absent. */
static int64_t mem_total(const char *meminfo)
{
    FILE *f = fopen(meminfo, "re");
    if (!f) return 0;
    char line[256];
    long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %lld kB", &kib) == 1) break;
    fclose(f);
    return kib > 0 && kib < INT64_MAX / 1024 ? (int64_t)kib * 1024 : 0;
}

int64_t cfg_memory_limit(const cfg_host_paths *p, const char **source)
{
    int64_t total = mem_total(p->meminfo);
    int64_t cg = smallest_up(p, "memory.max", cfg_memory_max);
    if (cg > 0 && (total == 0 || cg < total)) {
        if (source) *source = "cgroup memory.max";
        return cg;
    }
    if (source) *source = total > 0 ? "MemTotal of /proc/meminfo" : "unknown";
    return total;
}
