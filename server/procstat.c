/*
 * procstat.c - resource use of this process from /proc/self/stat, /proc/stat
 * and /proc/self/fd (see proc(5)).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "server/procstat.h"

/* Boot time in seconds since the epoch ("btime" of /proc/stat), or -1. */
static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[256];
    double bt = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

static void read_stat(srv_procstat *p)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: the
     * fields after it start behind the last ')'. */
    char *p3 = strrchr(buf, ')');
    if (!p3) return;
    unsigned long utime, stime, vsize;
    unsigned long long starttime;
    long threads, rss;
    /* Fields 3..24: state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime cutime cstime priority nice num_threads
     * itrealvalue starttime vsize rss. */
    int got = sscanf(p3 + 1,
                     " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d"
                     " %ld %*d %llu %lu %ld",
                     &utime, &stime, &threads, &starttime, &vsize, &rss);
    if (got != 6) return;
    double tick = (double)sysconf(_SC_CLK_TCK);
    double page = (double)sysconf(_SC_PAGESIZE);
    p->cpu_seconds = (double)(utime + stime) / tick;
    p->threads = (double)threads;
    p->virtual_bytes = (double)vsize;
    p->resident_bytes = (double)rss * page;
    double bt = boot_time();
    if (bt >= 0) p->start_time = bt + (double)starttime / tick;
}

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

srv_procstat srv__procstat_read(void)
{
    srv_procstat p = {-1, -1, -1, -1, -1, -1, -1};
    read_stat(&p);
    p.open_fds = count_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        p.max_fds = (double)rl.rlim_cur;
    return p;
}
