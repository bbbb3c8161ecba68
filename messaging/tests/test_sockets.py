"""The chat socket against real server processes: delivery, resume, idempotency, limits and close codes."""

from __future__ import annotations

import asyncio

import pytest

from accounts.testing import access_token_for
from messaging.models import Message, MessageKind
from messaging.testing import ChatClient
from rooms.services import join_room, leave_room

pytestmark = pytest.mark.django_db(transaction=True)


def talk_seqs(client: ChatClient) -> list[int]:
    return [m["seq"] for m in client.messages("TALK")]


def test_a_send_is_acked_then_delivered_to_every_member_socket_the_senders_own_included(
    server_factory, room_with_members
):
    server = server_factory()
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        a2 = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        client_id = await a.send_message("hello bob")
        for c in (a, a2, b):
            await c.wait_until(lambda c: len(c.messages()) == 1)
        ack = a.of_type("ack")[0]
        kinds = [f["type"] for f in a.frames]
        assert kinds.index("ack") < kinds.index("message"), "the sender's ack comes before its own message"
        message = b.messages()[0]
        assert (message["client_id"], message["body"], message["seq"]) == (client_id, "hello bob", ack["seq"])
        assert message["sender"] == {"id": alice.pk, "username": alice.username, "nickname": alice.nickname}
        assert a2.of_type("ack") == [], "acks go to the sending socket only"
        for c in (a, a2, b):
            await c.close()

    asyncio.run(scenario())


def test_a_client_away_while_30_messages_were_sent_resumes_with_exactly_those(server_factory, room_with_members):
    server = server_factory()
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        await a.send_message("before")
        await b.wait_until(lambda c: len(c.messages()) == 1)
        last_seen = b.messages()[-1]["seq"]
        await b.close()
        missed = [await a.send_message(f"missed {i}") for i in range(30)]
        await a.wait_until(lambda c: len(c.of_type("ack")) == 31)
        back = await ChatClient(server.ws_url, room.pk, access_token_for(bob), after_seq=last_seen).connect()
        await back.wait_until(lambda c: c.of_type("synced"))
        assert [m["client_id"] for m in back.messages()] == missed
        assert talk_seqs(back) == list(range(last_seen + 1, last_seen + 31))
        assert back.of_type("synced")[0]["last_seq"] == last_seen + 30
        await a.close()
        await back.close()

    asyncio.run(scenario())


def test_resume_while_others_keep_sending_has_no_gap_and_no_duplicate(server_factory, room_with_members, settings):
    server = server_factory(env={"RATE_LIMITS": "off", "WS_REPLAY_PAGE_SIZE": "7"})
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        for i in range(40):
            await a.send_message(f"old {i}")
        await a.wait_until(lambda c: len(c.of_type("ack")) == 40)

        async def keep_sending() -> None:
            for i in range(60):
                await a.send_message(f"live {i}")
                await asyncio.sleep(0.002)

        sender = asyncio.ensure_future(keep_sending())
        await asyncio.sleep(0.01)
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob), after_seq=0).connect()
        await sender
        await a.wait_until(lambda c: len(c.of_type("ack")) == 100)
        last = a.of_type("ack")[-1]["seq"]
        await b.wait_until(lambda c: c.messages(None) and c.messages(None)[-1]["seq"] == last)
        all_seqs = [m["seq"] for m in b.messages(None)]
        assert all_seqs == list(range(1, last + 1)), "replayed and live frames form one gapless, duplicate-free run"
        await a.close()
        await b.close()

    asyncio.run(scenario())


@pytest.mark.redis
@pytest.mark.postgres
def test_50_members_and_5_senders_on_two_processes_get_all_200_exactly_once_in_seq_order(
    server_factory, room_with_members
):
    servers = [server_factory(env={"RATE_LIMITS": "off"}, name=f"w{i}") for i in range(2)]
    room, users = room_with_members(50)
    senders = users[:5]

    async def scenario() -> None:
        clients = [
            await ChatClient(servers[i % 2].ws_url, room.pk, access_token_for(u)).connect() for i, u in enumerate(users)
        ]
        await asyncio.sleep(0.3)  # every hub has joined the room's group

        async def send_all(client: ChatClient) -> None:
            for i in range(40):
                await client.send_message(f"{i}")

        await asyncio.gather(*(send_all(c) for c in clients[:5]))
        for c in clients:
            await c.wait_until(lambda c: len(c.messages()) >= 200, timeout=30)
        expected = set(
            await asyncio.to_thread(
                lambda: list(
                    Message.objects.filter(room=room, kind=MessageKind.TALK).values_list("client_id", flat=True)
                )
            )
        )
        assert len(expected) == 200
        for c in clients:
            got = c.messages()
            assert len(got) == 200 and {m["client_id"] for m in got} == expected
            seqs = [m["seq"] for m in c.messages(None)]
            assert seqs == sorted(set(seqs)), "strictly increasing seq per socket"
        for c in clients:
            await c.close()

    assert len(senders) == 5
    asyncio.run(scenario())


@pytest.mark.redis
@pytest.mark.postgres
def test_leaving_the_room_closes_the_members_sockets_with_4403_on_every_process(server_factory, room_with_members):
    servers = [server_factory(name=f"w{i}") for i in range(2)]
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        on_first = await ChatClient(servers[0].ws_url, room.pk, access_token_for(bob)).connect()
        on_second = await ChatClient(servers[1].ws_url, room.pk, access_token_for(bob)).connect()
        stays = await ChatClient(servers[1].ws_url, room.pk, access_token_for(alice)).connect()
        await asyncio.sleep(0.2)
        await asyncio.to_thread(leave_room, room_id=room.pk, user=bob)
        assert await on_first.wait_closed() == 4403
        assert await on_second.wait_closed() == 4403
        await stays.wait_until(lambda c: c.messages("LEAVE"))
        assert stays.close_code is None
        await stays.close()

    asyncio.run(scenario())
    join_room(room_id=room.pk, user=bob)


