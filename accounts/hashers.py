"""How passwords are stored: Argon2id with OWASP's first recommended parameters, hashed on the password pool.

Django's PBKDF2 (1,000,000 rounds of SHA-256) and its own Argon2 defaults (100 MiB, 8 lanes) both cost
several times more CPU per hash than OWASP's minimum Argon2id settings, and in a login storm that CPU is
what queues logins. OWASP's Password Storage Cheat Sheet lists equivalent Argon2id settings (trading
memory for passes); m=19 MiB, t=2, p=1, its first, was among the cheapest in CPU on our machine and is
the one with the most memory among those (docs/BENCHMARKS.md, "Password hashing"). One lane: the password
pool (accounts/password_pool.py) already hashes one password per core.

Listed first in PASSWORD_HASHERS, with PBKDF2 after it: a stored PBKDF2 hash still verifies, and Django
replaces it with an Argon2id hash on that login, as it does for an Argon2 hash with other parameters.
That rehash is not a password change (accounts.models.User.check_password): nothing is revoked.

Every hasher here runs its costly methods (encode, verify, harden_runtime) on the password pool, whoever
calls them: a login's verification, its rehash and the dummy hash Django runs for an unknown username
(so that it costs the same time as a known one), a signup, a password change, the admin's password form,
`manage.py changepassword`. Nothing else of the request moves: the caller's thread waits for the result.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import hashers as django_hashers

from .password_pool import run_hash


class PooledHasherMixin:
    """The hashing methods of a Django hasher, run on the password pool (algorithm names unchanged, so
    stored hashes and Django's upgrade on login work as with Django's own classes)."""

    def encode(self, password: str, salt: str, *args: Any, **kwargs: Any) -> str:
        return run_hash(lambda: super(PooledHasherMixin, self).encode(password, salt, *args, **kwargs))

    def verify(self, password: str, encoded: str) -> bool:
        return run_hash(super().verify, password, encoded)

    def harden_runtime(self, password: str, encoded: str) -> None:
        run_hash(super().harden_runtime, password, encoded)


class Argon2idPasswordHasher(PooledHasherMixin, django_hashers.Argon2PasswordHasher):
    """Same algorithm name as Django's ("argon2"), so hashes with other parameters are upgraded, not refused."""

    time_cost = 2
    memory_cost = 19 * 1024  # KiB: 19 MiB
    parallelism = 1


# Hashers that only verify what was stored before Argon2id (each hash is replaced at its user's next login).
class PBKDF2PasswordHasher(PooledHasherMixin, django_hashers.PBKDF2PasswordHasher):
    pass


class PBKDF2SHA1PasswordHasher(PooledHasherMixin, django_hashers.PBKDF2SHA1PasswordHasher):
    pass


class BCryptSHA256PasswordHasher(PooledHasherMixin, django_hashers.BCryptSHA256PasswordHasher):
    pass


class ScryptPasswordHasher(PooledHasherMixin, django_hashers.ScryptPasswordHasher):
    pass
