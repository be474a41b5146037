"""Layer patterns: names or globs over dotted layer names whose wildcards stay within one level.

Used wherever a user names layers (`layers.select_layers`, `--layers`; the per-layer keys of
`reductions.resolve_reductions`), so a pattern means the same everywhere. `*` is any run of
characters other than `.`, `?` one such character, `[seq]` / `[!seq]` one character in / not
in seq, and `**` any run including dots: `blocks.*` matches `blocks.3` but not
`blocks.3.attn.qkv`, which `blocks.**` and `blocks.*.attn.*` match.
"""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            parts.append(".*")
            i += 2
            continue
        if char == "*":
            parts.append("[^.]*")
        elif char == "?":
            parts.append("[^.]")
        elif char == "[" and (close := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : close]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            parts.append(f"[{'^' if negate else ''}{body.replace(chr(92), chr(92) * 2)}]")
            i = close + 1
            continue
        else:
            parts.append(re.escape(char))
        i += 1
    return re.compile("".join(parts))


def layer_matches(name: str, pattern: str) -> bool:
    """Whether layer `name` is `pattern` or matches it as a glob over dotted names: `*` is any
    run of characters within one dotted level (no `.`), `?` one such character, `[seq]` /
    `[!seq]` one character in / not in seq, `**` any run including dots.

    Example
    -------
    >>> layer_matches("blocks.3", "blocks.*"), layer_matches("blocks.3.attn.qkv", "blocks.*")
    (True, False)
    >>> layer_matches("blocks.3.attn.qkv", "blocks.**")
    True
    """
    return name == pattern or _glob_regex(pattern).fullmatch(name) is not None
