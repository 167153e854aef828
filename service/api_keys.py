"""API keys: the keys file (VAE_API_KEYS_FILE), read and checked at start-up, and the match of a presented key.

The file holds no key, only its SHA-256, and a role:
    {"keys": [{"name": "ci", "sha256": "<64 hex digits>", "role": "user"},
              {"name": "ops", "sha256": "<64 hex digits>", "role": "admin"}]}
`user` may call every route but /metrics and /admin/...; `admin` may call all of them (service/access.py).
Make a key and its entry (the key is printed once; keep only the entry):
    python -m service.api_keys new-key --name ci --role user
Clients send `Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.registry import StartupError

Role = Literal["user", "admin"]


class ApiKey(BaseModel):
    """One entry of the keys file."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # extra="forbid": a plaintext "key" field is refused
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")  # in logs and metrics
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    role: Role


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[ApiKey] = Field(min_length=1)  # an empty file would refuse every request: surely a mistake

    @model_validator(mode="after")
    def unique(self) -> KeyFile:
        for field in ("name", "sha256"):
            values = [getattr(k, field).lower() for k in self.keys]
            if len(set(values)) != len(values):
                raise ValueError(f"two keys have the same {field}")
        return self


class Keys:
    """The keys file's keys, matched against a presented key in constant time."""

    def __init__(self, keys: Iterable[ApiKey]):
        self.digests = [(bytes.fromhex(k.sha256), k) for k in keys]

    def match(self, presented: bytes) -> ApiKey | None:
        # Every stored digest is compared, with no early exit, so the time taken says nothing about which key
        # (if any) matched; the loop is over a handful of keys.
        digest, found = hashlib.sha256(presented).digest(), None
        for stored, key in self.digests:
            if hmac.compare_digest(digest, stored):
                found = key
        return found


def load_keys(path: Path) -> Keys:
    """The keys file, or StartupError saying what is wrong with it (never quoting it: it could hold a key)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise StartupError(f"VAE_API_KEYS_FILE {path}: cannot read it ({exc.strerror})") from None
    try:
        return Keys(KeyFile.model_validate_json(text).keys)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise StartupError(f"VAE_API_KEYS_FILE {path}: {problems} (format: python -m service.api_keys --help)") \
            from None


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key of `Authorization: Bearer <key>` (preferred) or `X-API-Key: <key>`."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():  # auth schemes are case-insensitive (RFC 9110 11.1)
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip()
    return api_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.api_keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    new_key = commands.add_parser("new-key", help="print a new key (once: only its hash is kept) and its entry")
    new_key.add_argument("--name", required=True, help="shown in logs and refusals (letters, digits, . _ -)")
    new_key.add_argument("--role", choices=["user", "admin"], default="user")
    args = parser.parse_args(argv)
    key = "vae_" + secrets.token_urlsafe(32)  # 256 random bits; the prefix lets secret scanners spot it
    try:
        entry = ApiKey(name=args.name, sha256=hashlib.sha256(key.encode()).hexdigest(), role=args.role)
    except ValidationError as exc:
        parser.error(str(exc.errors(include_url=False)[0]["msg"]))
    print(f"key:   {key}")
    print(f"entry: {entry.model_dump_json()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

