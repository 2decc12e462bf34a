"""corral.tree: the ZooKeeper data model — znodes, ACLs, quotas, sessions table, txns.

Deterministic and sans-IO: `DataTree.apply(txn, zxid)` is the only way the replicated
state changes; the watch table (watches.py) is replica-local and lives beside it.
"""
