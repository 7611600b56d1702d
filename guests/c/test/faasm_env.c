/*
 * faasm_env: what a Faasm function sees of its environment. Outputs, one
 * per line: the whole environ, the conf flags, whether stdout and stderr
 * are terminals, what Faasm's env::getcwd import and wasi-libc's getcwd
 * answer.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "faasm.h"

extern char **environ;

FAASM_IMPORT("__faasm_conf_flag")
int32_t __faasm_conf_flag(const char *key);

/* Faasm's own getcwd import, under another C name than wasi-libc's. */
FAASM_IMPORT("getcwd")
int32_t faasm_getcwd(char *buf, int32_t len);

static char out[4096];
static size_t used;

static void add(const char *s) {
    size_t n = strlen(s);
    if (used + n < sizeof(out)) {
        memcpy(out + used, s, n);
        used += n;
    }
}

int main(void) {
    char line[256];
    for (char **e = environ; *e != NULL; e++) {
        add(*e);
        add(e[1] != NULL ? " " : "\n");
    }
    const char *flags[] = {"ALWAYS_ON", "ALWAYS_OFF", "PYTHON_PRELOAD", "NO_SUCH_FLAG"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        snprintf(line, sizeof(line), "%s=%d%s", flags[i], __faasm_conf_flag(flags[i]),
                 i + 1 < sizeof(flags) / sizeof(flags[0]) ? " " : "\n");
        add(line);
    }
    snprintf(line, sizeof(line), "isatty stdin=%d stdout=%d stderr=%d\n", isatty(0), isatty(1),
             isatty(2));
    add(line);
    char cwd[64] = {0};
    int32_t got = faasm_getcwd(cwd, sizeof(cwd));
    char small[4];
    int32_t too_small = faasm_getcwd(small, sizeof(small));
    char libc_cwd[64] = {0};
    snprintf(line, sizeof(line), "env.getcwd=%s returned_buf=%d too_small=%d libc getcwd=%s",
             cwd, got == (int32_t)(uintptr_t)cwd, too_small,
             getcwd(libc_cwd, sizeof(libc_cwd)) ? libc_cwd : "(null)");
    add(line);
    faasmSetOutput(out, used);
    return 0;
}
