"""Where the IDevID key is (`idevid_key_store`), checked before the kit checks the key itself,
so that the operator reads what to change. With `tpm2` the key never leaves the TPM 2.0:
`idevid_key` is its blob (a TSS2 PRIVATE KEY PEM), which only the TPM can use, through OpenSSL's
tpm2 provider; OpenSSL reads OPENSSL_CONF (which activates it) when the process starts, so the
agent cannot turn it on itself: the environment has to, the unit's from ENVIRONMENT_FILE."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path

from .config import AgentConfig, ConfigError

TSS2_KEY_BEGIN = b"-----BEGIN TSS2 PRIVATE KEY-----"
ENVIRONMENT_FILE = Path("/etc/default/sztp-agent")
# PEM allows text before the block; a key file's first 4 KiB hold its header in practice.
_HEAD_SIZE = 4096


def openssl_config() -> Path:
    """This installation's OpenSSL configuration for a key in a TPM (the Debian package also
    puts it in /usr/share/sztp-agent)."""
    return Path(str(files("sztp_agent").joinpath("data/openssl-tpm2.cnf")))


def holds_tpm_key(path: Path) -> bool:
    """Whether the file is a TPM key blob (a TSS2 PRIVATE KEY PEM block)."""
    try:
        with path.open("rb") as handle:
            return TSS2_KEY_BEGIN in handle.read(_HEAD_SIZE)
    except OSError:
        return False


def check_key_store(config: AgentConfig, environment: Mapping[str, str]) -> None:
    """`ConfigError` when the key file is not what `idevid_key_store` says, or when OpenSSL was
    not told (OPENSSL_CONF in `environment`, this process's) where its tpm2 provider is. A key
    file that cannot be read is left to the kit's check, which names it."""
    key = config.idevid_key
    if not key.is_file():
        return
    in_tpm = holds_tpm_key(key)
    if config.idevid_key_store == "file":
        if in_tpm:
            raise ConfigError(
                f"idevid_key: {key} is a TPM 2.0 key blob (TSS2 PRIVATE KEY): set "
                "idevid_key_store: tpm2"
            )
        return
    if not in_tpm:
        # A private key in a file, where the operator meant one that cannot leave the TPM.
        raise ConfigError(
            f"idevid_key: {key} is not a TPM 2.0 key blob (TSS2 PRIVATE KEY) although "
            "idevid_key_store is tpm2; a private key in a file is idevid_key_store: file"
        )
    what_to_set = (
        f"OpenSSL uses a key in the TPM only through its tpm2 provider: set "
        f"OPENSSL_CONF={openssl_config()} and TPM2OPENSSL_TCTI=device:/dev/tpmrm0 in "
        f"{ENVIRONMENT_FILE} (the unit reads it) or in the environment ztp runs in"
    )
    named = environment.get("OPENSSL_CONF")
    if not named:
        raise ConfigError(f"idevid_key_store is tpm2 but OPENSSL_CONF is not set: {what_to_set}")
    if not Path(named).is_file():
        raise ConfigError(f"OPENSSL_CONF names {named}, which is not a file: {what_to_set}")
