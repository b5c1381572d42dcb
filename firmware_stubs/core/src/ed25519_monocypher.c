/* Ed25519 verification (RFC 8032) from Monocypher's group arithmetic (crypto_eddsa_check_equation, which
   also refuses a non-canonical S) and our SHA-512: h = SHA-512(R || A || M) mod L. Monocypher's source is
   fetched at build time (scripts/fetch_monocypher.sh), never kept in this repository. */
#include "monocypher.h"
#include "dmskd/signed.h"
#include "sha512.h"

const char *dmskd_ed25519_backend(void) { return "monocypher"; }

int dmskd_ed25519_verify(const uint8_t sig[DMSKD_SIGNATURE_BYTES], const uint8_t *msg, size_t len,
                         const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES]) {
    dmskd_sha512_ctx ctx;
    uint8_t hash[64], h_ram[32];
    dmskd_sha512_init(&ctx);
    dmskd_sha512_update(&ctx, sig, 32);
    dmskd_sha512_update(&ctx, pk, 32);
    dmskd_sha512_update(&ctx, msg, len);
    dmskd_sha512_final(&ctx, hash);
    crypto_eddsa_reduce(h_ram, hash);
    return crypto_eddsa_check_equation(sig, pk, h_ram) == 0 ? 0 : 1;
}
