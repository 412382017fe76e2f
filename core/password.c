/*
 * password.c -- argon2id password hashing with libsodium's
 * crypto_pwhash_str (interactive limits: about 64 MiB and tens of
 * milliseconds per hash).  Blocking by design: call only on the worker
 * pool, never on an HTTP thread (DESIGN.md "Threads").
 */
#include "core/core.h"

#include <string.h>

int ax_password_hash(const char *password, char *out)
{
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return AX_ERR;
    snprintf(out, AX_PASSWORD_HASH_MAX, "%s", hash);
    return 0;
}

int ax_password_verify(const char *hash, const char *password)
{
    /* a fixed hash of a random password with the same parameters, so an
     * unknown user costs as much as a wrong password */
    static const char dummy[] = "$argon2id$v=19$m=65536,t=2,p=1$frinQtZjrirupHm6BCJ05w$"
                                "OEoUeQDnolYf1Epr5QUkm7eCiNGcFh30sQk8imE3ZFk";
    bool real = hash != NULL && hash[0] != '\0' && strlen(hash) < crypto_pwhash_STRBYTES;
    /* libsodium takes a crypto_pwhash_STRBYTES array; give it one */
    char buf[crypto_pwhash_STRBYTES] = {0};
    memcpy(buf, real ? hash : dummy, strlen(real ? hash : dummy));
    int rc = crypto_pwhash_str_verify(buf, password, strlen(password));
    return real && rc == 0 ? 0 : AX_EFORBIDDEN;
}
