/* test_alloc.c: allocation-failure injection. This program replaces malloc/calloc/realloc/free
 * (glibc forwards to __libc_*) and mmap/munmap (to the system calls), so every allocation and
 * mapping of libvlm.a (linked statically into it: the weight file, the KV cache) and every
 * allocation of libc on its behalf is counted. For model load, generation, a two-turn chat,
 * image decoding and conversion it makes the Nth allocation fail for N = 1, 2, ... until the
 * operation succeeds: each failing run must return VLM_ENOMEM with a message, leave no
 * allocation live, and not crash; the answers computed after failures must equal those of a
 * clean run. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "convert.h"
#include "golden.h"
#include "image.h"
#include "model.h"
#include "th.h"
#include "vlm.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ALLOC_HOOKS 0 /* the sanitizer owns malloc: replacing it here would bypass its checks */
#elif defined(VLM_TEST_STATIC)
#define ALLOC_HOOKS 0 /* fully static (STATIC=1): libc.a's malloc.o defines malloc and __libc_malloc */
#else
#define ALLOC_HOOKS 1
#endif

#if ALLOC_HOOKS
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

/* The injection window: while armed, allocation attempts are numbered from 1 and attempt
 * fail_at fails; every pointer returned inside the window is recorded so that one still live
 * at the end is a leak. Pointers from before the window (stdio buffers) are not tracked. */
static atomic_int armed;
static atomic_long n_attempts;
static long fail_at;
static atomic_int injected;

/* Open-addressing set of live tracked pointers, guarded by a spin lock (pool workers may
 * allocate through libc). TOMB marks a deleted slot so probe chains stay intact. */
#define SET_CAP (1u << 16)
#define TOMB ((void *)1)
static void *set_slot[SET_CAP];
static long set_live;
static atomic_flag set_lock = ATOMIC_FLAG_INIT;
static int set_overflow;

/* Mappings made inside the window, as [start, end) page ranges (munmap may trim either end, as
 * the KV cache's alignment does); one still non-empty at the end is a leak. Only the library's
 * own calls come here (libc's internal mappings do not), so a small table suffices. */
enum { MAPS = 64 };
static struct {
    uintptr_t start, end;
} maps[MAPS];
static atomic_flag maps_lock = ATOMIC_FLAG_INIT;

static size_t ptr_hash(const void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (SET_CAP - 1); }

static void set_add(void *p)
{
    while (atomic_flag_test_and_set(&set_lock)) {
    }
    size_t i = ptr_hash(p);
    size_t probes = 0;
    while (set_slot[i] && set_slot[i] != TOMB && probes < SET_CAP)
        i = (i + 1) & (SET_CAP - 1), probes++;
    if (probes < SET_CAP) {
        set_slot[i] = p;
        set_live++;
    } else {
        set_overflow = 1;
    }
    atomic_flag_clear(&set_lock);
}

static void set_remove(void *p)
{
    while (atomic_flag_test_and_set(&set_lock)) {
    }
    size_t i = ptr_hash(p);
    for (size_t probes = 0; set_slot[i] && probes < SET_CAP; probes++, i = (i + 1) & (SET_CAP - 1))
        if (set_slot[i] == p) {
            set_slot[i] = TOMB;
            set_live--;
            break;
        }
    atomic_flag_clear(&set_lock);
}

/* Clears the set (between runs; a leak has been reported already). */
static void set_clear(void)
{
    memset(set_slot, 0, sizeof set_slot);
    memset(maps, 0, sizeof maps);
    set_live = 0;
    set_overflow = 0;
}

/* Returns 1 if this attempt must fail (the fail_at-th attempt of an armed window). */
static int should_fail(void)
{
    if (!atomic_load(&armed))
        return 0;
    long k = atomic_fetch_add(&n_attempts, 1) + 1;
    if (k == fail_at) {
        atomic_store(&injected, 1);
        errno = ENOMEM; /* as glibc's malloc does: libc callers (fopen) report it */
        return 1;
    }
    return 0;
}

