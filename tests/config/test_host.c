/*
 * test_host.c - CPUs and memory as the process sees them (config/host.c),
 * over fixture files: a cgroup v2 tree in a temporary directory, its
 * cpu.max quotas rounded up, "max" and missing files meaning "no limit",
 * a tighter ancestor winning, and memory.max against MemTotal.
 */
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char root[64];         /* the fixture's cgroup mount */
static char proc_cgroup[128]; /* its /proc/self/cgroup */
static char meminfo[128];     /* its /proc/meminfo */
static cfg_host_paths paths;

/* What the process may use without any cgroup quota. */
static int node_cpus(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = online > 0 ? (int)online : 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) < n) n = CPU_COUNT(&set);
    return n;
}

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/heptapod-host-XXXXXX");
    assert_non_null(mkdtemp(root));
    char d[256];
    snprintf(d, sizeof d, "%s/kubepods", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/kubepods/pod1", root);
    mkdir(d, 0755);
    snprintf(proc_cgroup, sizeof proc_cgroup, "%s/self-cgroup", root);
    snprintf(meminfo, sizeof meminfo, "%s/meminfo", root);
    put("self-cgroup", "12:memory:/v1/path/ignored\n0::/kubepods/pod1\n");
    put("meminfo", "MemFree:  1000 kB\nMemTotal:       8388608 kB\nBuffers: 5 kB\n");
    paths = (cfg_host_paths){.proc_cgroup = proc_cgroup, .cgroup_root = root, .meminfo = meminfo};
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void test_cpu_quota_file(void **state)
{
    struct {
        const char *text;
        int want;
    } cases[] = {
        {"200000 100000\n", 2},
        {"150000 100000\n", 2},
        {"100000 100000\n", 1},
        {"50000 100000\n", 1},
        {"max 100000\n", 0},
        {"6400000 100000", 64},
        {"", 0},
        {"garbage\n", 0},
        {"-5 100000\n", 0},
        {"100000 0\n", 0},
        {"100000\n", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put("kubepods/pod1/cpu.max", cases[i].text);
        char p[256];
        snprintf(p, sizeof p, "%s/kubepods/pod1/cpu.max", root);
        if (cfg_cpu_quota(p) != cases[i].want)
            fail_msg("cpu.max '%s': %d, want %d", cases[i].text, cfg_cpu_quota(p), cases[i].want);
    }
    assert_int_equal(cfg_cpu_quota("/nonexistent/cpu.max"), 0);
}

static void test_cgroup_dir(void **state)
{
    char dir[256], want[256];
    assert_int_equal(cfg_cgroup_dir(&paths, dir, sizeof dir), 0);
    snprintf(want, sizeof want, "%s/kubepods/pod1", root);
    assert_string_equal(dir, want);
    put("self-cgroup", "0::/\n");
    assert_int_equal(cfg_cgroup_dir(&paths, dir, sizeof dir), 0);
    assert_string_equal(dir, root);
    put("self-cgroup", "4:cpu:/only-v1\n");
    assert_int_equal(cfg_cgroup_dir(&paths, dir, sizeof dir), -1);
    put("self-cgroup", "0::/../../etc\n");
    assert_int_equal(cfg_cgroup_dir(&paths, dir, sizeof dir), -1);
    cfg_host_paths none = {"/nonexistent/cgroup", root, meminfo};
    assert_int_equal(cfg_cgroup_dir(&none, dir, sizeof dir), -1);
}

static void test_cpu_count(void **state)
{
    int node = node_cpus();
    /* No cpu.max anywhere: the node's CPUs. */
    assert_int_equal(cfg_cpu_count(&paths), node);
    put("kubepods/pod1/cpu.max", "max 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), node);
    /* A quota of one CPU, then 1.5 (rounded up to 2, or the node's if fewer). */
    put("kubepods/pod1/cpu.max", "100000 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), 1);
    put("kubepods/pod1/cpu.max", "150000 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), node < 2 ? node : 2);
    put("kubepods/pod1/cpu.max", "200000 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), node < 2 ? node : 2);
    /* A quota above the node's CPUs does not add any. */
    put("kubepods/pod1/cpu.max", "6400000 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), node);
    /* A tighter ancestor wins. */
    put("kubepods/cpu.max", "100000 100000\n");
    assert_int_equal(cfg_cpu_count(&paths), 1);
    /* Missing files: the node's CPUs. */
    cfg_host_paths none = {"/nonexistent/cgroup", "/nonexistent", "/nonexistent/meminfo"};
    assert_int_equal(cfg_cpu_count(&none), node);
}

static void test_memory_limit(void **state)
{
    const char *src = NULL;
    /* No memory.max: MemTotal (8 GiB). */
    assert_int_equal(cfg_memory_limit(&paths, &src), 8LL << 30);
    assert_non_null(strstr(src, "MemTotal"));
    put("kubepods/pod1/memory.max", "max\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 8LL << 30);
    put("kubepods/pod1/memory.max", "2147483648\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 2LL << 30);
    assert_string_equal(src, "cgroup memory.max");
    /* A tighter ancestor wins; a looser one does not. */
    put("kubepods/memory.max", "1073741824\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 1LL << 30);
    put("kubepods/memory.max", "4294967296\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 2LL << 30);
    /* The pod's own limit above its parent's: the parent's binds. */
    put("kubepods/pod1/memory.max", "17179869184\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 4LL << 30);
    assert_string_equal(src, "cgroup memory.max");
    /* A cgroup limit above MemTotal: MemTotal binds. */
    put("kubepods/memory.max", "max\n");
    assert_int_equal(cfg_memory_limit(&paths, &src), 8LL << 30);
    assert_non_null(strstr(src, "MemTotal"));
    assert_int_equal(cfg_memory_max("/nonexistent/memory.max"), 0);
    cfg_host_paths none = {"/nonexistent/cgroup", "/nonexistent", "/nonexistent/meminfo"};
    assert_int_equal(cfg_memory_limit(&none, &src), 0);
    /* The real machine has some memory. */
    assert_true(cfg_memory_limit(&cfg_host_default, NULL) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cpu_quota_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cgroup_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cpu_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
