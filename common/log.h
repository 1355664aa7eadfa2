/* Logging for every rackboot program.
 * Programs pick the sink once (stderr in the foreground, syslog as a daemon);
 * library code logs only at debug level and lets the program decide what to say.
 * Strings that came from the network must go through rb_escape() first. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

void rb_log_open(const char *ident, bool use_syslog, int max_level);
void rb_log_set_level(int max_level);
int rb_log_level(void);
void rb_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) rb_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  rb_log(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  rb_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) rb_log(LOG_DEBUG, __VA_ARGS__)

/* Copies len bytes of untrusted src into dst as printable ASCII, with \xNN
 * escapes for anything else, always NUL-terminated and truncated to fit.
 * Returns dst so it can sit inside a log call. */
char *rb_escape(char *dst, size_t dstlen, const void *src, size_t len);
