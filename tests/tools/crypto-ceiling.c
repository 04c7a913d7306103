/* crypto-ceiling: how fast one core can seal and open WireGuard data
 * messages, the limit no tunnel on this machine can pass per core.
 *
 *   crypto-ceiling [--secs S] [--size BYTES] [--cpu N] [--json]
 *
 * Three figures, each the plaintext rate in Gbit/s over S seconds (default
 * 2) of back-to-back operations on one buffer of BYTES (default 1420, the
 * tunnel MTU) on one core:
 *   aead_seal   libsodium's ChaCha20-Poly1305 (IETF) encrypt, in place
 *   wg_seal     core/wg's wg_noise_seal: header, nonce, the same AEAD
 *   wg_open     core/wg's wg_noise_open of a sealed message
 * --cpu N pins the process to CPU N first. Output: one "NAME GBITS" line per
 * figure, or a JSON object with --json. Exit 1 if an operation fails (an
 * open that does not authenticate is a bug, not a figure). */
#include "core/wg/messages.h"
#include "core/wg/noise.h"

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SIZE 65535

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum op { OP_AEAD_SEAL, OP_WG_SEAL, OP_WG_OPEN };

static const char *const op_names[] = {"aead_seal", "wg_seal", "wg_open"};

/* Runs op for about secs seconds; returns Gbit/s of plaintext or -1. */
static double run(enum op op, const struct wg_keypair *kp, size_t size, double secs)
{
	static uint8_t buf[WG_MSG_DATA_LEN(MAX_SIZE)];
	static uint8_t sealed[WG_MSG_DATA_LEN(MAX_SIZE)];
	static uint8_t plain[MAX_SIZE];
	uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES] = {0};
	uint8_t tag[crypto_aead_chacha20poly1305_IETF_ABYTES];
	unsigned long long taglen;
	uint64_t n = 0;
	size_t sealed_len;
	double start, elapsed;

	randombytes_buf(buf, sizeof(buf));
	sealed_len = wg_noise_seal(kp, 0, sealed, size);
	start = now_s();
	do {
		/* Check the clock every 256 operations: reading it costs little
		 * next to 256 AEAD operations but is not free. */
		for (int i = 0; i < 256; i++, n++) {
			switch (op) {
			case OP_AEAD_SEAL:
				memcpy(nonce + 4, &n, sizeof(n));
				crypto_aead_chacha20poly1305_ietf_encrypt_detached(
				    buf, tag, &taglen, buf, size, NULL, 0, NULL, nonce,
				    kp->send_key);
				break;
			case OP_WG_SEAL:
				wg_noise_seal(kp, n, buf, size);
				break;
			case OP_WG_OPEN:
				if (wg_noise_open(kp, sealed, sealed_len, plain) != 0)
					return -1;
				break;
			}
		}
		elapsed = now_s() - start;
	} while (elapsed < secs);
	return (double)n * (double)size * 8.0 / elapsed / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: crypto-ceiling [--secs S] [--size BYTES] [--cpu N] [--json]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"secs", required_argument, NULL, 's'},
	    {"size", required_argument, NULL, 'z'},
	    {"cpu", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	double secs = 2, rate[3];
	long size = 1420, cpu = -1;
	int json = 0, c;
	struct wg_keypair kp;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			secs = strtod(optarg, NULL);
			break;
		case 'z':
			size = strtol(optarg, NULL, 10);
			break;
		case 'c':
			cpu = strtol(optarg, NULL, 10);
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (secs <= 0 || secs > 600 || size < 16 || size > MAX_SIZE) {
		fprintf(stderr,
		        "crypto-ceiling: --secs must be in (0, 600] and --size in "
		        "[16, %d]\n",
		        MAX_SIZE);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "crypto-ceiling: libsodium failed to start\n");
		return 1;
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)cpu, &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			fprintf(stderr, "crypto-ceiling: cannot pin to CPU %ld: %s\n",
			        cpu, strerror(errno));
	}
	memset(&kp, 0, sizeof(kp));
	randombytes_buf(kp.send_key, sizeof(kp.send_key));
	memcpy(kp.recv_key, kp.send_key, sizeof(kp.recv_key));
	kp.send_valid = kp.recv_valid = true;
	for (int i = 0; i < 3; i++) {
		rate[i] = run((enum op)i, &kp, (size_t)size, secs);
		if (rate[i] < 0) {
			fprintf(stderr,
			        "crypto-ceiling: %s failed: a sealed message did not "
			        "open\n",
			        op_names[i]);
			return 1;
		}
	}
	sodium_memzero(&kp, sizeof(kp));
	if (json) {
		printf("{\"size\": %ld, \"secs\": %g", size, secs);
		for (int i = 0; i < 3; i++)
			printf(", \"%s\": %.3f", op_names[i], rate[i]);
		printf("}\n");
	} else {
		for (int i = 0; i < 3; i++)
			printf("%s %.3f\n", op_names[i], rate[i]);
	}
	return 0;
}
