r"""Removes secrets (API keys, bearer tokens) from server messages before
they are stored (the cache's :obj:`error` column, :obj:`summary.json`) or
printed: a server that echoes the request's ``Authorization`` header in its
error body must not get the key written to disk."""
from __future__ import annotations

import json
import os
import re
from typing import Iterable, List, Optional

#: Environment variables the OpenAI-compatible backend reads its API key
#: from (first set wins); their values are redacted from every message.
API_KEY_ENV = ('MLLMREC_OPENAI_API_KEY', 'OPENAI_API_KEY')

#: What replaces a secret.
REDACTED = '[REDACTED]'

# Secrets shorter than this are not searched for literally (they would
# blank out ordinary words); the patterns below still apply.
_MIN_SECRET_LENGTH = 4

_PATTERNS = (
    # "Authorization: Bearer X", '"authorization": "Basic X"', "x-api-key=X"
    (re.compile(r'(?i)((?:proxy-)?authorization|x-api-key|api[_-]?key|'
                r'access[_-]?token)(["\']?\s*[:=]\s*["\']?)'
                r'(?:(?:bearer|basic|token)\s+)?[^\s"\',;&]+'),
     r'\1\2' + REDACTED),
    # A bare "Bearer X".
    (re.compile(r'(?i)\b(bearer)\s+(?!\[REDACTED\])[^\s"\',;&]+'),
     r'\1 ' + REDACTED),
    # OpenAI-style keys: sk-..., sk-proj-...
    (re.compile(r'\bsk-[A-Za-z0-9_\-]{8,}'), REDACTED),
    # Credentials in a URL: scheme://user:password@host
    (re.compile(r'(\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s:@]+:[^/\s@]+@'),
     r'\1' + REDACTED + '@'),
)


def _secret_forms(secret: str) -> List[str]:
    # The key as sent, and as it reads inside a JSON string.
    forms = [secret, json.dumps(secret)[1:-1]]
    return sorted(set(forms), key=len, reverse=True)


def redact_secrets(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    r"""Returns :obj:`text` with every secret replaced by
    :obj:`"[REDACTED]"`: the given :obj:`secrets`, the API keys set in
    :obj:`API_KEY_ENV`, and anything that looks like a credential
    (``Authorization: ...``, ``Bearer ...``, ``sk-...`` keys, ``api_key=...``,
    ``user:password@`` in URLs).

    Apply it to the whole message before shortening it, so no part of a key
    survives a cut.

    Args:
        text (str): A message, e.g. a server's error body.
        secrets (Iterable[str], optional): Further literal secrets (e.g. the
            backend's configured API key). (default: :obj:`None`)
    """
    if not text:
        return text
    literal = [s for s in (secrets or ()) if s]
    literal += [os.environ[name] for name in API_KEY_ENV
                if os.environ.get(name)]
    for secret in sorted(set(literal), key=len, reverse=True):
        if len(secret) < _MIN_SECRET_LENGTH:
            continue
        for form in _secret_forms(secret):
            text = text.replace(form, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
