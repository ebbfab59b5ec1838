"""``poison-tui keygen``: create the Ed25519 key an analyst signs off with."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keygen", help="create an Ed25519 signing key (encrypted with a passphrase)",
        description="Create an Ed25519 key for 'poison-tui signoff'. The private key is stored as "
                    "passphrase-encrypted PKCS8 PEM (mode 0600); the public key goes beside it as "
                    "PATH.pub in OpenSSH format, ready for an allowed_signers file.",
    )
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="where to write the private key (default: ~/.config/poison-tui/signing_key.pem)")
    p.add_argument("--passphrase-file", type=Path, default=None, metavar="FILE",
                   help="read the passphrase from FILE (else $POISON_TUI_PASSPHRASE, else a prompt)")
    p.add_argument("--comment", default="poison-tui", help="comment on the public key line")
    p.add_argument("--force", action="store_true", help="overwrite an existing key")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.signing import default_key_path, generate_key
    from poison_tui.gov_cli import read_passphrase, safe

    path = args.out or default_key_path()
    info = generate_key(path, read_passphrase(args.passphrase_file, confirm=True), args.comment, args.force)
    print(f"private key: {safe(info.path)}")
    print(f"public key:  {safe(info.public_path)}")
    print(f"fingerprint: {info.fingerprint}")
    return 0
