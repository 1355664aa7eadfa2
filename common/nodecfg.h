/* The values of a node's stage-2 settings (package wants, host name,
 * SSH keys, kernel arguments) as rackbootd's config, its plan and the
 * agent all check them: one definition, so that what the server accepts
 * the agent accepts too. Pure functions, no I/O. See common/nodecfg.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RB_HOSTNAME_MAX    253
#define RB_KERNEL_ARGS_MAX 1024
#define RB_SSH_KEY_MAX     4096

/* "NAME" or "NAME=VERSION" (NAME as img_name_is_valid(), VERSION as
 * img_pkg_version_is_valid()). 0 with ret_version "" when no version is
 * given, or -EINVAL. */
int rb_pkg_want_parse(const char *s, char ret_name[65], char ret_version[65]);

/* A host name: dot-separated labels of letters, digits and '-', each 1 to
 * 63 characters not starting or ending with '-', at most 253 in all. */
bool rb_hostname_ok(const char *s);

/* A host name pattern: a host name once every "{mac}" (12 lowercase hex
 * digits) and "{ip}" (the IPv4 address with dashes) is replaced; no other
 * braces. "" is allowed (no host name). */
bool rb_hostname_pattern_ok(const char *s);

/* Expands a pattern for a node. ip may be NULL or "" when unknown: then a
 * pattern using {ip} is -ENOENT. -EINVAL if the result is not a host name,
 * -ENAMETOOLONG if it does not fit retlen. */
int rb_hostname_expand(const char *pattern, const uint8_t mac[6], const char *ip, char *ret,
                       size_t retlen);

/* One OpenSSH public key line "TYPE BASE64 [COMMENT]": a known key type,
 * base64 of at least 16 characters, a comment of printable ASCII without
 * quotes or backslashes; no options, at most RB_SSH_KEY_MAX characters. */
bool rb_ssh_key_ok(const char *s);

/* Kernel arguments: words of letters, digits and ._,:/+=@%- separated by
 * single spaces, at most RB_KERNEL_ARGS_MAX characters. Nothing a shell
 * (GRUB's defaults are sourced by one) or a boot loader config would
 * interpret: no quotes, '$', '`', '\\', ';', '#' or newlines. "" is allowed. */
bool rb_kernel_args_ok(const char *s);
