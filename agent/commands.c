/* The table of rackboot-agent subcommands. Each module adds its entry. */
#include "agent/commands.h"

#include <stddef.h>

/* entry prototypes (each helper adds its own under this line) */
int agent_cmd_image(int argc, char **argv);
int agent_inventory_main(int argc, char **argv);
int agent_cmd_run(int argc, char **argv);
int agent_cmd_wipe(int argc, char **argv);
int agent_cmd_grow(int argc, char **argv);
int agent_cmd_plain(int argc, char **argv);
int agent_cmd_pkg_install(int argc, char **argv);
int agent_cmd_update(int argc, char **argv);
int agent_cmd_pkg_remove(int argc, char **argv);
int agent_cmd_netboot_next(int argc, char **argv);

const struct agent_command agent_commands[] = {
	/* entries (each helper adds its own under this line) */
	{ "image", "write a signed image from the repository onto a disk", agent_cmd_image },
	{ "inventory", "print this node's hardware inventory as JSON", agent_inventory_main },
	{ "run", "get this node's plan from rackbootd and carry it out (the boot agent)",
	  agent_cmd_run },
	{ "wipe", "wipe a disk: partition metadata or every byte", agent_cmd_wipe },
	{ "grow", "grow the last partition to the end of the disk", agent_cmd_grow },
	{ "plain", "write a plain image or rootfs tarball of the signed catalogue onto a disk",
	  agent_cmd_plain },
	{ "pkg-install", "install packages of the signed catalogue into a root directory",
	  agent_cmd_pkg_install },
	{ "pkg-remove", "remove installed packages from a root directory", agent_cmd_pkg_remove },
	{ "update", "keep this installed node at its desired state (stage 3)", agent_cmd_update },
	{ "netboot-next", "make the next boot a network boot (UEFI BootNext, as update does)",
	  agent_cmd_netboot_next },
	{ NULL, NULL, NULL },
};
