/* test_cli.c: vlm-run given what users get wrong or what the system does to it: option values
 * that are not numbers, out of range or overflowing (usage errors naming the option and the
 * value, never read as 0 or wrapped), a missing model or one that is a directory or a FIFO (an
 * error naming the file, not "out of memory", and no hang), a stdout that cannot be written (exit
 * code 1, not answers lost with 0), --json chats whose stdout stays one JSON object per line
 * (/stats, /help), questions with NUL bytes, and a context that fills up (a note, the chat goes
 * on after /reset). vlm-run is found as in test_chat (VLM_RUN_WRAPPER prefixes it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "golden.h"
#include "th.h"
#include "kernels.h"

static const char IMG[] = "fixtures/tiny-v2/goldens/image.jpg";

static char vlmrun[1200]; /* the command that runs vlm-run */
static char guard[64];    /* "timeout 120 " when available: a regression that hangs fails */
static char errpath[1100];
static char out[1 << 16], err[1 << 16];

/* Reads the file path into buf (cap bytes, NUL-terminated; "" if unreadable). */
static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
}

/* Runs vlm-run with args (shell syntax), stdin from `input` (NULL: /dev/null) and stdout to
 * `stdout_to` (NULL: captured into out); stderr goes to err. Returns the exit status, -1 if it
 * did not exit normally (a crash or the guard's kill shows as 124 or -1). */
static int run(const char *args, const char *input, const char *stdout_to)
{
    char cmd[12000];
    snprintf(cmd, sizeof cmd, "%s%s %s < %s 2> %s%s%s", guard, vlmrun, args, input ? input : "/dev/null", errpath,
             stdout_to ? " > " : "", stdout_to ? stdout_to : "");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    slurp(errpath, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Writes len bytes of text to path; returns 0 on success. */
static int write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(text, 1, len, f);
    return fclose(f) || n != len ? -1 : 0;
}

/* 1 if every line of text is one JSON object ({...}): what --json promises on stdout. */
static int json_lines_only(const char *text, int *n_lines)
{
    *n_lines = 0;
    for (const char *s = text; *s;) {
        const char *e = strchr(s, '\n');
        if (!e || s[0] != '{' || e[-1] != '}')
            return 0;
        ++*n_lines;
        s = e + 1;
    }
    return 1;
}

/* Option values that are not numbers or outside the range: exit 2, the option and the value
 * named, nothing run. */
static void bad_values(const char *model)
{
    static const char *const cases[][2] = {
        {"-n", "abc"},   {"-n", "-1"},        {"-n", "12x"},       {"-n", "99999999999"}, {"-n", ""},
        {"-t", "0"},     {"-t", "100000"},    {"-t", "4x"},        {"-t", "4294967297"},  {"--temp", "nan"},
        {"--temp", "-1"}, {"--temp", "1e39"}, {"--temp", "abc"},   {"--top-p", "2"},      {"--top-p", "-0.5"},
        {"--top-p", "nan"}, {"--top-k", "-5"}, {"--top-k", "1.5"}, {"--seed", "-1"},      {"--seed", "abc"},
        {"--seed", "18446744073709551616"},
    };
    char args[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "-m %s -p hi %s '%s'", model, cases[i][0], cases[i][1]);
        int st = run(args, NULL, NULL);
        char want[128];
        snprintf(want, sizeof want, "not '%s'", cases[i][1]);
        TH_CHECK(st == 2 && strstr(err, cases[i][0]) && strstr(err, want) && !*out,
                 "%s '%s': status %d, stderr '%s', stdout '%.40s'", cases[i][0], cases[i][1], st, err, out);
    }
    /* the edges are accepted */
    snprintf(args, sizeof args, "-m %s -p hi -n 2 -t 1 --temp 0.5 --top-p 1 --top-k 0 --seed 18446744073709551615",
             model);
    TH_CHECK(run(args, NULL, NULL) == 0, "edge values refused: %s", err);
}

