"""Internet Archive S3 keys: from the environment or the file `ia configure` writes. The secret is never shown."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from archiver.errors import ArchiverError

KEYS_PAGE = "https://archive.org/account/s3.php"
# Ours first (the names the issue and docs use), then the ones `internetarchive` itself reads.
ENV_PAIRS = (("IA_ACCESS_KEY", "IA_SECRET_KEY"), ("IA_ACCESS_KEY_ID", "IA_SECRET_ACCESS_KEY"))


class CredentialsMissing(ArchiverError):
    """No usable keys; the message says how to set them."""


@dataclass(frozen=True)
class Credentials:
    access: str
    secret: str = field(repr=False)
    source: str = ""  # where they came from, for messages: an environment variable pair or a file

    def __str__(self) -> str:
        return f"access key {self.access} (from {self.source})"


def load_credentials(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> Credentials:
    """Keys from IA_ACCESS_KEY/IA_SECRET_KEY, IA_ACCESS_KEY_ID/IA_SECRET_ACCESS_KEY, or the `ia configure` file
    (IA_CONFIG_FILE, ~/.config/internetarchive/ia.ini, ~/.config/ia.ini, ~/.ia), in that order."""
    env = os.environ if environ is None else environ
    for access_name, secret_name in ENV_PAIRS:
        access, secret = env.get(access_name, "").strip(), env.get(secret_name, "").strip()
        if access and secret:
            return Credentials(access, secret, f"{access_name}/{secret_name}")
        if access or secret:
            missing = secret_name if access else access_name
            raise CredentialsMissing(f"{access_name if access else secret_name} is set but {missing} is not: set "
                                     f"both (the keys are shown at {KEYS_PAGE}), or unset it to use the file "
                                     "`ia configure` writes")
    path, parser = _config_file(config_file)
    access = (parser.get("s3", "access", fallback=None) or "").strip()
    secret = (parser.get("s3", "secret", fallback=None) or "").strip()
    if access and secret:
        return Credentials(access, secret, path)
    looked = f"{path} has no [s3] access and secret" if os.path.isfile(path) else f"no {path}"
    raise CredentialsMissing(f"no Internet Archive credentials ({looked}, and IA_ACCESS_KEY/IA_SECRET_KEY are not "
                             "set). Run `ia configure` (from the internetarchive package) to write the config "
                             f"file, or set IA_ACCESS_KEY and IA_SECRET_KEY to the keys shown at {KEYS_PAGE}")


def _config_file(config_file: str | None) -> tuple[str, configparser.RawConfigParser]:
    from internetarchive.config import parse_config_file

    try:
        path, _is_xdg, parser = parse_config_file(config_file)
    except (configparser.Error, OSError, UnicodeDecodeError) as e:
        shown = config_file or os.environ.get("IA_CONFIG_FILE") or "the internetarchive config file"
        raise CredentialsMissing(f"cannot read {shown}: {_why(e)}. Fix it, or run `ia configure` to write it "
                                 "again") from None
    return path, parser


def _why(e: Exception) -> str:
    """What is wrong with the file, without quoting its lines: one of them may hold the secret."""
    if isinstance(e, configparser.MissingSectionHeaderError):  # a ParsingError too: first
        return f"line {e.lineno} comes before any [section]"
    if isinstance(e, configparser.ParsingError):
        return "lines " + ", ".join(str(n) for n, _line in e.errors) + " cannot be parsed"
    if isinstance(e, configparser.Error):
        return type(e).__name__
    return getattr(e, "strerror", None) or type(e).__name__
