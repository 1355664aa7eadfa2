/* SHA-256 and hex helpers over OpenSSL EVP.
 * Owns nothing between calls. Never logs; the only failure OpenSSL can have
 * here is allocation of the digest context, which aborts (as at start-up). */
#include "common/sha256.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void rb_sha256(const void *data, size_t len, uint8_t out[32])
{
	EVP_MD_CTX *ctx;
	unsigned int n = 0;

	/* The digest is fetched once: EVP_sha256() in a one-shot EVP_Digest
	 * looks it up again on every call under a global lock, and with one
	 * call per 64 KiB chunk from several threads that lock cost more
	 * than the hashing (measured: 20 futex calls per chunk). */
	pthread_once(&sha256_once, sha256_fetch);
	ctx = EVP_MD_CTX_new();
	if (!sha256_md || !ctx || EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
	    EVP_DigestUpdate(ctx, data, len) != 1 || EVP_DigestFinal_ex(ctx, out, &n) != 1 ||
	    n != 32)
		abort();
	EVP_MD_CTX_free(ctx);
}

void rb_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int rb_unhex(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		/* A NUL ends the string early and is not a hex digit: checked
		 * before reading past it. */
		hi = hexval(hex[2 * i]);
		if (hi < 0)
			return -EINVAL;
		lo = hexval(hex[2 * i + 1]);
		if (lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	if (hex[2 * n] != '\0')
		return -EINVAL;
	return 0;
}
