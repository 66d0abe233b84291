"""docs/examples/conveniences.py does what docs/guide.md says it does."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "conveniences.py"


async def test_the_conveniences_example_behaves_as_documented() -> None:
    spec = importlib.util.spec_from_file_location("docs_example_conveniences", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    try:
        seen: dict[str, Any] = await module.main()
    finally:
        await module.cache.aclose()
        del sys.modules[spec.name]
    user = module.User
    assert seen["found"] == user(id=1, name="Ada")
    # None was not stored: once the user exists, the next call finds it
    assert seen["missing_then_added"] == (None, user(id=2, name="Grace"))
    assert seen["fresh"] == user(id=1, name="Ada")
    assert seen["avatar"] == module.Avatar(url="a.png")
    assert seen["after_invalidation"] is None
    assert seen["after_delete"] is None
    reads = seen["stats"]["user:{user_id}"]
    assert reads.bypasses_by_reason == {"condition": 1, "bypass": 1}
    # Ada and Grace from the function, two avatars from cache.set: one prefix as written
    assert reads.sets == 4
