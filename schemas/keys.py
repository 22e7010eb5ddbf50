"""Master keys in their standard form, for one number, one source (一数一源) matching.

Systems store the same key in several spellings: a lowercase ``x`` check character, a
15-digit first-generation ID number from a legacy system, full-width digits from a form,
spaces from a spreadsheet. Verification matches keys by the rules of their standards,
not as raw strings:

- resident ID number (公民身份号码), GB 11643-1999: 17 digits (6 region, 8 birth date,
  3 sequence) and an ISO 7064 MOD 11-2 check character (0-9 or X). The 15-digit form of
  the first-generation cards (6 region, YYMMDD, 3 sequence, no check) converts to 18
  digits by inserting the century 19 and appending the check character, as the standard's
  upgrade did.
- unified social credit code (统一社会信用代码), GB 32100-2015: 18 characters from
  ``0-9A-HJ-NPQRTUWXY`` (no I O S V Z), the last a MOD 31 check character.
- vehicle plate (机动车号牌), GA 36: a province character, a letter, then 5 or 6 letters or
  digits (the separator dot written on plates is not part of the number).

A value that does not satisfy its standard cannot be normalised (``None``): it is not
matched against anything, and callers report it as its own outcome.

Pure and stdlib-only; imports nothing of the project.
"""

from __future__ import annotations

import datetime
import unicodedata
from operator import mul

__all__ = [
    "credit_code_check_char",
    "is_ascii_digits",
    "is_valid_credit_code",
    "is_valid_resident_id",
    "normalise_credit_code",
    "normalise_key",
    "normalise_plate",
    "normalise_resident_id",
    "resident_id_check_digit",
]

# --- Resident identity number (GB 11643-1999, ISO 7064 MOD 11-2) ------------

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(map(mul, map(int, digits), weights))


def is_ascii_digits(s: str) -> bool:
    # str.isdigit() alone accepts non-ASCII digits such as '١'.
    return s.isascii() and s.isdigit()


def resident_id_check_digit(first17: str) -> str:
    """Check character (0-9 or 'X') for the first 17 digits of a resident ID.
    Raises ValueError unless given 17 ASCII digits."""
    if len(first17) != 17 or not is_ascii_digits(first17):
        raise ValueError(f"expected 17 ASCII digits, got {first17!r}")
    return ID_CHECK[weighted(first17, ID_WEIGHTS) % 11]


def _real_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def is_valid_resident_id(value: str) -> bool:
    """Canonical 18-character form only: digits, real birth date (year 1900..2025), check
    character (upper-case X). See ``normalise_resident_id`` for other spellings."""
    if len(value) != 18 or not is_ascii_digits(value[:17]):
        return False
    if not 1900 <= int(value[6:10]) <= 2025 or not _real_date(value[6:14]):
        return False
    return value[17] == ID_CHECK[weighted(value[:17], ID_WEIGHTS) % 11]


def _compact(value: str, drop: str = "") -> str:
    # NFKC folds full-width digits and letters (１２３Ｘ) to ASCII
    text = unicodedata.normalize("NFKC", value)
    return "".join(ch for ch in text if not ch.isspace() and ch not in drop).upper()


def normalise_resident_id(value: str) -> str | None:
    """The 18-character GB 11643 form of a resident ID number, or None if ``value`` is none.

    Accepts a lowercase check character, full-width characters, spaces and hyphens, and the
    15-digit first-generation form (converted: century 19, then the check character).
    Requires a real birth date (years 1800..2099) and, for 18 characters, the right check.
    '11010519491231002x' → '11010519491231002X'; '110105491231002' → '11010519491231002X'.
    """
    v = _compact(value, "-")
    if len(v) == 15:
        if not is_ascii_digits(v):
            return None
        first17 = v[:6] + "19" + v[6:]
        return first17 + ID_CHECK[weighted(first17, ID_WEIGHTS) % 11] if _real_date(first17[6:14]) else None
    if len(v) != 18 or not is_ascii_digits(v[:17]):
        return None
    if not 1800 <= int(v[6:10]) <= 2099 or not _real_date(v[6:14]):
        return None
    return v if v[17] == ID_CHECK[weighted(v[:17], ID_WEIGHTS) % 11] else None


# --- Unified social credit code (GB 32100-2015, MOD 31) ----------------------

CC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I O Z S V
CC_VALUE = {c: i for i, c in enumerate(CC_ALPHABET)}
CC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def cc_check(first17: str) -> str:
    """MOD 31 check character of 17 characters already known to be in the alphabet."""
    return CC_ALPHABET[(31 - sum(map(mul, map(CC_VALUE.__getitem__, first17), CC_WEIGHTS)) % 31) % 31]


def credit_code_check_char(first17: str) -> str:
    """Check character for the first 17 characters of a credit code.
    Raises ValueError for other lengths or characters."""
    if len(first17) != 17 or not set(first17) <= CC_VALUE.keys():
        raise ValueError(f"expected 17 characters from {CC_ALPHABET}, got {first17!r}")
    return cc_check(first17)


def is_valid_credit_code(value: str) -> bool:
    """Canonical form only: length 18, code alphabet (upper case), digit region part
    (positions 3-8), check character."""
    if len(value) != 18 or not set(value) <= CC_VALUE.keys():
        return False
    return is_ascii_digits(value[2:8]) and value[17] == cc_check(value[:17])


def normalise_credit_code(value: str) -> str | None:
    """The GB 32100 form of a credit code (upper case, no spaces or hyphens), or None when
    it is not one (wrong length, a character outside the alphabet, a wrong check character).
    A legacy 15-digit registration number or 9-character organisation code cannot be
    converted without a register, so it is None too."""
    v = _compact(value, "-")
    return v if is_valid_credit_code(v) else None


# --- Vehicle plate (GA 36) ---------------------------------------------------

_PLATE_PROVINCES = frozenset("京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领")


def normalise_plate(value: str) -> str | None:
    """Plate number without separators, letters upper case: '粤s·12345' → '粤S12345'.
    None unless a province character, a letter, then 5 or 6 letters/digits (a final 挂, 学,
    警, 港 or 澳 allowed)."""
    v = _compact(value, "·.-•")
    body = v[2:-1] if v[-1:] in "挂学警港澳" else v[2:]
    if v[:1] not in _PLATE_PROVINCES or not ("A" <= v[1:2] <= "Z") or len(body) not in (5, 6):
        return None
    return v if body.isascii() and body.isalnum() else None


_NORMALISERS = {"resident_id": normalise_resident_id, "credit_code": normalise_credit_code, "plate": normalise_plate}


def normalise_key(item_type: str, value: object) -> str | None:
    """A master key of this item type (``resident_id``, ``credit_code``, ``plate``; any
    other type is compared as given) in its standard form; None if it is not one."""
    if not isinstance(value, str):
        return None
    f = _NORMALISERS.get(item_type)
    return f(value) if f is not None else value
