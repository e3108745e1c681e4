"""Length-sorted batches under a token budget, as fair-esm's ``esm-fold`` makes them."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["token_batches"]


def token_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group item indices into batches of similar length.

    Items are sorted by length (longest first, so that memory trouble shows
    early) and a batch grows while ``batch_size * longest_length <= max_tokens``;
    an item longer than the budget gets a batch of its own.

    Parameters
    ----------
    lengths : sequence of int
        Model length of each item (linkers included).
    max_tokens : int
        Padded tokens per batch; 0 or less puts every item in its own batch.

    Returns
    -------
    list of list of int

    Examples
    --------
    >>> token_batches([10, 300, 12, 11], max_tokens=40)
    [[1], [2, 3, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and (max_tokens <= 0 or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
