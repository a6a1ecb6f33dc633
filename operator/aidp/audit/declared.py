"""What a workload declares in its pod template's annotations, normalised exactly as the admission
Rego normalises it (policies/aidp/admission.rego, "Annotation normalisation"), for the records of
processing. The verdicts themselves come from OPA; this module only restates the declarations
that OPA judged, so a record never shows a value admission read differently.

The Rego's builtins are Go's: `trim_space` is strings.TrimSpace (Unicode White_Space, which
is not Python's str.isspace: the information separators U+001C..U+001F are not white space to
Go) and `lower` is strings.ToLower (one code point to one, so U+0130 becomes `i`, and a final
sigma is a plain U+03C3; Python's str.lower applies the full, context-dependent mapping). A value that is
not a string is absent to the Rego (`present` needs is_string). tests/unit/test_audit_declared.py
feeds both implementations the same hostile strings through a real OPA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONSENT_BASIS = "aidp.io/consent-basis"
RETENTION_DAYS = "aidp.io/retention-days"
DATA_CATEGORIES = "aidp.io/data-categories"
PURPOSE = "aidp.io/purpose"

# Go's unicode.IsSpace: Latin-1 white space, then the Unicode White_Space property
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# max digits of a retention the record states as a number (the Rego compares longer ones by
# length: more than any limit a policy can state); JSON readers lose precision beyond 2^53
MAX_RECORD_DIGITS = 15


def trim_space(value: str) -> str:
    """Go's strings.TrimSpace (OPA's trim_space)."""
    start, end = 0, len(value)
    while start < end and value[start] in GO_SPACE:
        start += 1
    while end > start and value[end - 1] in GO_SPACE:
        end -= 1
    return value[start:end]


def _lower_rune(char: str) -> str:
    low = char.lower()
    if len(low) == 1:
        return low
    # the only code point whose full lower-case mapping is longer: U+0130 (Go: simple mapping 'i')
    return low[0]


def lower(value: str) -> str:
    """Go's strings.ToLower (OPA's lower): each code point by its simple lower-case mapping."""
    if value.isascii():
        return value.lower()
    return "".join(_lower_rune(c) for c in value)


def present(annotations: Mapping[str, Any], key: str) -> str | None:
    """The Rego's present(key): the trimmed value; None when missing, not a string, or blank."""
    raw = annotations.get(key)
    if not isinstance(raw, str):
        return None
    value = trim_space(raw)
    return value or None


def consent_basis(annotations: Mapping[str, Any]) -> str | None:
    """The declared basis as admission compares it with the allowed bases: lower(present(...))."""
    value = present(annotations, CONSENT_BASIS)
    return lower(value) if value is not None else None


# the longest retention-days or data-categories value admission reads (the Rego's
# max_value_length): a longer one fails its rule
MAX_VALUE_LENGTH = 1024


def retention_digits(annotations: Mapping[str, Any]) -> str | None:
    """The declared retention's decimal digits without leading zeros ("0" for zero), when it is
    what admission accepts as a retention: ASCII digits only (`^[0-9]+$` after trimming), at most
    MAX_VALUE_LENGTH characters; else None."""
    value = present(annotations, RETENTION_DAYS)
    if value is None or len(value) > MAX_VALUE_LENGTH or not (value.isascii() and value.isdigit()):
        return None
    return value.lstrip("0") or "0"


def retention_days(annotations: Mapping[str, Any]) -> int | None:
    """The declared retention in days for the record; None when there is none, or when it has more
    than MAX_RECORD_DIGITS digits (admission reads such a number as more than any limit)."""
    digits = retention_digits(annotations)
    if digits is None or len(digits) > MAX_RECORD_DIGITS:
        return None
    return int(digits)


def data_categories(annotations: Mapping[str, Any]) -> list[str]:
    """The Rego's declared_categories: the comma-separated items, trimmed and lower-cased, empty
    ones dropped (sorted)."""
    value = present(annotations, DATA_CATEGORIES)
    if value is None or len(value) > MAX_VALUE_LENGTH:
        return []
    return sorted({c for item in value.split(",") if (c := lower(trim_space(item)))})


def purpose(annotations: Mapping[str, Any]) -> str | None:
    """The declared purpose (the Rego does not judge it; trimmed the same way)."""
    return present(annotations, PURPOSE)
