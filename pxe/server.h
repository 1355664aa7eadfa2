/* rackbootd's life: resolve the addresses, open the registry, start DHCP,
 * TFTP and HTTP, drop privileges, run the loop until SIGINT/SIGTERM. */
#pragma once
#include "pxe/config.h"

/* Runs until a termination signal. Returns 0 or -errno (start-up failure,
 * already logged with what to do about it). cfg may be adjusted in place
 * (server address resolved from the interface). */
int rb_server_run(struct rb_config *cfg);