void *malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __libc_malloc(n);
    if (p && atomic_load(&armed))
        set_add(p);
    return p;
}

void *calloc(size_t n, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = __libc_calloc(n, size);
    if (p && atomic_load(&armed))
        set_add(p);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (should_fail())
        return NULL; /* the old block stays valid, as a real failure leaves it */
    void *p = __libc_realloc(old, n);
    if (p && atomic_load(&armed)) {
        if (old)
            set_remove(old);
        set_add(p);
    }
    return p;
}

void free(void *p)
{
    if (p && atomic_load(&armed))
        set_remove(p);
    __libc_free(p);
}


static uintptr_t page_up(uintptr_t a)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    return (a + pg - 1) / pg * pg;
}

/* Live mappings made inside the window. */
static long maps_live(void)
{
    long n = 0;
    for (int i = 0; i < MAPS; i++)
        n += maps[i].end > maps[i].start;
    return n;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (should_fail())
        return MAP_FAILED;
    void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && atomic_load(&armed)) {
        while (atomic_flag_test_and_set(&maps_lock)) {
        }
        int i = 0;
        while (i < MAPS && maps[i].end > maps[i].start)
            i++;
        if (i < MAPS)
            maps[i].start = (uintptr_t)p, maps[i].end = page_up((uintptr_t)p + len);
        else
            set_overflow = 1;
        atomic_flag_clear(&maps_lock);
    }
    return p;
}

int munmap(void *addr, size_t len)
{
    uintptr_t a = (uintptr_t)addr, b = page_up(a + len);
    while (atomic_flag_test_and_set(&maps_lock)) {
    }
    for (int i = 0; i < MAPS; i++) {
        if (maps[i].end <= a || maps[i].start >= b)
            continue;
        if (a <= maps[i].start)
            maps[i].start = b < maps[i].end ? b : maps[i].end; /* the front (or all) goes */
        else
            maps[i].end = a; /* the back goes (the library never unmaps a middle) */
    }
    atomic_flag_clear(&maps_lock);
    return (int)syscall(SYS_munmap, addr, len);
}
#endif

/* One operation under test: returns 0 or a VLM_E* code with e filled; must release everything
 * it allocated whether it fails or not. */
typedef int (*op_fn)(void *ctx, vlm_error *e);

/* Runs op with the Nth allocation failing for N = 1, 2, ... until it succeeds without reaching
 * N. Checks the code, the message and the live set of every run; returns the number of runs. */
/* Valgrind replaces malloc in the executable too: the hooks never run under it. */
static int under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

static long sweep(const char *name, op_fn op, void *ctx, long max_runs)
{
#if ALLOC_HOOKS
    if (under_valgrind()) {
        fprintf(stderr, "%s: skipped (valgrind owns malloc)\n", name);
        return 0;
    }
    vlm_error e;
    /* Warm-up: libc caches (thread stacks, stdio) are filled outside the tracked window. */
    int rc = op(ctx, &e);
    TH_CHECK(rc == 0, "%s: fails without injection: %s", name, e.msg);
    if (rc)
        return 0;
    long total = 0, leaks = 0, bad = 0;
    long n;
    for (n = 1; n <= max_runs; n++) {
        memset(&e, 0, sizeof e);
        set_clear();
        atomic_store(&n_attempts, 0);
        atomic_store(&injected, 0);
        fail_at = n;
        atomic_store(&armed, 1);
        rc = op(ctx, &e);
        atomic_store(&armed, 0);
        long attempts = atomic_load(&n_attempts);
        long live = set_live + maps_live();
        int hit = atomic_load(&injected);
        total = attempts;
        if (live) {
            leaks++;
            TH_CHECK(0, "%s: allocation %ld failing leaks %ld block(s) or mapping(s) (rc %d: %s)", name, n, live, rc,
                     e.msg);
        }
        TH_CHECK(!set_overflow, "%s: tracking set overflow", name);
        if (!hit) /* the operation needed fewer than n allocations: all done */
            break;
        if (rc == 0)
            continue; /* the failure was absorbed (e.g. a fallback without memory) */
        /* A libc call failing for memory (fopen) is reported as VLM_EIO with its reason. */
        int libc_enomem = rc == VLM_EIO && strstr(e.msg, strerror(ENOMEM));
        if ((rc != VLM_ENOMEM && !libc_enomem) || !e.msg[0]) {
            bad++;
            TH_CHECK(0, "%s: allocation %ld failing gives rc %d (%s), expected VLM_ENOMEM", name, n, rc, e.msg);
        }
        if (n <= 3 || n % 50 == 0)
            fprintf(stderr, "  %-14s alloc %3ld fails -> %s\n", name, n, e.msg);
    }
    TH_CHECK(n <= max_runs, "%s: still failing after %ld runs", name, max_runs);
    TH_CHECK(total > 0, "%s: no allocation was seen: the hooks are not linked in", name);
    fprintf(stderr, "%-16s %ld allocations, %ld failure runs, %ld leaking, %ld with a wrong code\n", name, total,
            n - 1, leaks, bad);
    set_clear();
    return n - 1;
#else
    (void)op, (void)ctx, (void)max_runs;
    fprintf(stderr, "%s: skipped (malloc belongs to the sanitizer or to a static libc)\n", name);
    return 0;
#endif
}

