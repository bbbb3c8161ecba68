"""Chat socket lifecycle, for listeners such as presence (which knows messaging, never the reverse).

Sent with `await signal.asend(...)` from the chat consumer. Arguments: room_id, user_id, connection_id (str).
"""

from django.dispatch import Signal

chat_socket_opened = Signal()
chat_socket_closed = Signal()
