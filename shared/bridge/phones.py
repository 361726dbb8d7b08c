"""Phone numbers in Siteti's format: international digits without '+' (2348031234567)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def to_siteti(raw: str | None, default_region: str = "NG", *, trusted: bool = False) -> str | None:
    """A valid mobile number as Siteti wants it, or None when `raw` is not one.

    Accepts the common forms: 08031234567, 0803 123 4567, +234 803 123 4567, 2348031234567.
    `trusted` numbers (given in E.164 by the provider itself) need only be possible numbers:
    numbering plans change faster than metadata (Benin's 2024 move to 10 digits, say).
    """
    if not raw or not raw.strip():
        return None
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    # "2348031234567" has no '+', so phonenumbers would read it as a national number.
    if not text.startswith(("+", "0")) and len(digits) > 10:
        text = "+" + digits
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException:
        return None
    if trusted:
        # A known country code and a plausible length is all we ask of the provider's E.164.
        known = phonenumbers.region_code_for_country_code(number.country_code or 0) != "ZZ"
        if not known or not 8 <= len(digits) <= 15:
            return None
    elif (
        not phonenumbers.is_valid_number(number) or phonenumbers.number_type(number) not in _MOBILE
    ):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
