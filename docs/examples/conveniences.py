"""Text TTLs, ``condition=``, ``cache.bypass()`` and single values, on one cache.

tests/docs/test_conveniences_example.py runs ``main()`` on memory://; docs/guide.md includes
its sections.
"""

from __future__ import annotations

from pydantic import BaseModel

from freshcache import Cache

cache = Cache("memory://", namespace="conveniences")


class User(BaseModel):
    id: int
    name: str


class Avatar(BaseModel):
    url: str


USERS = {1: User(id=1, name="Ada")}


# --8<-- [start:condition]
@cache.cached(ttl="10m", key_prefix="user:{user_id}", condition=lambda user: user is not None)
async def find_user(user_id: int) -> User | None:
    return USERS.get(user_id)  # None (an unknown user) is returned, never stored


# --8<-- [end:condition]


# --8<-- [start:bypass]
async def fresh_user(user_id: int) -> User | None:
    async with cache.bypass():
        return await find_user(user_id)  # computed now, not read, not stored


# --8<-- [end:bypass]


# --8<-- [start:values]
async def remember_avatar(user_id: int, avatar: Avatar) -> None:
    await cache.set("user:{user_id}:avatar", avatar, ttl="1h", user_id=user_id)


async def cached_avatar(user_id: int) -> Avatar | None:
    avatar: Avatar | None = await cache.get(
        "user:{user_id}:avatar", type=Avatar, default=None, user_id=user_id
    )
    return avatar


async def forget_avatar(user_id: int) -> None:
    await cache.delete("user:{user_id}:avatar", user_id=user_id)  # just that key


# await cache.invalidate("user:1:*") drops it too, with everything else under user:1.
# Synchronous code: cache.get_sync / cache.set_sync / cache.delete_sync.
# --8<-- [end:values]


async def main() -> dict[str, object]:
    """Run each convenience once; returns what the docs say it does."""
    found = await find_user(1)
    missing = await find_user(2)
    USERS[2] = User(id=2, name="Grace")
    fresh = await fresh_user(1)
    await remember_avatar(1, Avatar(url="a.png"))
    avatar = await cached_avatar(1)
    await cache.invalidate("user:1:*")
    after_invalidation = await cached_avatar(1)
    await remember_avatar(2, Avatar(url="b.png"))
    await forget_avatar(2)
    return {
        "found": found,
        "missing_then_added": (missing, await find_user(2)),
        "fresh": fresh,
        "avatar": avatar,
        "after_invalidation": after_invalidation,
        "after_delete": await cached_avatar(2),
        "stats": cache.stats(),
    }
