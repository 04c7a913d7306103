/* BLAKE2s, HMAC-BLAKE2s and the WireGuard KDF against published vectors.
 * Sources: RFC 7693 Appendix B; the BLAKE2 project's blake2s-kat.txt (keyed,
 * key 00..1f, input 00..n-1), cross-checked with Python's hashlib.blake2s;
 * HMAC and KDF values computed with Python's hmac + hashlib.blake2s; and the
 * KDF vectors of wireguard-go's device/kdf_test.go. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/crypto/blake2s.h"

static void unhex(uint8_t *out, size_t outlen, const char *hex)
{
	assert_int_equal(strlen(hex), outlen * 2);
	for (size_t i = 0; i < outlen; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void assert_hex(const uint8_t *got, size_t len, const char *hex)
{
	uint8_t want[256];
	assert_true(len <= sizeof(want));
	unhex(want, len, hex);
	assert_memory_equal(got, want, len);
}

/* Input 00 01 02 ... as in the KAT files. */
static void fill_seq(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)i;
}

static void rfc7693_abc(void **state)
{
	uint8_t out[32];
	blake2s(out, 32, (const uint8_t *)"abc", 3, NULL, 0);
	assert_hex(out, 32,
	           "508c5e8c327c14e2e1a72ba34eeb452f"
	           "37458b209ed63a294d999b4c86675982");
}

static const struct {
	size_t len;
	const char *hex;
} keyed_kat[] = {
    {0, "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49"},
    {1, "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1"},
    {2, "6bb71300644cd3991b26ccd4d274acd1adeab8b1d7914546c1198bbe9fc9d803"},
    {3, "1d220dbe2ee134661fdf6d9e74b41704710556f2f6e5a091b227697445dbea6b"},
    {4, "f6c3fbadb4cc687a0064a5be6e791bec63b868ad62fba61b3757ef9ca52e05b2"},
    {31, "b6156f72d380ee9ea6acd190464f2307a5c179ef01fd71f99f2d0f7a57360aea"},
    {32, "c03bc642b20959cbe133a0303e0c1abff3e31ec8e1a328ec8565c36decff5265"},
    {33, "2c3e08176f760c6264c3a2cd66fec6c3d78de43fc192457b2a4a660a1e0eb22b"},
    {63, "c65382513f07460da39833cb666c5ed82e61b9e998f4b0c4287cee56c3cc9bcd"},
    {64, "8975b0577fd35566d750b362b0897a26c399136df07bababbde6203ff2954ed4"},
    {65, "21fe0ceb0052be7fb0f004187cacd7de67fa6eb0938d927677f2398c132317a8"},
    {127, "ddbfea75cc467882eb3483ce5e2e756a4f4701b76b445519e89f22d60fa86e06"},
    {128, "0c311f38c35a4fb90d651c289d486856cd1413df9b0677f53ece2cd9e477c60a"},
    {129, "46a73a8dd3e70f59d3942c01df599def783c9da82fd83222cd662b53dce7dbdf"},
    {191, "91a25ec0ec0d9a567f89c4bfe1a65a0e432d07064b4190e27dfb81901fd3139b"},
    {192, "5950d39a23e1545f301270aa1a12f2e6c453776e4d6355de425cc153f9818867"},
    {193, "d79f14720c610af179a3765d4b7c0968f977962dbf655b521272b6f1e194488e"},
    {255, "3fb735061abc519dfe979e54c1ee5bfad0a9d858b3315bad34bde999efd724dd"},
};

static void keyed_kat_oneshot(void **state)
{
	uint8_t key[32], in[256], out[32];
	fill_seq(key, sizeof(key));
	fill_seq(in, sizeof(in));
	for (size_t i = 0; i < sizeof(keyed_kat) / sizeof(keyed_kat[0]); i++) {
		blake2s(out, 32, in, keyed_kat[i].len, key, 32);
		assert_hex(out, 32, keyed_kat[i].hex);
	}
}

/* The same KAT fed one byte at a time through the streaming API. */
static void keyed_kat_bytewise(void **state)
{
	uint8_t key[32], in[256], out[32];
	fill_seq(key, sizeof(key));
	fill_seq(in, sizeof(in));
	for (size_t i = 0; i < sizeof(keyed_kat) / sizeof(keyed_kat[0]); i++) {
		struct blake2s_state s;
		blake2s_init_key(&s, 32, key, 32);
		for (size_t j = 0; j < keyed_kat[i].len; j++)
			blake2s_update(&s, in + j, 1);
		blake2s_final(&s, out);
		assert_hex(out, 32, keyed_kat[i].hex);
	}
}

