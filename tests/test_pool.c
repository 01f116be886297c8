/* test_pool.c: the thread pool. pool_fast_cpus on fake sysfs trees of real CPU layouts (a phone
 * with prime, big and LITTLE cores, an Intel hybrid laptop, a Rockchip board, offline CPUs,
 * malformed files), and pool_for / pool_for_guided covering every item exactly once for 1 to 8
 * threads, more threads than this machine has cores included. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool.h"
#include "th.h"

static char root[256];

/* Writes text to root/rel, creating the directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0700);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    TH_CHECK(f != NULL, "cannot create %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* One CPU's capacity and maximum frequency (0: file absent). */
static void put_cpu(int c, long capacity, long khz)
{
    char rel[128], v[32];
    if (capacity) {
        snprintf(rel, sizeof rel, "/sys/devices/system/cpu/cpu%d/cpu_capacity", c);
        snprintf(v, sizeof v, "%ld\n", capacity);
        put(rel, v);
    }
    if (khz) {
        snprintf(rel, sizeof rel, "/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq", c);
        snprintf(v, sizeof v, "%ld\n", khz);
        put(rel, v);
    }
}

/* A fresh fake sysfs root. */
static void new_root(const char *name)
{
    char cmd[600];
    snprintf(root, sizeof root, "/tmp/vlm-test-pool-%d-%s", (int)getpid(), name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    TH_CHECK(system(cmd) == 0, "%s", cmd);
    mkdir(root, 0700);
}

/* pool_fast_cpus over the current root must give the count and the CPU list want ("4-7"). */
static void expect_fast(const char *layout, int want_count, const char *want)
{
    unsigned char fast[64], ref[64] = {0};
    int n = pool_fast_cpus(root, 64, fast);
    int bad = 0; /* CPUs marked differently from want (none marked when want is NULL) */
    if (want) {
        /* The same parser shape as the kernel's lists: a-b,c */
        for (const char *s = want; *s;) {
            int a = atoi(s), b = a;
            while (*s >= '0' && *s <= '9')
                s++;
            if (*s == '-') {
                b = atoi(++s);
                while (*s >= '0' && *s <= '9')
                    s++;
            }
            for (int c = a; c <= b; c++)
                ref[c] = 1;
            if (*s == ',')
                s++;
        }
    }
    for (int c = 0; c < 64; c++)
        bad += fast[c] != ref[c];
    TH_CHECK(n == want_count && !bad, "%s: %d fast CPUs (%d differ from %s), expected %d", layout, n, bad,
             want ? want : "-", want_count);
}

static void fast_cpu_cases(void)
{
    /* Snapdragon 888: 4 x A55 at 1.80 GHz, 3 x A78 at 2.42, 1 x X1 at 2.84; no capacities. The
     * A78s are big cores too: the former rule (highest frequency only) kept the X1 alone. */
    new_root("sd888");
    put("/sys/devices/system/cpu/online", "0-7\n");
    for (int c = 0; c < 8; c++)
        put_cpu(c, 0, c < 4 ? 1804800 : c < 7 ? 2419200 : 2841600);
    expect_fast("Snapdragon 888 by frequency", 4, "4-7");

    /* The same with the device tree's capacities (which win over frequencies). */
    for (int c = 0; c < 8; c++)
        put_cpu(c, c < 4 ? 238 : c < 7 ? 732 : 1024, 0);
    expect_fast("Snapdragon 888 by capacity", 4, "4-7");

    /* Rockchip RK3588: 4 x A55 at 1.8 GHz, 4 x A76 at 2.4 (75%: LITTLE by frequency too). */
    new_root("rk3588");
    put("/sys/devices/system/cpu/online", "0-7\n");
    for (int c = 0; c < 8; c++)
        put_cpu(c, c < 4 ? 414 : 1024, c < 4 ? 1800000 : 2400000);
    expect_fast("RK3588", 4, "4-7");

    /* Jetson Orin: 12 A78AE alike; capacities all 1024: nothing to tell apart -> 0 (all). */
    new_root("orin");
    put("/sys/devices/system/cpu/online", "0-11\n");
    for (int c = 0; c < 12; c++)
        put_cpu(c, 1024, 2201600);
    expect_fast("Jetson AGX Orin", 0, NULL);

    /* Intel Core i7-1260P: 4 P-cores with SMT (CPUs 0-7), 8 E-cores (8-15); capacities all
     * 1024 on older kernels; favoured P-cores at a higher frequency than the other P-cores. */
    new_root("adl");
    put("/sys/devices/system/cpu/online", "0-15\n");
    put("/sys/devices/cpu_core/cpus", "0-7\n");
    put("/sys/devices/cpu_atom/cpus", "8-15\n");
    for (int c = 0; c < 16; c++)
        put_cpu(c, 1024, c < 2 ? 4700000 : c < 8 ? 4600000 : 3400000);
    expect_fast("Alder Lake P-cores listed", 8, "0-7");
    /* Without the hybrid PMU list: by frequency (E-cores at 72%). */
    new_root("adl-nolist");
    put("/sys/devices/system/cpu/online", "0-15\n");
    for (int c = 0; c < 16; c++)
        put_cpu(c, 1024, c < 2 ? 4700000 : c < 8 ? 4600000 : 3400000);
    expect_fast("Alder Lake by frequency", 8, "0-7");

    /* A phone with CPU 5 offline (its files gone): only online CPUs count. */
    new_root("offline");
    put("/sys/devices/system/cpu/online", "0-4,6-7\n");
    for (int c = 0; c < 8; c++)
        if (c != 5)
            put_cpu(c, 0, c < 4 ? 1804800 : 2419200);
    expect_fast("offline big core", 3, "4,6-7");

    /* A VM: no cpufreq, capacities alike. */
    new_root("vm");
    put("/sys/devices/system/cpu/online", "0-1\n");
    put_cpu(0, 1024, 0);
    put_cpu(1, 1024, 0);
    expect_fast("VM", 0, NULL);

    /* Malformed or missing files: 0 (every CPU), never a crash. */
    new_root("bad");
    put("/sys/devices/system/cpu/online", "0-3,x\n");
    expect_fast("malformed online list", 0, NULL);
    put("/sys/devices/system/cpu/online", "3-1\n");
    expect_fast("reversed range", 0, NULL);
    put("/sys/devices/system/cpu/online", "0-3\n");
    put_cpu(0, 0, 1000000);
    put_cpu(1, 0, 2000000);
    put("/sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq", "fast\n");
    put_cpu(3, 0, 2000000);
    expect_fast("non-numeric frequency", 0, NULL);
    new_root("empty");
    expect_fast("no sysfs at all", 0, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/vlm-test-pool-%d-*", (int)getpid());
    TH_CHECK(system(cmd) == 0, "%s", cmd);
}

typedef struct cover {
    atomic_int hits[1000];
} cover;

static void mark(void *ctx, size_t i0, size_t i1)
{
    cover *c = ctx;
    for (size_t i = i0; i < i1; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

/* Every item of [0, n) exactly once, for plain and guided splits, many jobs in a row. */
static void coverage_cases(void)
{
    static cover c;
    for (int threads = 1; threads <= 8; threads++) {
        pool *p = pool_create(threads);
        TH_CHECK(p != NULL, "pool_create(%d)", threads);
        if (!p)
            continue;
        const size_t sizes[] = {0, 1, 2, 7, 64, 999, 1000};
        for (int guided = 0; guided < 2; guided++)
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
                for (size_t grain = 1; grain <= 33; grain += 16) {
                    size_t n = sizes[si];
                    for (size_t i = 0; i < n; i++)
                        atomic_store(&c.hits[i], 0);
                    for (int rep = 0; rep < 20; rep++)
                        (guided ? pool_for_guided : pool_for)(p, n, grain, mark, &c);
                    int bad = 0;
                    for (size_t i = 0; i < n; i++)
                        bad += atomic_load(&c.hits[i]) != 20;
                    TH_CHECK(!bad, "%d threads, %s, n %zu, grain %zu: %d items not covered exactly once", threads,
                             guided ? "guided" : "plain", n, grain, bad);
                }
        pool_destroy(p);
    }
}

int main(void)
{
    fast_cpu_cases();
    coverage_cases();
    TH_CHECK(pool_default_threads() >= 1, "default threads %d", pool_default_threads());
    return th_report("test_pool");
}
