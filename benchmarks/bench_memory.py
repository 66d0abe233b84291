"""Memory per entry in Redis (MEMORY USAGE ... SAMPLES 0) for the same value, per library.

Each library stores ``ENTRIES`` entries of the same payload (one per argument). freshcache's
figure is its entry plus its generation tokens amortised over the entries that share them
(every entry of one function under one prefix shares the same 5 tokens here).
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from benchmarks.common import PAYLOAD, RowResult, Table, Target
from benchmarks.libs import ASYNC_LIBS, build_async, build_sync

LIBS = (*ASYNC_LIBS, "dogpile")


def _usage(admin: Any, key: str) -> int:
    return int(admin.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)


def _strlen(admin: Any, key: str) -> int:
    return int(admin.strlen(key))


def run(ctx: Any) -> RowResult:
    entries = 200 if ctx.mode.quick else 1000
    admin = ctx.admin
    admin.flushall()
    url = ctx.redis.url
    out: dict[str, Any] = {}

    async def body(arg: Any) -> Any:
        return PAYLOAD

    def sync_body(arg: Any) -> Any:
        return PAYLOAD

    async def fill_async(lib: str) -> list[list[str]]:
        subject = build_async(lib, url, body)
        try:
            for i in range(entries):
                await subject.call(i)
            return [subject.keys(i) for i in range(entries)]
        finally:
            await subject.close()

    for lib in LIBS:
        if lib == "dogpile":
            subject = build_sync(lib, url, sync_body)
            for i in range(entries):
                subject.call(i)
            keys = [subject.keys(i) for i in range(entries)]
            subject.close()
        else:
            keys = asyncio.run(fill_async(lib))
        entry_bytes = [_usage(admin, k[0]) for k in keys]
        value_bytes = [_strlen(admin, k[0]) for k in keys]
        shared = sorted({t for k in keys for t in k[1:]})  # freshcache's token keys
        token_bytes = sum(_usage(admin, t) for t in shared)
        med = statistics.median(entry_bytes)
        out[lib] = {
            "entry_bytes": med,
            "value_bytes": statistics.median(value_bytes),
            "token_keys": len(shared),
            "token_bytes_total": token_bytes,
            "per_entry": med + token_bytes / entries,
            "per_entry_if_alone": med + token_bytes,
            "missing": sum(1 for b in entry_bytes if b == 0),
        }
    admin.flushall()
    floor = out["floor"]["per_entry"]
    rows = [
        [
            lib,
            f"{d['value_bytes']:.0f}",
            f"{d['entry_bytes']:.0f}",
            f"{d['token_bytes_total']} B / {d['token_keys']} keys" if d["token_keys"] else "—",
            f"{d['per_entry']:.0f}",
            f"{d['per_entry'] / floor:.2f}×",
        ]
        for lib, d in out.items()
    ]
    notes = [
        f"{entries} entries of the same payload per library; MEMORY USAGE with SAMPLES 0, "
        "median over the entries",
        "freshcache per entry = entry + its tokens / entries sharing them; a lone entry under "
        f"its own prefix would cost {out['freshcache']['per_entry_if_alone']:.0f} B",
        "value bytes: the stored string (pickle for cashews and dogpile, JSON for the others; "
        "freshcache adds its header: tokens, nonce, timing)",
    ]
    if any(d["missing"] for d in out.values()):
        notes.append("missing entries: " + ", ".join(f"{k} {d['missing']}" for k, d in out.items()))
    row = RowResult("memory")
    row.tables.append(
        Table(
            "Memory per entry in Redis (same value)",
            ["library", "value bytes", "entry (MEMORY USAGE)", "tokens", "per entry", "× floor"],
            rows,
            notes,
        )
    )
    row.data = {"entries": entries, "by_library": out}
    row.targets.append(
        Target(
            "memory per entry (informational)",
            "—",
            f"freshcache {out['freshcache']['per_entry']:.0f} B vs floor {floor:.0f} B",
            None,
        )
    )
    return row