static void unkeyed_vectors(void **state)
{
	static const struct {
		size_t len;
		const char *hex;
	} v[] = {
	    {0, "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"},
	    {1, "e34d74dbaf4ff4c6abd871cc220451d2ea2648846c7757fbaac82fe51ad64bea"},
	    {63, "e57cb79487dd57902432b250733813bd96a84efce59f650fac26e6696aefafc3"},
	    {64, "56f34e8b96557e90c1f24b52d0c89d51086acf1b00f634cf1dde9233b8eaaa3e"},
	    {65, "1b53ee94aaf34e4b159d48de352c7f0661d0a40edff95a0b1639b4090e974472"},
	    {255, "f03f5789d3336b80d002d59fdf918bdb775b00956ed5528e86aa994acb38fe2d"},
	};
	uint8_t in[256], out[32];
	fill_seq(in, sizeof(in));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		blake2s(out, 32, in, v[i].len, NULL, 0);
		assert_hex(out, 32, v[i].hex);
		struct blake2s_state s;
		blake2s_init(&s, 32);
		blake2s_update(&s, in, v[i].len);
		blake2s_final(&s, out);
		assert_hex(out, 32, v[i].hex);
	}
}

/* Digest length is a parameter of the hash, not a truncation. */
static void short_outputs(void **state)
{
	static const struct {
		size_t outlen, len;
		int keyed;
		const char *hex;
	} v[] = {
	    {1, 3, 0, "69"},
	    {16, 64, 0, "dc66ca8f03865801b0ffe06ed8a1a90e"},
	    {20, 65, 1, "71aedfb599d91a5f8a9eb5f9a4faaa8913ea3e55"},
	    {31, 100, 1,
	     "f604c67fdd56bcb467a9cd655d9a29634f16cacadaa1a72c419d70dad20016"},
	};
	uint8_t key[32], in[256], out[32];
	fill_seq(key, sizeof(key));
	fill_seq(in, sizeof(in));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(out, 0xee, sizeof(out));
		blake2s(out, v[i].outlen, in, v[i].len, v[i].keyed ? key : NULL,
		        v[i].keyed ? 32 : 0);
		assert_hex(out, v[i].outlen, v[i].hex);
		for (size_t j = v[i].outlen; j < sizeof(out); j++)
			assert_int_equal(out[j], 0xee); /* no overrun */
	}
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void streaming_equals_oneshot(void **state)
{
	static uint8_t in[4096];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)rng();
	uint8_t key[32];
	fill_seq(key, sizeof(key));

	for (int trial = 0; trial < 500; trial++) {
		size_t len = rng() % sizeof(in);
		size_t keylen = rng() % 33;
		size_t outlen = 1 + rng() % 32;
		uint8_t want[32], got[32];
		blake2s(want, outlen, in, len, key, keylen);

		struct blake2s_state s;
		blake2s_init_key(&s, outlen, key, keylen);
		size_t off = 0;
		while (off < len) {
			/* Mix tiny, block-sized and large chunks, and empty ones. */
			size_t chunk;
			switch (rng() % 4) {
			case 0:
				chunk = rng() % 4;
				break;
			case 1:
				chunk = 64;
				break;
			case 2:
				chunk = rng() % 200;
				break;
			default:
				chunk = rng() % (len - off + 1);
				break;
			}
			if (chunk > len - off)
				chunk = len - off;
			blake2s_update(&s, in + off, chunk);
			off += chunk;
		}
		blake2s_final(&s, got);
		assert_memory_equal(got, want, outlen);
	}
}

static void hmac_vectors(void **state)
{
	static const struct {
		size_t keylen, msglen;
		const char *hex;
	} v[] = {
	    {0, 0, "eaf4bb25938f4d20e72656bbbc7a9bf63c0c18537333c35bdb67db1402661acd"},
	    {8, 10, "a87a030ce3d629118720700e5a28edce73b57a97e915a7fdd110838613f955ef"},
	    {32, 0, "75cbf19c0e5b3da4609d1aa5d34e7caab2c2a1aec6c2bbdb08a649cdddc9c4a8"},
	    {32, 65, "366eb5357e844053fc85791089c41f5d837adc529ddbdb8ff6dde290a821c704"},
	    {64, 64, "828a7842826817eda2fa80456dd6111b3c116c7ecaaae45b90b00de014cab0ce"},
	    {65, 3, "8c059a997f5cf7164496f90bb97893aacfefb36ce78333db4f682168c0f4c60d"},
	    {100, 200,
	     "8712748b4171611a06bed0c802accc7c4f4e2d693049d230b7d302fed5812c48"},
	};
	uint8_t key[100], msg[200], out[32];
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(0xa0 + i);
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(3 * i);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		blake2s_hmac(out, msg, v[i].msglen, key, v[i].keylen);
		assert_hex(out, 32, v[i].hex);
	}
}