/* Models and photos that cannot be read: exit 1 with the file and the reason. */
static void bad_files(const char *model, const char *dir)
{
    char args[4096], path[1200];
    int st = run("-m no/such/model.vlm -p hi", NULL, NULL);
    TH_CHECK(st == 1 && strstr(err, "no/such/model.vlm") && strstr(err, "No such file") && !strstr(err, "memory"),
             "missing model: status %d, '%s'", st, err);
    snprintf(args, sizeof args, "-m %s -p hi", dir);
    st = run(args, NULL, NULL);
    TH_CHECK(st == 1 && strstr(err, "directory") && !strstr(err, "memory"), "directory as model: status %d, '%s'", st,
             err);
    /* A FIFO nobody writes to: open() would block for ever. */
    snprintf(path, sizeof path, "%s/fifo", dir);
    unlink(path);
    if (mkfifo(path, 0600) == 0) {
        snprintf(args, sizeof args, "-m %s -p hi", path);
        st = run(args, NULL, NULL);
        TH_CHECK(st == 1 && strstr(err, "FIFO"), "FIFO as model: status %d, '%s'", st, err);
        snprintf(args, sizeof args, "-m %s -i %s -p hi", model, path);
        st = run(args, NULL, NULL);
        TH_CHECK(st == 1 && strstr(err, "FIFO"), "FIFO as photo: status %d, '%s'", st, err);
        snprintf(args, sizeof args, "-i %s --dump-rgb %s.ppm", path, path);
        st = run(args, NULL, NULL);
        TH_CHECK(st == 1 && strstr(err, "FIFO"), "FIFO for --dump-rgb: status %d, '%s'", st, err);
        unlink(path);
    }
}

/* A stdout that cannot be written: the answer is lost, so the exit code must say so. */
static void bad_stdout(const char *model, const char *img, const char *qfile)
{
    if (access("/dev/full", W_OK) != 0)
        return;
    char args[4096];
    snprintf(args, sizeof args, "-m %s -i %s -p hi -n 4", model, img);
    int st = run(args, NULL, "/dev/full");
    TH_CHECK(st == 1 && strstr(err, "stdout"), "text answer to /dev/full: status %d, '%s'", st, err);
    snprintf(args, sizeof args, "-m %s -i %s -i %s -p hi -n 4 --json", model, img, img);
    st = run(args, NULL, "/dev/full");
    TH_CHECK(st == 1 && strstr(err, "stdout"), "JSON answers to /dev/full: status %d, '%s'", st, err);
    /* a chat stops at the first answer it cannot write instead of answering every question */
    snprintf(args, sizeof args, "-m %s -i %s -n 4", model, img);
    st = run(args, qfile, "/dev/full");
    const char *first = strstr(err, "stdout");
    TH_CHECK(st == 1 && first && !strstr(first + 1, "stdout"), "chat to /dev/full: status %d, '%s'", st, err);
}

