"""Phone numbers at rest and in print: the Vault (seal, open, blind index) and phone.py."""

from __future__ import annotations

import re

import pytest

from hotline.phone import InvalidPhoneNumber, is_e164, normalize, redact
from hotline.privacy import DecryptionError, Vault

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))
NUMBER = "+15551234234"
CONTEXT = b"clinician.phone"


@pytest.fixture
def vault() -> Vault:
    return Vault((OLD_KEY,))


# --- sealing ---------------------------------------------------------------------------------


def test_a_sealed_value_opens_to_the_plaintext(vault: Vault) -> None:
    assert vault.open(vault.seal(NUMBER, CONTEXT), CONTEXT) == NUMBER
    assert vault.open(vault.seal("", CONTEXT), CONTEXT) == ""
    assert vault.open(vault.seal("naïve ✓ text")) == "naïve ✓ text"


def test_sealed_bytes_do_not_contain_the_plaintext(vault: Vault) -> None:
    sealed = vault.seal(NUMBER, CONTEXT)
    for form in (NUMBER, NUMBER[1:], NUMBER[-7:]):
        assert form.encode() not in sealed
        assert form.encode("utf-16-le") not in sealed
    assert NUMBER[-7:] not in sealed.hex()


def test_the_same_plaintext_seals_differently_each_time(vault: Vault) -> None:
    seals = {vault.seal(NUMBER, CONTEXT) for _ in range(20)}
    assert len(seals) == 20


def test_a_tampered_value_is_refused(vault: Vault) -> None:
    sealed = vault.seal(NUMBER, CONTEXT)
    for position in (len(sealed) - 1, len(sealed) // 2, 6):  # tag, ciphertext, nonce
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            vault.open(bytes(tampered), CONTEXT)
    for broken in (sealed[:-1], sealed[:10], b"", b"\x02" + sealed[1:], sealed + b"\x00"):
        with pytest.raises(DecryptionError):
            vault.open(broken, CONTEXT)


def test_a_value_opened_in_another_context_is_refused(vault: Vault) -> None:
    """A supporter's sealed number pasted into a clinician row must not open there."""
    sealed = vault.seal(NUMBER, CONTEXT)
    with pytest.raises(DecryptionError):
        vault.open(sealed, b"supporter.phone")
    with pytest.raises(DecryptionError):
        vault.open(sealed)


def test_decryption_errors_never_carry_the_value(vault: Vault) -> None:
    sealed = bytearray(vault.seal(NUMBER, CONTEXT))
    sealed[-1] ^= 0xFF
    with pytest.raises(DecryptionError) as caught:
        vault.open(bytes(sealed), CONTEXT)
    assert NUMBER not in str(caught.value)
    assert bytes(sealed).hex() not in str(caught.value)


def test_a_vault_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="key"):
        Vault(())


# --- rotation --------------------------------------------------------------------------------


def test_a_value_sealed_under_the_old_key_opens_during_a_rotation() -> None:
    old_sealed = Vault((OLD_KEY,)).seal(NUMBER, CONTEXT)
    rotating = Vault((NEW_KEY, OLD_KEY))
    assert rotating.open(old_sealed, CONTEXT) == NUMBER
    assert not rotating.is_current(old_sealed)


def test_new_seals_during_a_rotation_use_the_new_key() -> None:
    rotating = Vault((NEW_KEY, OLD_KEY))
    sealed = rotating.seal(NUMBER, CONTEXT)
    assert rotating.is_current(sealed)
    assert Vault((NEW_KEY,)).open(sealed, CONTEXT) == NUMBER
    with pytest.raises(DecryptionError):
        Vault((OLD_KEY,)).open(sealed, CONTEXT)


def test_a_lookup_during_a_rotation_finds_rows_hashed_under_the_old_key() -> None:
    stored_under_old = Vault((OLD_KEY,)).blind_index(NUMBER)
    rotating = Vault((NEW_KEY, OLD_KEY))
    indexes = rotating.blind_indexes(NUMBER)
    assert stored_under_old in indexes
    assert indexes[0] == rotating.blind_index(NUMBER) == Vault((NEW_KEY,)).blind_index(NUMBER)
    assert len(set(indexes)) == 2


def test_a_value_sealed_under_an_unknown_key_is_refused() -> None:
    sealed = Vault((OTHER_KEY,)).seal(NUMBER, CONTEXT)
    with pytest.raises(DecryptionError):
        Vault((NEW_KEY, OLD_KEY)).open(sealed, CONTEXT)


def test_a_retired_key_no_longer_opens_its_values() -> None:
    old_sealed = Vault((OLD_KEY,)).seal(NUMBER, CONTEXT)
    with pytest.raises(DecryptionError):
        Vault((NEW_KEY,)).open(old_sealed, CONTEXT)


# --- blind index and pseudonym ---------------------------------------------------------------