static void kdf_python_vectors(void **state)
{
	static const struct {
		uint8_t ckseed;
		size_t inlen;
		const char *t1, *t2, *t3;
	} v[] = {
	    {0x11, 0, "484b3208cefae4f6d249bbcfb9ff7f1b48a50dab8f7087ca90a73af02a83cb1e",
	     "c0cf4642b37e3fa12a8edfa5b3463cf68ce47590a20f19ba39249524b51ff1cd",
	     "12c0be204ece0b99715110db036b058b0d0d31b07a149433d7bb49c2eecea1ad"},
	    {0x22, 32, "905d9208bd9732281871a9916e6bc7c11952aceb3893b367d277377150705128",
	     "00b97f58b2629e64cca4a3663089328c48a10ab41e342c88c99e68ba4506e1c4",
	     "9124da37d76cbb3731c3ae48fb1e30561854d5d1242d85342a59e213203e540b"},
	    {0x33, 100,
	     "5209f527d8eadf7f1c0a18473a4deba48ea422f76363876cdef46e7ae0c2b35b",
	     "82db793a3853f862227c01b94ab3f1c98ce4c4eaa6f44d4ee6236bca471e3668",
	     "8d37d1284ab1f1bdb18416c6e8112bf1000df8d72c7ecc3b7a97fca9d303b00c"},
	};
	uint8_t ck[32], in[100], o1[32], o2[32], o3[32];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(7 * i + 1);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		for (size_t j = 0; j < sizeof(ck); j++)
			ck[j] = (uint8_t)(v[i].ckseed + j);
		blake2s_kdf(o1, o2, o3, in, v[i].inlen, ck);
		assert_hex(o1, 32, v[i].t1);
		assert_hex(o2, 32, v[i].t2);
		assert_hex(o3, 32, v[i].t3);
		/* Stopping early yields the same prefix of outputs. */
		memset(o1, 0, 32);
		memset(o2, 0, 32);
		blake2s_kdf(o1, o2, NULL, in, v[i].inlen, ck);
		assert_hex(o1, 32, v[i].t1);
		assert_hex(o2, 32, v[i].t2);
		memset(o1, 0, 32);
		blake2s_kdf(o1, NULL, NULL, in, v[i].inlen, ck);
		assert_hex(o1, 32, v[i].t1);
	}
}

/* wireguard-go device/kdf_test.go. Its HMAC keys are shorter than 32 bytes;
 * HMAC zero-pads keys to the block size, so the same key zero-padded to 32
 * bytes is an identical chaining key for blake2s_kdf. */
static void kdf_wireguard_go_vectors(void **state)
{
	static const struct {
		const char *key, *input, *t0, *t1, *t2;
	} v[] = {
	    {"746573742d6b6579", "746573742d696e707574",
	     "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
	     "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
	     "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24"},
	    {"776972656775617264", "776972656775617264",
	     "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
	     "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
	     "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160"},
	    {"", "", "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
	     "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
	     "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t ck[32] = {0}, in[32], o1[32], o2[32], o3[32];
		size_t klen = strlen(v[i].key) / 2, ilen = strlen(v[i].input) / 2;
		unhex(ck, klen, v[i].key);
		unhex(in, ilen, v[i].input);
		blake2s_kdf(o1, o2, o3, in, ilen, ck);
		assert_hex(o1, 32, v[i].t0);
		assert_hex(o2, 32, v[i].t1);
		assert_hex(o3, 32, v[i].t2);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rfc7693_abc),
	    cmocka_unit_test(keyed_kat_oneshot),
	    cmocka_unit_test(keyed_kat_bytewise),
	    cmocka_unit_test(unkeyed_vectors),
	    cmocka_unit_test(short_outputs),
	    cmocka_unit_test(streaming_equals_oneshot),
	    cmocka_unit_test(hmac_vectors),
	    cmocka_unit_test(kdf_python_vectors),
	    cmocka_unit_test(kdf_wireguard_go_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
