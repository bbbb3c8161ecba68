"""Nobody can take a name that looks like another user's: nicknames and usernames are compared by their
skeletons (accounts/names.py) at signup and in the admin; and wherever a nickname is shown, the username
is there too."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from accounts.names import name_skeleton
from rooms.services import create_room

from .conftest import PASSWORD, assert_contract_error


def signup(**body: Any) -> Any:
    return APIClient().post("/api/auth/signup", {"password": PASSWORD, **body}, format="json")


@pytest.fixture
def alice(make_user: Any) -> User:
    return make_user("alice", nickname="Queen of Hearts")


@pytest.mark.parametrize(
    "nickname",
    [
        "alice",
        "ALICE",
        " Alice ",
        "A l i c e",
        "\u0410lice",  # Cyrillic А
        "al\u0456ce",  # Cyrillic і
        "\u0391LICE",  # Greek Α
        "a\u200blice",  # zero-width space
        "ali\u00adce",  # soft hyphen
        "\u202ealice",  # right-to-left override
        "Alicé",
        "ＡＬＩＣＥ",  # fullwidth
        "𝐚𝐥𝐢𝐜𝐞",  # mathematical bold
        "a1ice",
        "AlICE",  # capital I for l
        "queen of hearts",  # the other user's nickname
        "Queen 0f Hearts",
    ],
)
def test_a_nickname_that_looks_like_another_users_name_is_refused_at_signup(alice, nickname):
    response = signup(username="mallory", nickname=nickname)
    body = assert_contract_error(response, 400, "validation_error")
    assert set(body["fields"]) == {"nickname"}, body
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.parametrize("username", ["\u0430lice", "al1ce", "QueenOfHearts"])
def test_a_username_that_looks_like_another_users_username_or_nickname_is_refused(alice, username):
    body = assert_contract_error(signup(username=username), 400, "validation_error")
    assert set(body["fields"]) == {"username"}, body
    # The same username in another case stays what it was: taken.
    assert_contract_error(signup(username="ALICE"), 409, "username_taken")


def test_a_look_alike_is_refused_while_distinct_names_and_ones_own_username_as_nickname_pass(alice):
    assert_contract_error(signup(username="bob", nickname="ALICE"), 400, "validation_error")
    response = signup(username="bob", nickname="Bob")
    assert response.status_code == 201, response.content
    assert response.json() == {"id": response.json()["id"], "username": "bob", "nickname": "Bob", "email": ""}
    assert signup(username="alicia", nickname="Alicia").status_code == 201
    assert signup(username="김철수", nickname="철수").status_code == 201


@pytest.mark.parametrize("nickname", ["\u200b", "\u200b\u200d\u2060", "\u3164", "\u2800"])
def test_a_nickname_that_shows_nothing_is_refused(db, nickname):
    body = assert_contract_error(signup(username="ghost", nickname=nickname), 400, "validation_error")
    assert body["fields"]["nickname"] == ["Must contain a visible character."]


def test_the_skeleton_keeps_what_tells_names_apart():
    assert name_skeleton("bob") != name_skeleton("rob")
    assert name_skeleton("か") != name_skeleton("が")  # a dakuten changes the letter
    assert name_skeleton("alice_") != name_skeleton("alice")
    assert name_skeleton("") == ""


# --- the admin ------------------------------------------------------------------------------------------
def admin_client(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def change_form_data(user: User, **changes: Any) -> dict[str, Any]:
    data = {
        "username": user.username,
        "nickname": user.nickname,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    data.update(changes)
    return data


def test_the_admin_refuses_a_look_alike_nickname_but_still_saves_a_user_with_an_old_clash(alice, make_user):
    admin = admin_client(make_user)
    mallory = make_user("mallory", nickname="Mal")
    url = f"/admin/accounts/user/{mallory.pk}/change/"

    refused = admin.post(url, change_form_data(mallory, nickname="ALlCE"))
    assert refused.status_code == 200  # the form again, with the error
    assert "Too much like the name of another user." in refused.content.decode()
    mallory.refresh_from_db()
    assert mallory.nickname == "Mal"

    # A clash from before the rule (made behind the forms) does not block editing other fields.
    User.objects.filter(pk=mallory.pk).update(nickname="Alice")
    mallory.refresh_from_db()
    saved = admin.post(url, change_form_data(mallory, last_name="Lastname"))
    assert saved.status_code == 302, saved.content.decode()[:2000]


def test_the_admin_refuses_a_new_user_whose_username_looks_like_another_users_nickname(alice, make_user):
    admin = admin_client(make_user)
    response = admin.post(
        "/admin/accounts/user/add/",
        {"username": "QueenOfHearts", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 200
    assert "Too much like the name of another user." in response.content.decode()
    assert not User.objects.filter(username="QueenOfHearts").exists()


# --- where names are shown ------------------------------------------------------------------------------
def test_the_room_list_shows_the_owners_username_beside_the_nickname(alice, make_user):
    create_room(owner=alice, title="Wonderland", max_personnel=5)
    client = Client()
    client.force_login(make_user("reader"))
    html = client.get("/rooms/").content.decode()
    assert 'title="@alice">Queen of Hearts</td>' in html
    assert 'data-testid="current-user" title="@reader"' in html