int main(int argc, char **argv)
{
    (void)argc;
    th_vlm_run_command(argv[0], vlmrun, sizeof vlmrun);
    if (system("command -v timeout > /dev/null 2>&1") == 0)
        snprintf(guard, sizeof guard, "timeout 120 ");

    char model[1024], stories[1024];
    if (golden_convert("tiny-v2", WT_F32, WT_F32, model, sizeof model) ||
        golden_convert("stories260K-hf", WT_F32, -1, stories, sizeof stories)) {
        TH_CHECK(0, "conversion failed");
        return th_report("test_cli");
    }
    snprintf(errpath, sizeof errpath, "%s.stderr", model);
    if (run("--version", NULL, NULL) != 0) {
        fprintf(stderr, "test_cli: cannot run %s: skipped\n", vlmrun);
        return th_report("test_cli");
    }
    char img[1024], dir[1100], qfile[1100];
    snprintf(img, sizeof img, "%s", TH_DATA(IMG));
    snprintf(dir, sizeof dir, "%s.dir", model);
    mkdir(dir, 0700);
    snprintf(qfile, sizeof qfile, "%s.questions", model);

    bad_values(model);
    bad_files(model, dir);

    /* --json chat: /stats and /help must not put text lines among the JSON objects; a line
     * with a NUL byte is refused (not asked cut short) and the chat goes on; a file name
     * followed by spaces still names the file. */
    char q[2048];
    int len = snprintf(q, sizeof q, "first\n/stats\n/help\nbad%cquestion\n/image %s  \nsecond\n", 0, img);
    TH_CHECK(write_file(qfile, q, (size_t)len) == 0, "cannot write %s", qfile);
    char args[4096];
    snprintf(args, sizeof args, "-m %s -i %s -n 4 --json", model, img);
    int st = run(args, qfile, NULL);
    int n_lines;
    TH_CHECK(json_lines_only(out, &n_lines) && n_lines == 2, "--json chat: %d lines, stdout '%s'", n_lines, out);
    TH_CHECK(st == 1 && strstr(err, "line 4") && strstr(err, "NUL") && strstr(err, "turn 1:") &&
                 strstr(err, "/reset"),
             "--json chat: status %d, stderr '%s'", st, err);
    TH_CHECK(strstr(out, "\"question\":\"second\"") && strstr(out, "\"turn\":1,\"question\":\"second\""),
             "/image with trailing spaces did not start a new conversation: '%s'", out);

    /* --json batch: a photo that cannot be read still gets its line, with the error. */
    snprintf(args, sizeof args, "-m %s -i %s -i %s.missing -p hi -n 4 --json", model, img, img);
    st = run(args, NULL, NULL);
    TH_CHECK(st == 1 && json_lines_only(out, &n_lines) && n_lines == 2 &&
                 strstr(out, ".missing\",\"question\":null,\"error\":\""),
             "--json batch with a missing photo: status %d, %d lines, '%s'", st, n_lines, out);

    bad_stdout(model, img, qfile);

    /* The context fills up: stories260K has 512 positions. The first answer stops with a
     * note; the next question does not fit and says how to go on (and, with --json, gets an
     * error object in its place, so the lines stay one per question); after /reset it works. */
    len = snprintf(q, sizeof q, "Once\nmore\n/reset\nOnce\n");
    TH_CHECK(write_file(qfile, q, (size_t)len) == 0, "cannot write %s", qfile);
    snprintf(args, sizeof args, "-m %s -n 0 --ignore-eos --json", stories);
    st = run(args, qfile, NULL);
    TH_CHECK(st == 1 && json_lines_only(out, &n_lines) && n_lines == 3, "full context chat: status %d, %d lines",
             st, n_lines);
    const char *e2 = strstr(out, "\"question\":\"more\",\"error\":\"");
    TH_CHECK(e2 && strstr(e2, "context") && strstr(e2, "}\n{\"image\""),
             "full context chat: the failed question's error object is missing or misplaced: '%s'", out);
    TH_CHECK(strstr(out, "\"stop\":\"context\"") && strstr(err, "context of 512 positions is full") &&
                 strstr(err, "fills the context: /reset"),
             "full context chat: stderr '%s'", err);
    /* stdin that cannot be read (a directory) is an error, not the end of the questions */
    snprintf(args, sizeof args, "-m %s", stories);
    st = run(args, dir, NULL);
    TH_CHECK(st == 1 && strstr(err, "stdin"), "directory as stdin: %d '%s'", st, err);

    /* /image with a text-only model names the model */
    len = snprintf(q, sizeof q, "/image %s\n", img);
    TH_CHECK(write_file(qfile, q, (size_t)len) == 0, "cannot write %s", qfile);
    snprintf(args, sizeof args, "-m %s", stories);
    st = run(args, qfile, NULL);
    TH_CHECK(st == 1 && strstr(err, stories) && strstr(err, "text-only"), "/image, text-only model: %d '%s'", st, err);
    snprintf(args, sizeof args, "-m %s -n 0 --ignore-eos -p Once", stories);
    st = run(args, NULL, NULL);
    TH_CHECK(st == 0 && strstr(err, "context of 512 positions is full") && !strstr(err, "/reset"),
             "one-shot full context: status %d, '%s'", st, err);

    unlink(qfile);
    unlink(errpath);
    rmdir(dir);
    remove(model);
    remove(stories);
    return th_report("test_cli");
}
