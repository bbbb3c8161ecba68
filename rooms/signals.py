"""Membership changes, sent inside the transaction that makes them.

Receivers (messaging writes ENTER/LEAVE messages, presence records left_at) join that transaction, so their
writes commit or roll back with the change. This keeps imports one-way: rooms knows none of its listeners.
Arguments: room (Room, row locked), user, membership, at (datetime).
"""

from django.dispatch import Signal

member_joined = Signal()
member_left = Signal()
# Sent before the room row is deleted; arguments: room, actor.
room_deleting = Signal()
