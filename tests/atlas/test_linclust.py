"""Linclust's candidate machinery against brute force: window codes, the k-mers of lowest hash, groups and edges."""

import numpy as np

from foldatlas.atlas.linclust import (kmer_hash, kmers, lowest_kmers, separated, sort_order, star_edges,
                                      unique_pairs, window_codes)


def test_window_codes_and_sort_order_match_brute_force():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 13, 500).astype(np.uint8)
    for k in (1, 3, 6, 7, 10):
        n = len(s) - k + 1
        brute = np.array([sum(int(s[i + j]) * 13 ** (k - 1 - j) for j in range(k)) for i in range(n)])
        assert (window_codes(s, k, 13, n) == brute).all()
    codes = rng.integers(0, 50, 3000)
    assert (codes[sort_order(codes)] == np.sort(codes)).all()


def _units(rng, lengths, alphabet=5):
    letters = rng.integers(0, alphabet, int(sum(lengths))).astype(np.uint8)
    letters[rng.choice(len(letters), 10, replace=False)] = 255  # letters outside the alphabet end k-mers
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    return letters, offsets


def test_lowest_kmers_are_the_m_distinct_kmers_of_lowest_hash_of_each_unit():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 120, 300)
    letters, offsets = _units(rng, lengths)
    sep, sep_offsets = separated(letters, offsets, 255)
    k, m = 4, 7
    code, unit, pos = lowest_kmers(sep, sep_offsets, 5, k, m, np.arange(len(lengths)))
    for u in range(len(lengths)):
        seq = letters[offsets[u]:offsets[u + 1]]
        found = {}
        for i in range(len(seq) - k + 1):
            window = seq[i:i + k]
            if (window < 5).all():
                c = int(sum(int(x) * 5 ** (k - 1 - j) for j, x in enumerate(window)))
                found.setdefault(c, i)
        want = sorted(found, key=lambda c: int(kmer_hash(np.array([c]))[0]))[:m]
        mine = code[unit == u]
        assert sorted(mine.tolist()) == sorted(want)
        for c, p in zip(mine, pos[unit == u]):  # a position of that k-mer in the unit
            assert int(sum(int(x) * 5 ** (k - 1 - j) for j, x in enumerate(seq[p:p + k]))) == c
    all_code, all_unit, _ = kmers(sep, sep_offsets, 5, k, np.arange(len(lengths)))
    assert len(all_code) >= len(code)


def test_star_edges_link_each_group_to_its_longest_allowed_member():
    code = np.array([7, 7, 7, 9, 9, 4])
    entry = np.array([0, 1, 2, 1, 3, 2])
    pos = np.array([5, 2, 0, 1, 3, 0])
    lengths = np.array([50, 80, 60, 90])
    yes = np.ones(4, bool)
    member, centre, diagonal = star_edges(code, entry, pos, lengths, yes, yes)
    assert sorted(zip(member.tolist(), centre.tolist(), diagonal.tolist())) == [(0, 1, 3), (1, 3, -2), (2, 1, -2)]
    # entry 1 may not be a centre: group 7 goes to entry 2, group 9 to entry 3; only entry 0 may join
    can_centre = np.array([True, False, True, True])
    member, centre, _ = star_edges(code, entry, pos, lengths, can_centre, np.array([True, False, False, False]))
    assert list(zip(member.tolist(), centre.tolist())) == [(0, 2)]
    m, c, d = unique_pairs(np.array([3, 1, 3]), np.array([0, 2, 0]), np.array([5, 6, 7]))
    assert list(zip(m.tolist(), c.tolist())) == [(1, 2), (3, 0)]
