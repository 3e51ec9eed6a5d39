"""estappliance.ra.passwords: salted scrypt hashes; verification never raises."""
from __future__ import annotations

import base64

from twisted.trial import unittest

from estappliance.ra.passwords import hash_password, verify_password


class HashTests(unittest.TestCase):
    def test_salted(self):
        first, second = hash_password("correct horse"), hash_password("correct horse")
        self.assertNotEqual(first, second)
        self.assertTrue(verify_password("correct horse", first))
        self.assertTrue(verify_password("correct horse", second))

    def test_self_describing_and_password_free(self):
        stored = hash_password("correct horse")
        fields = stored.split("$")
        self.assertEqual(len(fields), 6)
        self.assertEqual(fields[0], "scrypt")
        self.assertGreaterEqual(int(fields[1]), 2 ** 14)
        self.assertEqual(len(base64.b64decode(fields[4])), 16)  # salt
        self.assertEqual(len(base64.b64decode(fields[5])), 32)  # digest
        self.assertNotIn("correct", stored)
        self.assertNotIn(base64.b64encode(b"correct horse").decode(), stored)


class VerifyTests(unittest.TestCase):
    def setUp(self):
        self.stored = hash_password("correct horse")

    def test_right_password(self):
        self.assertIs(verify_password("correct horse", self.stored), True)

    def test_wrong_password(self):
        for wrong in ("Correct horse", "correct horse ", "correct hors", "", "battery staple"):
            self.assertIs(verify_password(wrong, self.stored), False, wrong)

    def test_unicode_password(self):
        stored = hash_password("pässwörd ✓")
        self.assertTrue(verify_password("pässwörd ✓", stored))
        self.assertFalse(verify_password("passwort ✓", stored))

    def test_empty_password_can_be_hashed_and_checked(self):
        stored = hash_password("")
        self.assertTrue(verify_password("", stored))
        self.assertFalse(verify_password("x", stored))

    def test_hash_of_one_password_does_not_verify_another(self):
        self.assertFalse(verify_password("correct horse", hash_password("battery staple")))


class MalformedStoredTests(unittest.TestCase):
    """A damaged or foreign stored string means 'no', never an exception."""

    def setUp(self):
        self.good = hash_password("pw")
        self.fields = self.good.split("$")

    def with_field(self, index: int, value: str) -> str:
        fields = list(self.fields)
        fields[index] = value
        return "$".join(fields)

    def test_no_stored_hash(self):
        self.assertIs(verify_password("pw", None), False)
        self.assertIs(verify_password("pw", ""), False)

    def test_malformed_strings(self):
        cases = [
            "garbage",
            "pw",
            "$$$$$",
            "scrypt",
            "scrypt$16384$8$1$c2FsdA==",  # a field short
            self.good + "$extra",  # a field long
            self.with_field(0, "bcrypt"),  # another scheme
            self.with_field(1, "x"),  # N not a number
            self.with_field(1, "3"),  # N not a power of two
            self.with_field(1, "-16384"),
            self.with_field(2, "0"),  # r = 0
            self.with_field(3, ""),  # p empty
            self.with_field(4, "!!not base64!!"),
            self.with_field(5, "!!not base64!!"),
            self.with_field(5, ""),  # empty digest
            self.with_field(1, str(2 ** 30)),  # memory limit
        ]
        for stored in cases:
            try:
                result = verify_password("pw", stored)
            except Exception as e:  # noqa: BLE001 - the point of the test
                self.fail(f"verify_password raised {e!r} for {stored!r}")
            self.assertIs(result, False, stored)

    def test_changed_digest_or_salt(self):
        digest = bytearray(base64.b64decode(self.fields[5]))
        digest[0] ^= 1
        self.assertFalse(verify_password("pw", self.with_field(5, base64.b64encode(bytes(digest)).decode())))
        salt = bytearray(base64.b64decode(self.fields[4]))
        salt[0] ^= 1
        self.assertFalse(verify_password("pw", self.with_field(4, base64.b64encode(bytes(salt)).decode())))
