/*
 * files: the filesystem a Faasm function sees. Input: text to store in the
 * shared file faasm://some_dir/shared.txt. Output, one check a line:
 * what the shared file held before, the read-only /etc, per-call /tmp and
 * working directory, paths that try to leave the sandbox (.., absolute
 * paths, symlinks) and a file-backed mmap.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faasm.h"

/* Faasm's mmap import (wasi-libc's own needs its emulation library). */
FAASM_IMPORT("mmap")
int32_t faasm_mmap(int32_t addr, int32_t len, int32_t prot, int32_t flags, int32_t fd, int64_t off);

static char out[4096];
static size_t used;

static void add(const char *fmt, const char *a, const char *b) {
    int n = snprintf(out + used, sizeof(out) - used, fmt, a, b);
    if (n > 0 && (size_t)n < sizeof(out) - used) {
        used += (size_t)n;
    }
}

/* The file's first line (up to 200 bytes), or NULL. */
static const char *first_line(const char *path) {
    static char buf[256];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    if (fgets(buf, 200, f) == NULL) {
        buf[0] = '\0';
    }
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* A path that must not reach the host's files: refused, or inside the sandbox. */
static const char *escape(const char *path) {
    const char *line = first_line(path);
    if (line == NULL) {
        return "blocked";
    }
    return strncmp(line, "root:x:0:0:root:/root:/bin/sh", 29) == 0 || line[0] == '1' ? "sandboxed"
                                                                                      : line;
}

int main(void) {
    size_t in_len = faasmGetInputSize();
    char *input = calloc(in_len + 1, 1);
    faasmGetInput(input, in_len);

    /* faasm:// shared files: kept across calls of the user. */
    struct stat st;
    if (stat("faasm://some_dir", &st) == -1) {
        mkdir("faasm://some_dir", 0700);
    }
    const char *before = first_line("faasm://some_dir/shared.txt");
    add("shared before=%s%s\n", before ? before : "(none)", "");
    add("shared write=%s%s\n", write_file("faasm://some_dir/shared.txt", input) == 0 ? "ok" : strerror(errno), "");
    const char *after = first_line("faasm://some_dir/shared.txt");
    add("shared after=%s%s\n", after ? after : "(none)", "");

    /* The read-only root files. */
    const char *hosts = first_line("/etc/hosts");
    add("etc/hosts=%s%s\n", hosts ? hosts : strerror(errno), "");
    add("etc write=%s%s\n", write_file("/etc/hosts", "x") == 0 ? "allowed" : "refused", "");

    /* Per-call /tmp and working directory: empty at the start of a call. */
    add("tmp fresh=%s%s\n", access("/tmp/a.txt", F_OK) == 0 ? "no" : "yes", "");
    add("cwd fresh=%s%s\n", access("work.txt", F_OK) == 0 ? "no" : "yes", "");
    write_file("/tmp/a.txt", "tmp data");
    write_file("work.txt", "work data");
    const char *tmp = first_line("/tmp/a.txt");
    add("tmp=%s%s\n", tmp ? tmp : strerror(errno), "");
    const char *work = first_line("/work.txt");
    add("cwd=%s%s\n", work ? work : strerror(errno), "");

    /* Leaving the sandbox. */
    add("dotdot=%s%s\n", escape("../../../../../../etc/passwd"), "");
    add("tmp dotdot=%s%s\n", escape("/tmp/../../../../../../etc/passwd"), "");
    add("absolute=%s%s\n", escape("/proc/self/environ"), "");
    symlink("/etc/passwd", "/tmp/abs_link");
    add("symlink absolute=%s%s\n", escape("/tmp/abs_link"), "");
    symlink("../../../../../../../../etc/passwd", "/tmp/rel_link");
    add("symlink relative=%s%s\n", escape("/tmp/rel_link"), "");

    /* File-backed mmap: the file's bytes in fresh pages. */
    write_file("/tmp/m.txt", "mapped bytes");
    int fd = open("/tmp/m.txt", O_RDONLY);
    int32_t addr = faasm_mmap(0, 12, 1 /* PROT_READ */, 2 /* MAP_PRIVATE */, fd, 0);
    char mapped[13] = {0};
    if (addr != -1) {
        memcpy(mapped, (const void *)(uintptr_t)(uint32_t)addr, 12);
    }
    add("mmap=%s%s", addr == -1 ? "failed" : mapped, "");
    faasmSetOutput(out, used);
    return 0;
}
