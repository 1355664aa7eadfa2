/* Fuzz target: rackbootd config files (libconfuse parsing plus every
 * validator). A config either loads whole or is refused; never a crash. */
#include "pxe/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/rb-fuzz-config.XXXXXX";
	struct rb_config *cfg = NULL;
	FILE *devnull;
	int fd;

	if (size > 64 * 1024)
		return 0;
	fd = mkstemp(path);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return 0;
	}
	close(fd);
	devnull = fopen("/dev/null", "w");
	if (rb_config_load(path, NULL, devnull, &cfg) == 0) {
		rb_config_print(cfg, devnull);
		rb_config_free(cfg);
	}
	fclose(devnull);
	unlink(path);
	return 0;
}
