"""A checker in the spirit of Jepsen's Kafka workload, for logs read back from every replica.

Inputs:
- `acks`: what clients were told, `(group, index, record)` triples (record: a unique id);
- `reads`: the replicas' logs as they were read at successive moments, a list (oldest first)
  of `{node: [(group, index, record), ...]}` holding only entries known committed (applied)
  on that node at that moment.

Rules, each reported with examples:
1. `lost`: an acknowledged record missing from the newest read of a replica whose log reaches
   its index (or from every replica's newest read).
2. `moved`: an acknowledged record found at another index than the one acknowledged.
3. `duplicated`: a record present twice in one replica's log.
4. `diverged`: two replicas holding different records at one index of a group.
5. `vanished`: a record read (committed) at some moment and absent, or elsewhere, in a later
   read of a replica whose log reaches that index (no read of data that later disappears).
6. `unordered`: indices not strictly increasing along a replica's log.
"""

from collections import defaultdict


def check(acks, reads):
    problems = defaultdict(list)
    if not reads:
        problems["lost"].append("no reads")
        return dict(problems)
    newest = reads[-1]
    # Per replica in the newest read: group -> {index: record}, and how far each log reaches.
    logs = {}
    for node, entries in newest.items():
        by_group = defaultdict(dict)
        seen = defaultdict(set)
        last = defaultdict(lambda: -1)
        for g, i, r in entries:
            if i <= last[g]:
                problems["unordered"].append((node, g, i))
            last[g] = i
            if r in seen[g]:
                problems["duplicated"].append((node, g, r))
            seen[g].add(r)
            by_group[g][i] = r
        logs[node] = (by_group, dict(last))
    # 4. replicas agree index by index.
    nodes = sorted(logs)
    for a_ix, a in enumerate(nodes):
        for b in nodes[a_ix + 1:]:
            for g, entries in logs[a][0].items():
                other = logs[b][0].get(g, {})
                for i, r in entries.items():
                    if i in other and other[i] != r:
                        problems["diverged"].append((g, i, a, r, b, other[i]))
    # 1, 2. acknowledged records.
    where = defaultdict(dict)  # node -> {(g, record): index}
    for node, (by_group, _) in logs.items():
        for g, entries in by_group.items():
            for i, r in entries.items():
                where[node][(g, r)] = i
    for g, i, r in acks:
        found_anywhere = False
        for node, (by_group, last) in logs.items():
            at = where[node].get((g, r))
            if at is not None:
                found_anywhere = True
                if at != i:
                    problems["moved"].append((node, g, r, i, at))
            elif last.get(g, -1) >= i:
                problems["lost"].append((node, g, i, r))
        if not found_anywhere:
            problems["lost"].append(("all", g, i, r))
    # 5. what was read stays.
    for older in reads[:-1]:
        for node, entries in older.items():
            if node not in logs:
                continue
            by_group, last = logs[node]
            for g, i, r in entries:
                if last.get(g, -1) >= i and by_group.get(g, {}).get(i) != r:
                    problems["vanished"].append((node, g, i, r))
    return {k: v for k, v in problems.items() if v}


def read_dump(path):
    """A spike dump file: `group index record` per line."""
    out = []
    with open(path) as f:
        for line in f:
            g, i, r = line.split()
            out.append((int(g), int(i), int(r)))
    return out


def read_acks(path):
    """A spike load file: `group index record latency_us` per line."""
    out = []
    with open(path) as f:
        for line in f:
            g, i, r, _ = line.split()
            out.append((int(g), int(i), int(r)))
    return out


def self_test():
    """The checker finds what it is meant to find (run by the spike script before use)."""
    acks = [(0, 1, 10), (0, 2, 11)]
    good = {1: [(0, 1, 10), (0, 2, 11)], 2: [(0, 1, 10), (0, 2, 11)]}
    assert check(acks, [good]) == {}, check(acks, [good])
    assert "lost" in check(acks, [{1: [(0, 1, 10)], 2: [(0, 1, 10), (0, 3, 12)]}])
    assert "moved" in check(acks, [{1: [(0, 1, 10), (0, 3, 11)]}])
    assert "duplicated" in check([], [{1: [(0, 1, 10), (0, 2, 10)]}])
    assert "diverged" in check([], [{1: [(0, 1, 10)], 2: [(0, 1, 99)]}])
    assert "vanished" in check([], [{1: [(0, 1, 10), (0, 2, 11)]}, {1: [(0, 1, 10), (0, 2, 12)]}])
    assert "unordered" in check([], [{1: [(0, 2, 10), (0, 1, 11)]}])


if __name__ == "__main__":
    self_test()
    print("checker self-test ok")
