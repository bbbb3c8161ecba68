"""How passwords are stored: Argon2id with OWASP's first recommended parameters.

Django's PBKDF2 (1,000,000 rounds of SHA-256) and its own Argon2 defaults (100 MiB, 8 lanes) both cost
several times more CPU per hash than OWASP's minimum Argon2id settings, and in a login storm that CPU is
what queues logins. OWASP's Password Storage Cheat Sheet lists equivalent Argon2id settings (trading
memory for passes); m=19 MiB, t=2, p=1, its first, was among the cheapest in CPU on our machine and is
the one with the most memory among those (docs/BENCHMARKS.md, "Password hashing"). One lane: the password
pool (accounts/password_pool.py) already hashes one login per core.

Listed first in PASSWORD_HASHERS, with PBKDF2 after it: a stored PBKDF2 hash still verifies, and Django
replaces it with an Argon2id hash on that login, as it does for an Argon2 hash with other parameters.
That rehash is not a password change (accounts.models.User.check_password): nothing is revoked.
"""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idPasswordHasher(Argon2PasswordHasher):
    """Same algorithm name as Django's ("argon2"), so hashes with other parameters are upgraded, not refused."""

    time_cost = 2
    memory_cost = 19 * 1024  # KiB: 19 MiB
    parallelism = 1
