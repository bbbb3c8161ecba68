"""Wire shapes of the accounts API. Input is checked by accounts.services (one set of rules for every
edge); the request serializers here document the bodies in the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers

from .models import User


class PublicUserSerializer(serializers.Serializer):
    """The embedded User of the contract, {id, username, nickname}, wherever a REST answer shows a user."""

    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    nickname = serializers.CharField(read_only=True)


class UserSerializer(serializers.ModelSerializer):
    """The signup answer: {id, username, nickname, email}."""

    class Meta:
        model = User
        fields = ["id", "username", "nickname", "email"]
        read_only_fields = fields


class MeSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "nickname", "email", "is_staff"]
        read_only_fields = fields


class SignupRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    nickname = serializers.CharField(max_length=50, required=False, allow_blank=True)


class LoginRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, write_only=True)


class PasswordChangeRequestSerializer(serializers.Serializer):
    old_password = serializers.CharField(max_length=256, write_only=True)
    new_password = serializers.CharField(max_length=256, write_only=True)


class RefreshRequestSerializer(serializers.Serializer):
    refresh = serializers.CharField(required=False, help_text="Optional when the chattalk_refresh cookie is sent.")


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LoginResponseSerializer(TokenPairSerializer):
    user = MeSerializer()
