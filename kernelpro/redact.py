"""Secrets never leave in text: values of the user's secret-looking variables are masked.

The runner never gets the user's environment, but text that crosses from the candidate side
(a reason, a log tail, a traceback) goes on into prompts, the run store and the terminal, and
an unsandboxed candidate could have read the parent's variables. So the judge's side masks,
in everything a verdict carries, the value of every environment variable whose name looks
like a credential, and any token that looks like an API key whatever its variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|"
                         r"PRIVATE|SIGNATURE|WEBHOOK|DSN", re.IGNORECASE)
# Well-known key shapes: OpenAI/Anthropic (sk-...), GitHub (ghp_...), Slack (xox.-), AWS ids,
# Hugging Face (hf_...), Google (AIza...), generic bearer tokens.
KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|"
                        r"xox[abpr]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}|hf_[A-Za-z0-9]{20,}|"
                        r"AIza[0-9A-Za-z_\-]{30,})")
MIN_SECRET_LEN = 6  # shorter values ("1", "true") would mask ordinary words
MASK = "[redacted]"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values to mask, longest first (so a value containing another is masked whole)."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    found |= {m.group(0) for v in env.values() for m in KEY_SHAPES.finditer(v)}
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return KEY_SHAPES.sub(MASK, text)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of `value` (strings, lists, dicts, dataclasses) with every secret masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list | tuple):
        return type(value)(redact(v, secrets) for v in value)
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: redact(getattr(value, f.name), secrets)
                                             for f in dataclasses.fields(value) if f.init})
    return value
