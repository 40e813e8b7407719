/*
 * memhog.c - a guest that tries to use unbounded memory.
 *
 * Allocates 1 MiB chunks forever and writes to every byte of each one, so
 * the linear memory really grows (memory.grow) page by page. Prints nothing.
 * When malloc finally returns NULL (the host refused to grow memory, or the
 * 4 GiB wasm32 ceiling was hit) it calls abort(), which in wasi-libc is a
 * wasm `unreachable` trap. Used to test the host's memory limit.
 */
#include <stdlib.h>
#include <string.h>

#define CHUNK (1024 * 1024)

/* Each chunk's first word links to the previous one, and the list head is
 * stored through a volatile pointer, so the compiler cannot prove the
 * allocations are dead and optimise them away. */
static void *volatile head;

int main(void) {
    for (;;) {
        void **chunk = malloc(CHUNK);
        if (chunk == NULL)
            abort();
        memset(chunk, 0xA5, CHUNK);
        chunk[0] = head;
        head = chunk;
    }
}
