/*
 * procstat.h - the process_* metrics Prometheus client libraries export,
 * read from /proc on Linux.
 */
#ifndef HEPTAPOD_SRV_PROCSTAT_H
#define HEPTAPOD_SRV_PROCSTAT_H

/** One reading of the process's resource use; a field is -1 if unknown. */
typedef struct srv_procstat {
    double cpu_seconds;    /* user + system CPU time */
    double resident_bytes; /* resident set size */
    double virtual_bytes;  /* virtual memory size */
    double start_time;     /* seconds since the Unix epoch */
    double open_fds;       /* entries in /proc/self/fd */
    double max_fds;        /* the soft RLIMIT_NOFILE */
    double threads;        /* threads of the process */
} srv_procstat;

/** Reads the current values. Never fails: unknown fields are -1. */
srv_procstat srv__procstat_read(void);

#endif
