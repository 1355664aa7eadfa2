/* rackbootd: command line, config loading, then rb_server_run(). */
#include "common/log.h"
#include "pxe/config.h"
#include "pxe/server.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void usage(FILE *o)
{
	fputs("Usage: rackbootd [OPTIONS]\n"
	      "Network-boot server: proxyDHCP/DHCP, TFTP, HTTP (iPXE scripts, files, API).\n\n"
	      "  -c, --config FILE        read FILE (libconfuse syntax, see "
	      "templates/rackbootd.conf);\n"
	      "                           without it the embedded defaults are used\n"
	      "      --check-config       validate, print the effective config and exit\n"
	      "  -i, --interface IFACE    provisioning interface (address taken from it)\n"
	      "      --server-address IP  address nodes reach this server at\n"
	      "      --dhcp MODE          proxy (default), full or off\n"
	      "      --root DIR           serve DIR/tftp, DIR/boot, DIR/repo\n"
	      "      --state-dir DIR      registry and leases (default /var/lib/rackboot)\n"
	      "      --http-port PORT     HTTP port (default 8080)\n"
	      "      --user USER          drop privileges to USER (\"\" = stay)\n"
	      "  -v, --verbose            debug logging\n"
	      "  -h, --help               this text\n"
	      "      --version            print the version\n",
	      o);
}

int main(int argc, char **argv)
{
	enum { O_CHECK = 256, O_SERVER, O_DHCP, O_ROOT, O_STATE, O_HTTP, O_USER, O_VERSION };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, O_CHECK },
		{ "interface", required_argument, NULL, 'i' },
		{ "server-address", required_argument, NULL, O_SERVER },
		{ "dhcp", required_argument, NULL, O_DHCP },
		{ "root", required_argument, NULL, O_ROOT },
		{ "state-dir", required_argument, NULL, O_STATE },
		{ "http-port", required_argument, NULL, O_HTTP },
		{ "user", required_argument, NULL, O_USER },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, O_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	struct rb_config_overrides ovr = { 0 };
	struct rb_config *cfg;
	const char *path = NULL;
	int check = 0, verbose = 0, c, r;

	while ((c = getopt_long(argc, argv, "c:i:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case O_CHECK:
			check = 1;
			break;
		case 'i':
			ovr.interface = optarg;
			break;
		case O_SERVER:
			ovr.server_addr = optarg;
			break;
		case O_DHCP:
			ovr.dhcp_mode = optarg;
			break;
		case O_ROOT:
			ovr.root = optarg;
			break;
		case O_STATE:
			ovr.state_dir = optarg;
			break;
		case O_HTTP:
			ovr.http_port = optarg;
			break;
		case O_USER:
			ovr.user = optarg;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			puts("rackbootd " RB_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rackbootd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	r = rb_config_load(path, &ovr, stderr, &cfg);
	if (r < 0) {
		fprintf(stderr, "rackbootd: configuration not valid, not starting\n");
		return 1;
	}
	if (check) {
		rb_config_print(cfg, stdout);
		rb_config_free(cfg);
		return 0;
	}
	rb_log_open("rackbootd", false, verbose ? LOG_DEBUG : cfg->log_level);
	r = rb_server_run(cfg);
	rb_config_free(cfg);
	return r < 0 ? 1 : 0;
}