typedef struct gen_ctx {
    const char *path;
    vlm_model *vm;
    const vlm_image *img;
    int ref_ids[4]; /* the ids of the first successful op_generate */
    int have_ref;
    int chat_ref[4]; /* op_chat's second answer */
    int have_chat_ref;
} gen_ctx;

static int op_vlm_open(void *ctx, vlm_error *e)
{
    const gen_ctx *g = ctx;
    vlm_model *vm;
    int rc = vlm_open(g->path, 2, &vm, e);
    if (!rc)
        vlm_close(vm);
    return rc;
}

static int op_model_open(void *ctx, vlm_error *e)
{
    const gen_ctx *g = ctx;
    model m;
    int rc = model_open(g->path, 1, "ref", &m, e);
    if (!rc)
        model_close(&m);
    return rc;
}

/* A fresh model and one short generation with the image: the first call grows every buffer. */
static int op_open_generate(void *ctx, vlm_error *e)
{
    const gen_ctx *g = ctx;
    vlm_model *vm;
    int rc = vlm_open(g->path, 2, &vm, e);
    if (rc)
        return rc;
    vlm_request rq = {.prompt = "What is in the image?", .image_rgb = g->img->rgb, .image_width = g->img->width,
                      .image_height = g->img->height, .max_new_tokens = 3, .ignore_eos = 1};
    vlm_result res;
    rc = vlm_generate(vm, &rq, &res, e);
    vlm_close(vm);
    return rc;
}

/* Generation on a model already open: after a failed call the next one must still work. */
static int op_generate(void *ctx, vlm_error *e)
{
    gen_ctx *g = ctx;
    vlm_request rq = {.prompt = "Describe it. What colors do you see?", .image_rgb = g->img->rgb,
                      .image_width = g->img->width, .image_height = g->img->height, .max_new_tokens = 4,
                      .ignore_eos = 1};
    vlm_result res;
    int rc = vlm_generate(g->vm, &rq, &res, e);
    if (rc)
        return rc;
    /* After failed calls the model must still compute the same answer (no stale state). */
    if (!g->have_ref) {
        memcpy(g->ref_ids, res.ids, sizeof g->ref_ids);
        g->have_ref = 1;
    }
    TH_CHECK(res.n_ids == 4 && !memcmp(res.ids, g->ref_ids, sizeof g->ref_ids), "generate: ids differ after failures");
    return 0;
}

/* The conversation API: encode the image, a chat of two turns (the second reuses the cache),
 * everything freed; the second answer must match the first successful run's. */
