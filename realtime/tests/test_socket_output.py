"""A socket's ordered output: frames written at once when the transport takes them, queued in order when
the server's send suspends (the peer reads slowly), and never reordered between the two paths."""

from __future__ import annotations

import asyncio

from realtime.sockets import SocketBase, SocketState


class FlowControlledSend:
    """Stands in for uvicorn's send: finishes at once while writable, else waits like a paused transport."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.written: list[str] = []
        self.suspensions = 0

    async def __call__(self, message: dict) -> None:
        if not self.writable.is_set():
            self.suspensions += 1
            await self.writable.wait()
        self.written.append(message["text"])


def socket_with(send: FlowControlledSend) -> SocketBase:
    socket = SocketBase.__new__(SocketBase)
    socket.state = SocketState.LIVE
    socket._out = None  # as init_socket leaves it
    socket._writing = False
    socket.base_send = send
    return socket


def test_frames_are_written_in_order_across_a_paused_transport() -> None:
    async def scenario() -> None:
        send = FlowControlledSend()
        socket = socket_with(send)
        socket.push("1")
        assert send.written == ["1"], "a writable transport takes the frame without a task"
        assert socket._out is None, "a socket that keeps up holds no queue (760 bytes per socket)"
        send.writable.clear()  # the peer stopped reading
        for text in ("2", "3", "4"):
            socket.push(text)
        await asyncio.sleep(0.01)
        assert send.written == ["1"] and send.suspensions == 1
        send.writable.set()  # it drains again
        await asyncio.sleep(0.01)
        assert send.written == ["1", "2", "3", "4"]
        assert not socket._writing
        assert socket._out is None, "the queue made for the burst went with it"
        socket.push("5")
        assert send.written[-1] == "5"

    asyncio.run(scenario())


def test_a_send_that_fails_does_not_break_the_socket_object() -> None:
    async def broken(message: dict) -> None:
        raise OSError("peer gone")

    async def scenario() -> None:
        socket = socket_with(FlowControlledSend())
        socket.base_send = broken
        socket.push("lost")  # the disconnect handler cleans up; pushing must not raise
        assert not socket._writing

    asyncio.run(scenario())


def test_closing_a_socket_whose_peer_is_gone_leaves_no_failed_task_behind() -> None:
    """close_with() closes in a task nobody awaits: when the peer already went (the server's send raises
    ClientDisconnected), that task must end quietly, or asyncio logs "Task exception was never retrieved"
    for every socket of a mass disconnect."""

    class PeerGone(Exception):
        pass

    async def scenario() -> None:
        async def gone(message: dict) -> None:
            raise PeerGone()

        socket = socket_with(FlowControlledSend())
        socket.base_send = gone
        before = asyncio.all_tasks()
        socket.close_with(4000, "test")
        started = asyncio.all_tasks() - before
        assert len(started) == 1 and socket.state is SocketState.CLOSING
        await asyncio.wait(started)
        (task,) = started
        assert task.exception() is None

    asyncio.run(scenario())
