"""corral.tree: the ZooKeeper data model, deterministic and sans-IO.

    tree.py       DataTree: znodes, sessions table, apply(txn, zxid) and read(...)
    znode.py      Znode (stored state) and the client-visible Stat derived from it
    txn.py        log entry payloads and their jute encoding
    acl.py        digest ids, auth packets, ACL validation/expansion and checks
    quota.py      quota limits/stats text and paths
    snapshot.py   snapshot encoding of tree + sessions (iterative)
    javaorder.py  Java hash-collection orders that clients can observe
    watches.py    the replica-local watch table (not replicated)

`DataTree.apply` is the only way the replicated state changes.
"""