static int op_chat(void *ctx, vlm_error *e)
{
    gen_ctx *g = ctx;
    vlm_image_embed *img = NULL;
    vlm_chat *chat = NULL;
    int rc = vlm_encode_image(g->vm, g->img->rgb, g->img->width, g->img->height, &img, e);
    if (!rc)
        rc = vlm_chat_new(g->vm, &chat, e);
    vlm_result res;
    vlm_request rq = {.prompt = "What is in the image?", .max_new_tokens = 3, .ignore_eos = 1};
    if (!rc)
        rc = vlm_chat_ask(chat, &rq, img, &res, e);
    rq.prompt = "And what else?";
    rq.max_new_tokens = 4;
    if (!rc)
        rc = vlm_chat_ask(chat, &rq, NULL, &res, e);
    if (!rc) {
        if (!g->have_chat_ref) {
            memcpy(g->chat_ref, res.ids, sizeof g->chat_ref);
            g->have_chat_ref = 1;
        }
        TH_CHECK(res.n_ids == 4 && !memcmp(res.ids, g->chat_ref, sizeof g->chat_ref), "chat: ids differ after failures");
    }
    vlm_chat_free(chat);
    vlm_image_embed_free(img);
    return rc;
}

static int op_decode(void *ctx, vlm_error *e)
{
    vlm_image img;
    int rc = image_decode_file(ctx, IMAGE_EXIF_APPLY, NULL, &img, e);
    image_free(&img);
    return rc;
}

typedef struct conv_ctx {
    const char *fixture;
    char out[1100];
} conv_ctx;

static int op_convert(void *ctx, vlm_error *e)
{
    conv_ctx *c = ctx;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", TH_DATA("fixtures"), c->fixture);
    convert_opts o = {.model_dir = dir, .out_path = c->out, .quant = WT_Q8, .vision_quant = -1};
    int rc = convert_model(&o, e);
    remove(c->out);
    return rc;
}

int main(int argc, char **argv)
{
    /* `test_alloc convert` adds the converter sweep (hundreds of conversions: slow). */
    int with_convert = argc > 1 && !strcmp(argv[1], "convert");
    char path[1024];
    if (golden_convert("tiny-v2", WT_F32, WT_F32, path, sizeof path)) {
        TH_CHECK(0, "cannot convert the tiny-v2 fixture");
        return th_report("test_alloc");
    }
    vlm_image img;
    vlm_error e;
    int rc = image_decode_file(TH_DATA("images/jpeg/crop_65x47_420.jpg"), IMAGE_EXIF_APPLY, NULL, &img, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (rc)
        return th_report("test_alloc");
    gen_ctx g = {.path = path, .img = &img};

    sweep("model_open", op_model_open, &g, 1000);
    sweep("vlm_open", op_vlm_open, &g, 1000);
    sweep("open+generate", op_open_generate, &g, 1000);
    rc = vlm_open(path, 2, &g.vm, &e);
    TH_CHECK(rc == 0, "%s", e.msg);
    if (!rc) {
        sweep("generate", op_generate, &g, 1000);
        sweep("chat", op_chat, &g, 1000);
        vlm_close(g.vm);
    }

    static const char *const images[] = {
        "images/jpeg/crop_65x47_420.jpg",      /* baseline, 4:2:0 */
        "images/jpeg/crop_65x47_prog_420.jpg", /* progressive */
        "images/jpeg/orient_2.jpg",            /* EXIF orientation applied */
        "images/png/pngsuite/basn2c08.png",    /* RGB */
        "images/png/pngsuite/basi3p08.png",    /* interlaced palette */
        "images/png/pngsuite/basn6a16.png",    /* 16-bit RGBA */
        "images/ppm/monkey16.pgm",             /* 16-bit gray PNM */
    };
    for (size_t i = 0; i < sizeof images / sizeof *images; i++)
        sweep(strrchr(images[i], '/') + 1, op_decode, (void *)TH_DATA(images[i]), 1000);

    if (with_convert) {
        conv_ctx c = {.fixture = "tiny-v2"};
        snprintf(c.out, sizeof c.out, "%s.alloc.vlm", path);
        sweep("convert", op_convert, &c, 100000);
        c.fixture = "tiny-v1";
        sweep("convert v1", op_convert, &c, 100000);
    }
    image_free(&img);
    remove(path);
    return th_report("test_alloc");
}
