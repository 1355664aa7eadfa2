/* Dropping root after the ports are bound (OpenBSD tftpd's order: bind,
 * open roots, then setgroups/setresgid/setresuid). */
#pragma once

/* Gives the state directory and the files in it to user, then becomes user
 * for good (all threads). No-op when user is "" or we are not root.
 * Returns 0 or -errno; on failure the caller must exit. */
int rb_drop_privileges(const char *user, const char *state_dir);
