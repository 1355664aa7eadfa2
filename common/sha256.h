/* SHA-256 and hex helpers: thin wrappers over OpenSSL EVP so that every
 * caller hashes the same way and no caller touches EVP contexts directly. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define RB_SHA256_LEN     32
#define RB_SHA256_HEX_LEN 64

/* Hashes len bytes of data into out. Aborts only if OpenSSL cannot allocate
 * a digest context (start-up class failure; there is no sane recovery). */
void rb_sha256(const void *data, size_t len, uint8_t out[32]);

/* Writes n bytes as 2n lowercase hex characters plus NUL into out (2n+1). */
void rb_hex(const uint8_t *in, size_t n, char *out /* 2n+1 */);

/* Parses exactly 2n hex characters (either case) followed by NUL into n
 * bytes. -EINVAL on any other length or a non-hex character; out is then
 * unspecified. */
int rb_unhex(const char *hex, uint8_t *out, size_t n);
