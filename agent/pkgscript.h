/* Package scripts: /bin/sh SCRIPT run chrooted into a root directory with a
 * time limit and its output captured. See agent/pkgscript.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Appends k bytes of data to the tail buffer out (*olen bytes used, cap
 * bytes at most), dropping the oldest bytes when it is full: the end of a
 * script's output is the part that says why it failed. */
void agent_tail_append(char *out, size_t *olen, size_t cap, const char *data, size_t k);

/* Makes the first len bytes of s one printable line: newlines and tabs
 * become spaces, other control characters '?'; s[len] = NUL. */
void agent_tail_line(char *s, size_t len);

/* Runs "/bin/sh script arg" in a child that chroots into rootfd (chdir /,
 * stdin /dev/null, stdout and stderr into a pipe, its own process group,
 * environment PATH, LC_ALL=C and env[] (NULL-terminated, may be NULL)).
 * The whole group is killed at limit_s seconds and when the script ends.
 * 0 with *ret_status (waitpid's), *ret_timed_out and the last outlen - 1
 * bytes of output as one line in out; -errno if it could not be started.
 * Exit status 127: the root has no /bin/sh (the output says so). */
int agent_chroot_sh(int rootfd, const char *script, const char *arg, char *const env[],
                    unsigned limit_s, int *ret_status, bool *ret_timed_out, char *out,
                    size_t outlen);
