"""How messages say things, one helper each, so that every message says them alike:

- `count(n, noun)`: "1 epoch", "2 epochs" (never "1 epochs");
- `clip(text, limit)`: a long text cut at a word boundary with an ellipsis (never mid-word);
- `reason(error, limit)`: an exception's first line, clipped, for a one-line message that quotes it
  (e.g. PyTorch's reason a checkpoint cannot be read).
"""

from __future__ import annotations

ELLIPSIS = "..."  # ASCII: messages go to any terminal and log file

# nouns whose plural is not noun + "s" (and not noun + "es" after s, sh or x); "epoch" takes an "s"
_PLURALS = {"batch": "batches", "match": "matches", "index": "indices", "axis": "axes", "matrix": "matrices",
            "entry": "entries", "directory": "directories", "copy": "copies"}


def plural(noun: str, n: int | float = 2) -> str:
    """`noun` as it goes with `n` ('epoch' for 1, 'epochs' otherwise). For a phrase, the last word changes
    ('deletable block' -> 'deletable blocks')."""
    if n == 1:
        return noun
    head, _, last = noun.rpartition(" ")
    many = _PLURALS.get(last) or (last + "es" if last.endswith(("s", "sh", "x")) else last + "s")
    return f"{head} {many}" if head else many


def count(n: int | float, noun: str, many: str | None = None) -> str:
    """'1 epoch', '2 epochs', '1,000 iterations' (thousands separated for ints); `many` overrides the plural."""
    number = f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else f"{n:g}"
    return f"{number} {noun if n == 1 else (many or plural(noun, n))}"


def clip(text: str, limit: int = 100) -> str:
    """`text` if it has at most `limit` characters; else cut at the last space before the limit (mid-word only
    when there is no space in the first half), with an ellipsis, the result `limit` characters at most."""
    text = str(text)
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(ELLIPSIS), 0)]
    space = cut.rfind(" ")
    if not text[len(cut)].isspace() and space >= len(cut) // 2:  # the cut is inside a word: back to its start
        cut = cut[:space]
    return cut.rstrip(" ,;:.-(") + ELLIPSIS


def reason(error: BaseException | str, limit: int = 100) -> str:
    """An exception's message as one short line: its first non-empty line, clipped; its type when it has none."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not first:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    return clip(first, limit)
