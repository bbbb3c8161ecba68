"""Socket lifecycle for listeners such as presence, which the sockets do not know.

`room_socket_opened` / `room_socket_closed` are sent (with `await signal.asend(...)`) by sockets that make
their user present in a room: the chat socket. Arguments: room_id, user_id, connection_id (str).
Receivers must be quick and must not raise: the socket awaits them.
"""

from django.dispatch import Signal

room_socket_opened = Signal()
room_socket_closed = Signal()