def test_the_blind_index_is_stable_and_keyed(vault: Vault) -> None:
    index = vault.blind_index(NUMBER)
    assert index == vault.blind_index(NUMBER) == Vault((OLD_KEY,)).blind_index(NUMBER)
    assert index != Vault((NEW_KEY,)).blind_index(NUMBER)
    assert index != vault.blind_index("+15551234235")
    assert re.fullmatch(r"[0-9a-f]{64}", index)
    assert NUMBER[1:] not in index


def test_a_pseudonym_is_stable_short_and_has_no_digits_of_the_number(vault: Vault) -> None:
    numbers = [NUMBER, "+447700900123", "+15550100000", "+15559876543"]
    for number in numbers:
        name = vault.pseudonym(number)
        assert name == vault.pseudonym(number)
        assert re.fullmatch(r"p-[0-9a-f]{8}", name)
        assert number[-4:] not in name and number[-3:] not in name[2:]
    assert len({vault.pseudonym(n) for n in numbers}) == len(numbers)
    assert vault.pseudonym(NUMBER) != Vault((NEW_KEY,)).pseudonym(NUMBER)
    assert vault.pseudonym(NUMBER) not in vault.blind_index(NUMBER)


# --- phone numbers ---------------------------------------------------------------------------

NORMALIZED = [
    ("+15551234234", "+15551234234"),
    ("5551234234", "+15551234234"),
    ("(555) 123-4234", "+15551234234"),
    ("555-123-4234", "+15551234234"),
    ("555.123.4234", "+15551234234"),
    ("1 555 123 4234", "+15551234234"),
    ("1-555-123-4234", "+15551234234"),
    ("+1 (555) 123-4234", "+15551234234"),
    ("  +1 555 123 4234\t", "+15551234234"),
    ("+44 20 7946 0958", "+442079460958"),
    ("+44 (0)20 7946 0958", "+442079460958"),
    ("+44 7700 900123", "+447700900123"),
    ("+447700900123", "+447700900123"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZED, ids=[r for r, _ in NORMALIZED])
def test_numbers_are_normalized_to_e164(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_national_forms_are_read_in_the_given_region() -> None:
    assert normalize("020 7946 0958", region="GB") == "+442079460958"
    assert normalize("07700 900123", region="GB") == "+447700900123"


NOT_NUMBERS = [
    "anonymous",
    "Anonymous",
    "restricted",
    "sip:foo@bar",
    "sip:+15551234234@example.org",
    "client:x",
    "client:alice",
    "",
    "   ",
    "123",
    "911",
    "12345",
    "555 1234",  # a local-only number: no area code, nobody can be texted at it
    "1" * 40,
    "+" + "4" * 39,
    "hello",
    "555-CALL-NOW",
    "1-800-FLOWERS",
    "+1 555 123 4234 ext 5",
]


@pytest.mark.parametrize("raw", NOT_NUMBERS, ids=[repr(r) for r in NOT_NUMBERS])
def test_what_is_not_a_phone_number_is_refused_without_repeating_it(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize(raw)
    message = str(caught.value)
    if raw.strip():
        assert raw.strip() not in message
    assert not re.search(r"\d{3}", message)
    assert not is_e164(raw)


def test_is_e164_accepts_only_the_canonical_form() -> None:
    assert is_e164("+15551234234")
    assert is_e164("+447700900123")
    for raw in ("5551234234", "+1 555 123 4234", "(555) 123-4234", "+15551234", "anonymous"):
        assert not is_e164(raw), raw


REDACTED = [
    ("+15551234234", "+1•••••••234"),
    ("+15550100000", "+1•••••••000"),
    ("+447700900123", "+44•••••••123"),
    ("+442079460958", "+44•••••••958"),
    ("+353851234567", "+353••••••567"),
    ("", ""),
    (None, ""),
]


@pytest.mark.parametrize(("number", "expected"), REDACTED, ids=[str(n) for n, _ in REDACTED])
def test_redact_shows_the_country_code_and_the_last_three_digits(
    number: str | None, expected: str
) -> None:
    assert redact(number) == expected


REVEALING = [
    "+15551234234",
    "+447700900123",
    "5551234234",
    "(555) 123-4234",
    "+1 (555) 123-4234",
    "sip:+15551234234@example.org",
    "+15551234234;ext=987",
    "not a number at all",
    "12",
    "+1",
]


@pytest.mark.parametrize("number", REVEALING)
def test_redact_never_reveals_more_than_the_last_three_digits(number: str) -> None:
    shown = redact(number)
    country = re.match(r"\+\d{1,3}(?=•)", shown)
    rest = shown[country.end() :] if country else shown
    assert len(re.findall(r"\d", rest)) <= 3, shown
    digits = re.sub(r"\D", "", number)
    if len(digits) >= 7:
        assert digits[-7:-3] not in re.sub(r"\D", "", rest)


@pytest.mark.parametrize("withheld", ["+266696687", "+86282452253", "+7378742833"])
def test_withheld_caller_ids_are_nobody(withheld: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize(withheld)
