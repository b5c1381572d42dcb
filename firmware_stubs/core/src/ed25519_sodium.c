/* Ed25519 verification by libsodium (host builds; Debian libsodium-dev). Verification needs no
   sodium_init(): it uses no randomness and no CPU-dispatched code. */
#include <sodium.h>

#include "dmskd/signed.h"

const char *dmskd_ed25519_backend(void) { return "libsodium"; }

int dmskd_ed25519_verify(const uint8_t sig[DMSKD_SIGNATURE_BYTES], const uint8_t *msg, size_t len,
                         const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES]) {
    return crypto_sign_ed25519_verify_detached(sig, msg, (unsigned long long)len, pk) == 0 ? 0 : 1;
}
