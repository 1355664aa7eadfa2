/* SHA-256 and hex helpers over OpenSSL EVP.
 * Owns nothing between calls. Never logs; the only failure OpenSSL can have
 * here is allocation of the digest context, which aborts (as at start-up). */
#include "common/sha256.h"

#include <errno.h>
#include <stdlib.h>

#include <openssl/evp.h>

void rb_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	/* EVP_Digest is the one-shot form: it allocates and frees the context. */
	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		abort();
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
