/* Small bounded helpers shared by every program: number parsing without
 * atoi, MAC address text forms, monotonic time. Pure functions, no I/O. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define RB_MIN(a, b)     ((a) < (b) ? (a) : (b))
#define RB_MAX(a, b)     ((a) > (b) ? (a) : (b))

/* Parses a whole decimal string into [min, max]. -EINVAL if it is not a
 * number or has trailing characters, -ERANGE if out of range. */
int rb_strtonum(const char *s, long long min, long long max, long long *ret);

/* Parses "aa:bb:cc:dd:ee:ff" or "aa-bb-..." (case-insensitive). */
int rb_mac_parse(const char *s, uint8_t ret[6]);
/* Writes "aa:bb:cc:dd:ee:ff" (lower case) into buf of at least 18 bytes. */
char *rb_mac_format(const uint8_t mac[6], char buf[static 18]);

uint64_t rb_now_usec(void);  /* CLOCK_MONOTONIC */
uint64_t rb_wall_usec(void); /* CLOCK_REALTIME */

/* Checks that a string names a file below a root: relative, no "..", no
 * empty or "." components, no backslashes, no control characters.
 * Used before openat2(RESOLVE_BENEATH), which is the real guard. */
bool rb_path_is_safe(const char *path);

/* Formats a message into err (when err is non-NULL and errlen > 0) and
 * returns -EINVAL: the error path of every parser that explains itself. */
int rb_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Whole-buffer I/O that retries short transfers and EINTR. Return 0 or
 * -errno; rb_pread_all() returns -EIO at end of file. */
int rb_write_all(int fd, const void *data, size_t len);
int rb_pwrite_all(int fd, const void *data, size_t len, uint64_t off);
int rb_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* Opens path below the directory dirfd; symlinks and ".." may not escape it.
 * Uses openat2(RESOLVE_BENEATH) where the kernel has it and falls back to a
 * per-component O_NOFOLLOW walk. Returns an fd or -errno. */
int rb_open_beneath(int dirfd, const char *path, int flags);