@pytest.mark.redis
@pytest.mark.postgres
def test_500_sockets_on_one_process_with_the_redis_layer_all_get_a_message(server_factory, make_user):
    from accounts.models import User
    from rooms.models import Membership
    from rooms.services import create_room

    server = server_factory(env={"RATE_LIMITS": "off", "WS_MAX_SOCKETS_PER_USER": "1000"})
    owner = make_user()
    room = create_room(owner=owner, title="big", max_personnel=1000)
    members = User.objects.bulk_create([User(username=f"bulk{i}") for i in range(99)])
    Membership.objects.bulk_create([Membership(room=room, user=u, is_active=True) for u in members])
    room.personnel += len(members)
    room.save(update_fields=["personnel"])
    tokens = [access_token_for(u) for u in [owner, *members]]

    async def scenario() -> None:
        clients = []
        for i in range(500):
            clients.append(await ChatClient(server.ws_url, room.pk, tokens[i % len(tokens)]).connect())
        await clients[0].send_message("to all 500")
        for c in clients:
            await c.wait_until(lambda c: len(c.messages()) == 1, timeout=20)
        assert all(c.close_code is None for c in clients)
        await asyncio.gather(*(c.close() for c in clients))

    asyncio.run(scenario())


def test_a_burst_larger_than_channels_default_capacity_of_100_loses_nothing(server_factory, room_with_members):
    server = server_factory(env={"RATE_LIMITS": "off"})
    room, users = room_with_members(6)

    async def scenario() -> None:
        clients = [await ChatClient(server.ws_url, room.pk, access_token_for(u)).connect() for u in users]

        async def burst(client: ChatClient) -> None:
            for i in range(60):
                await client.send_message(f"burst {i}")

        await asyncio.gather(*(burst(c) for c in clients[:3]))
        for c in clients:
            await c.wait_until(lambda c: len(c.messages()) == 180, timeout=30)
            seqs = talk_seqs(c)
            assert seqs == sorted(set(seqs))
        await asyncio.gather(*(c.close() for c in clients))

    asyncio.run(scenario())


def test_typing_is_throttled_per_user_across_their_tabs(server_factory, room_with_members):
    server = server_factory()
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        tab1 = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        tab2 = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        for _ in range(3):
            await tab1.send_json({"type": "typing"})
            await tab2.send_json({"type": "typing"})
        await b.wait_until(lambda c: c.of_type("typing"))
        await tab1.send_message("flush")  # ordered after the typing frames on the room's stream
        await b.wait_until(lambda c: c.messages())
        assert len(b.of_type("typing")) == 1
        for c in (tab1, tab2, b):
            await c.close()

    asyncio.run(scenario())


def test_a_deactivated_user_whose_close_event_was_lost_is_closed_by_the_periodic_recheck(
    server_factory, room_with_members, monkeypatch
):
    from accounts import services as account_services

    server = server_factory()
    room, (alice, bob) = room_with_members(2)
    # The deactivation commits, but its user.revoked event never reaches the server (a Redis blip).
    monkeypatch.setattr(account_services, "publish_user_revoked", lambda *args, **kwargs: None)

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob)).connect()
        await asyncio.to_thread(account_services.deactivate_user, user=alice.pk)
        assert await a.wait_closed(timeout=8) == 4401
        assert b.close_code is None
        await b.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_denylisted_token_whose_close_event_was_lost_is_closed_by_the_periodic_recheck(
    server_factory, room_with_members
):
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.tokens import mark_credentials_changed, revoke_access_jti

    server = server_factory()
    room, (alice, _) = room_with_members(2)
    token = AccessToken.for_user(alice)

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, str(token)).connect()
        await a.send_json({"type": "ping"})
        await a.wait_until(lambda c: c.of_type("pong"))
        # What a logout commits (the denylist entry and the user's change marker), without its close event.
        revoke_access_jti(str(token["jti"]), float(token["exp"]))
        await asyncio.to_thread(mark_credentials_changed, alice.pk)
        assert await a.wait_closed(timeout=8) == 4401

    asyncio.run(scenario())


def test_resumes_are_limited_to_one_per_second(server_factory, room_with_members):
    server = server_factory()
    room, (alice, _) = room_with_members(2)

    async def scenario() -> None:
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        await a.send_json({"type": "resume", "after_seq": 0})
        await a.send_json({"type": "resume", "after_seq": 0})
        await a.wait_until(lambda c: c.of_type("synced") and c.of_type("error"))
        assert len(a.of_type("synced")) == 1
        assert a.of_type("error")[0]["code"] == "rate_limited"
        await asyncio.sleep(1.1)
        await a.send_json({"type": "resume", "after_seq": 0})
        await a.wait_until(lambda c: len(c.of_type("synced")) == 2)
        await a.close()

    asyncio.run(scenario())


def test_a_resume_claiming_a_seq_the_room_never_reached_does_not_swallow_live_messages(
    server_factory, room_with_members
):
    server = server_factory()
    room, (alice, bob) = room_with_members(2)

    async def scenario() -> None:
        b = await ChatClient(server.ws_url, room.pk, access_token_for(bob), after_seq=10**9).connect()
        await b.wait_until(lambda c: c.of_type("synced"))
        assert b.of_type("synced")[0]["last_seq"] == room.last_seq
        a = await ChatClient(server.ws_url, room.pk, access_token_for(alice)).connect()
        await a.send_message("you should see this")
        await b.wait_until(lambda c: c.messages())
        assert b.messages()[0]["body"] == "you should see this"
        await a.close()
        await b.close()

    asyncio.run(scenario())
