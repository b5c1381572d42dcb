/* No Ed25519 backend: every signature is refused (the build warned; see core/CMakeLists.txt). */
#include "dmskd/signed.h"

const char *dmskd_ed25519_backend(void) { return "none"; }

int dmskd_ed25519_verify(const uint8_t sig[DMSKD_SIGNATURE_BYTES], const uint8_t *msg, size_t len,
                         const uint8_t pk[DMSKD_PUBLIC_KEY_BYTES]) {
    (void)sig; (void)msg; (void)len; (void)pk;
    return 1;
}
