/*
 * files.c - a guest that uses the files of its mounts (issue 14).
 *
 *   files selftest IN OUT   IN a read-only mount holding input.txt, OUT a
 *                           writable one: reads, stats, lists IN (in readdir
 *                           order), then in OUT makes a directory, writes,
 *                           appends, seeks, pwrites, renames, unlinks,
 *                           truncates and syncs, and checks that IN refuses a
 *                           write (EROFS) and a rename into OUT (EXDEV). Prints
 *                           one line per check and "selftest: ok" (exit 0), or
 *                           "FAILED: ..." (exit 1). Leaves OUT/log.txt
 *                           ("Hello World") and OUT/trunc.txt ("abc").
 *   files fill OUT          writes 64 KiB chunks to OUT/fill.bin until a write
 *                           fails; prints "filled N bytes" and exits 0 if it
 *                           failed with ENOSPC, else exits 1.
 *   files ls DIR            prints the names readdir gives for DIR, one a line.
 *   files fds DIR N         opens DIR/fd.txt (created first) up to N times,
 *                           keeping every descriptor open; prints "opened K"
 *                           and, if an open failed, "then: <strerror>".
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what) {
    if (ok) {
        printf("%s: ok\n", what);
    } else {
        printf("FAILED: %s (errno %d: %s)\n", what, errno, strerror(errno));
        failures++;
    }
}

static char *path(const char *dir, const char *name) {
    static char buf[4][512];
    static int next;
    char *out = buf[next++ % 4];
    snprintf(out, sizeof buf[0], "%s/%s", dir, name);
    return out;
}

static int read_all(const char *file, char *buf, size_t cap) {
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

static int selftest(const char *in, const char *out) {
    char buf[256];

    /* read and stat */
    int n = read_all(path(in, "input.txt"), buf, sizeof buf);
    check(n >= 0, "read input.txt");
    if (n >= 0)
        printf("input.txt: %s\n", buf);
    struct stat st;
    check(stat(path(in, "input.txt"), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == n,
          "stat input.txt");

    /* readdir, in the order the host gives */
    DIR *dir = opendir(in);
    check(dir != NULL, "opendir IN");
    if (dir) {
        printf("readdir:");
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL)
            printf(" %s", entry->d_name);
        printf("\n");
        closedir(dir);
    }

    /* mkdir, write, append, lseek, pwrite */
    check(mkdir(path(out, "dir"), 0755) == 0, "mkdir");
    check(mkdir(path(out, "dir"), 0755) != 0 && errno == EEXIST, "mkdir again is EEXIST");
    int fd = open(path(out, "dir/log.txt"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    check(fd >= 0 && write(fd, "hello", 5) == 5, "write");
    close(fd);
    fd = open(path(out, "dir/log.txt"), O_WRONLY | O_APPEND);
    check(fd >= 0 && write(fd, " world", 6) == 6, "append");
    close(fd);
    fd = open(path(out, "dir/log.txt"), O_RDWR);
    check(fd >= 0 && lseek(fd, 0, SEEK_SET) == 0 && write(fd, "H", 1) == 1, "lseek and write");
    check(pwrite(fd, "W", 1, 6) == 1, "pwrite");
    check(lseek(fd, 0, SEEK_END) == 11, "lseek to the end");
    close(fd);

    /* rename within OUT */
    check(rename(path(out, "dir/log.txt"), path(out, "log.txt")) == 0, "rename");
    n = read_all(path(out, "log.txt"), buf, sizeof buf);
    check(n == 11 && strcmp(buf, "Hello World") == 0, "read back");
    printf("log.txt: %s\n", n >= 0 ? buf : "");

    /* unlink */
    fd = open(path(out, "tmp.txt"), O_CREAT | O_WRONLY, 0644);
    close(fd);
    check(unlink(path(out, "tmp.txt")) == 0, "unlink");
    check(stat(path(out, "tmp.txt"), &st) != 0 && errno == ENOENT, "unlinked is ENOENT");

    /* ftruncate and fsync */
    fd = open(path(out, "trunc.txt"), O_CREAT | O_RDWR, 0644);
    check(fd >= 0 && write(fd, "abcdef", 6) == 6 && ftruncate(fd, 3) == 0, "ftruncate");
    check(fsync(fd) == 0, "fsync");
    check(fstat(fd, &st) == 0 && st.st_size == 3, "size after ftruncate");
    close(fd);

    /* rmdir of the now empty directory */
    check(rmdir(path(out, "dir")) == 0, "rmdir");

    /* IN is read-only; a rename from IN to OUT crosses devices */
    fd = open(path(in, "new.txt"), O_CREAT | O_WRONLY, 0644);
    check(fd < 0 && errno == EROFS, "create in IN is EROFS");
    check(rename(path(in, "input.txt"), path(out, "moved.txt")) != 0 && errno == EXDEV,
          "rename IN to OUT is EXDEV");

    if (failures) {
        printf("selftest: %d failed\n", failures);
        return 1;
    }
    printf("selftest: ok\n");
    return 0;
}

static int fill(const char *out) {
    static char chunk[64 * 1024];
    memset(chunk, 'x', sizeof chunk);
    int fd = open(path(out, "fill.bin"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) {
        printf("open: %s\n", strerror(errno));
        return 1;
    }
    long long total = 0;
    for (;;) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0)
            break;
        total += n;
    }
    int error = errno;
    close(fd);
    printf("filled %lld bytes\n", total);
    if (error != ENOSPC) {
        printf("then: %s\n", strerror(error));
        return 1;
    }
    return 0;
}

static int ls(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        printf("opendir: %s\n", strerror(errno));
        return 1;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        printf("%s\n", entry->d_name);
    closedir(dir);
    return 0;
}

static int fds(const char *dir, long n) {
    int fd = open(path(dir, "fd.txt"), O_CREAT | O_WRONLY, 0644);
    if (fd < 0) {
        printf("open: %s\n", strerror(errno));
        return 1;
    }
    close(fd);
    long opened = 0;
    int error = 0;
    for (long i = 0; i < n; i++) {
        if (open(path(dir, "fd.txt"), O_RDONLY) < 0) {
            error = errno;
            break;
        }
        opened++;
    }
    printf("opened %ld\n", opened);
    if (error)
        printf("then: %s\n", strerror(error));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "selftest") == 0)
        return selftest(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2]);
    if (argc == 3 && strcmp(argv[1], "ls") == 0)
        return ls(argv[2]);
    if (argc == 4 && strcmp(argv[1], "fds") == 0)
        return fds(argv[2], strtol(argv[3], NULL, 10));
    fprintf(stderr, "usage: files selftest IN OUT | files fill OUT | files ls DIR | files fds DIR N\n");
    return 2;
}
