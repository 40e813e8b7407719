/*
 * hello.c - the basic WASI preview1 I/O surface in one small command.
 *
 * Demonstrates, in order:
 *   - stdout:  prints "hello from wasm"
 *   - argv:    prints argv[1..] one per line as "arg[i]=..."
 *   - environ: prints "NAME=..." if the env var NAME is set
 *   - stdin:   reads ALL of stdin, prints "stdin: <N> bytes" on its own
 *              line, then echoes those N bytes back unchanged
 *   - stderr:  writes "hello: done"
 *   - exit:    exits with the integer in env var EXIT_CODE (default 0),
 *              which becomes a WASI proc_exit(code)
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    printf("hello from wasm\n");

    for (int i = 1; i < argc; i++)
        printf("arg[%d]=%s\n", i, argv[i]);

    const char *name = getenv("NAME");
    if (name != NULL)
        printf("NAME=%s\n", name);

    /* Slurp stdin into a growing buffer. */
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (buf == NULL)
        return 1;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                return 1;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0)
            break; /* EOF or error */
    }

    printf("stdin: %zu bytes\n", len);
    fwrite(buf, 1, len, stdout);
    fflush(stdout);
    free(buf);

    fprintf(stderr, "hello: done\n");

    const char *code = getenv("EXIT_CODE");
    return code != NULL ? atoi(code) : 0;
}
