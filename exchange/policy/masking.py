"""数据脱敏: masking functions for personal data, one per rule.

Each keeps just enough of the value for a subscriber to match records by eye (surname,
ID-number region and tail, phone prefix and tail, district) and nothing more.

Pure: no I/O at decision time. The address mask reads the national division table
(schemas/regions.py) once, when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable

from schemas import regions
from schemas.names import surname_of
from schemas.scenario import MaskRule

regions.table()  # load the division table now, not on the first record
_HIDDEN = "***"


def mask_name(value: str) -> str:
    """Keep the surname (compound surnames whole), one ``*`` per other character, at least
    one: '张三' → '张*', '欧阳娜娜' → '欧阳**'. Rule: docs/concepts.md, "Sharing rules"."""
    surname = surname_of(value)
    return surname + "*" * max(1, len(value) - len(surname))


def mask_id_number(value: str) -> str:
    """Keep the first 6 (the issuing region) and last 4 characters of an ID number, ``*`` in
    between, the length kept; 10 characters or fewer are starred whole."""
    if len(value) <= 10:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str) -> str:
    """Keep the first 3 and last 4 digits of a phone number, ``*`` in between, the length
    kept: '13812345678' → '138****5678'; 7 characters or fewer are starred whole."""
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_address(value: str) -> str:
    """Keep the province, city and county-level division the address starts with, as the
    national division table spells them, and replace everything after it with '***':
    '广东省东莞市南城街道鸿福路8号' → '广东省东莞市南城街道***'. An address that starts with no
    division the table knows becomes '***' (the length is not kept either). Defined by what
    it keeps, so no shape of the rest (小区, 市场, A区, …) can leak through it."""
    prefix = regions.address_prefix(value)
    return prefix + _HIDDEN if prefix else _HIDDEN


def redact(value: object) -> str:
    """Hide the whole value, whatever it is: always '***'."""
    return "***"


MASKERS: dict[MaskRule, Callable[[str], str]] = {
    MaskRule.name: mask_name,
    MaskRule.id_number: mask_id_number,
    MaskRule.phone: mask_phone,
    MaskRule.address: mask_address,
    MaskRule.redact: redact,
}


def apply_mask(rule: MaskRule, value: object) -> object:
    """Mask one value; non-strings are redacted whole (a number cannot be half-shown)."""
    if rule in (MaskRule.none, MaskRule.auto) or value is None:
        return value
    if not isinstance(value, str):
        return "***"
    return MASKERS[rule](value)
