"""The adversary's key file (`harness.keys/1`): what `--keys FILE` reads and the simulator writes."""
from __future__ import annotations

import json
from pathlib import Path

from harness.analyzers.interface import KeyGrant, Knowledge
from harness.errors import HarnessError

SCHEMA = "harness.keys/1"


def load_knowledge(path: str | Path | None) -> Knowledge:
    """Knowledge from a keys file: {"schema": "harness.keys/1", "keys": [{"name","kind","material": hex}]}."""
    if path is None:
        return Knowledge()
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HarnessError("no such file", path=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"not a keys file ({exc.__class__.__name__})", path=str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("keys"), list):
        raise HarnessError(f'not a keys file (expected {{"schema": "{SCHEMA}", "keys": [...]}})', path=str(path))
    grants = []
    for i, k in enumerate(doc["keys"]):
        try:
            grants.append(KeyGrant(name=str(k["name"]), kind=str(k["kind"]), material=bytes.fromhex(k["material"])))
        except (KeyError, TypeError, ValueError):
            raise HarnessError(f"keys[{i}]: needs name, kind and hex material", path=str(path)) from None
    return Knowledge(tuple(grants))
