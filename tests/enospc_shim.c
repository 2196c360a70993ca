/* Test-only LD_PRELOAD shim: a file system that fills up.
 *
 * Writes to files under $VX_ENOSPC_DIR succeed until $VX_ENOSPC_BUDGET bytes have
 * been written to such files by this process; the write that crosses the budget
 * is cut short and every later one fails with ENOSPC, as on a full disk.
 * Intercepts write, pwrite(64), writev and fwrite (numpy's tofile); everything
 * outside the directory is untouched. Built by tests/test_disk_full.py with gcc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long long used = 0;

static int under_dir(int fd) {
    const char *dir = getenv("VX_ENOSPC_DIR");
    if (!dir || !*dir || fd < 0) return 0;
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    size_t len = strlen(dir);
    return strncmp(target, dir, len) == 0 && (target[len] == '/' || target[len] == 0);
}

/* How many of `count` bytes may go to fd now: count, fewer, or -1 (full). */
static long long allowed(int fd, size_t count) {
    if (count == 0 || !under_dir(fd)) return (long long)count;
    const char *b = getenv("VX_ENOSPC_BUDGET");
    long long left = (b ? atoll(b) : 0) - used;
    if (left <= 0) return -1;
    return (long long)count < left ? (long long)count : left;
}

static void count(int fd, long long n) {
    if (n > 0 && under_dir(fd)) used += n;
}

ssize_t write(int fd, const void *buf, size_t n) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "write");
    long long ok = allowed(fd, n);
    if (ok < 0) { errno = ENOSPC; return -1; }
    ssize_t done = real(fd, buf, (size_t)ok);
    count(fd, done);
    return done;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite");
    long long ok = allowed(fd, n);
    if (ok < 0) { errno = ENOSPC; return -1; }
    ssize_t done = real(fd, buf, (size_t)ok, off);
    count(fd, done);
    return done;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = dlsym(RTLD_NEXT, "writev");
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    long long ok = allowed(fd, total);
    if (ok < 0) { errno = ENOSPC; return -1; }
    if ((size_t)ok == total) {
        ssize_t done = real(fd, iov, cnt);
        count(fd, done);
        return done;
    }
    ssize_t done = 0;  /* what fits, from the first buffers on: a short write */
    for (int i = 0; i < cnt && done < ok; i++) {
        size_t part = iov[i].iov_len < (size_t)(ok - done) ? iov[i].iov_len : (size_t)(ok - done);
        ssize_t n = write(fd, iov[i].iov_base, part);
        if (n <= 0) break;
        done += n;
    }
    return done;
}

size_t fwrite(const void *ptr, size_t size, size_t n, FILE *stream) {
    static size_t (*real)(const void *, size_t, size_t, FILE *);
    if (!real) real = dlsym(RTLD_NEXT, "fwrite");
    int fd = fileno(stream);
    if (size == 0 || !under_dir(fd)) return real(ptr, size, n, stream);
    long long ok = allowed(fd, size * n);
    if (ok < 0) { errno = ENOSPC; return 0; }
    size_t items = (size_t)ok / size;
    size_t done = real(ptr, size, items, stream);
    used += (long long)(done * size);
    if (items < n) errno = ENOSPC;
    return done;
}
