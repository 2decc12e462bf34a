"""Every bound in corral, with its unit.

Rules: constants only, upper-case, unit or qualifier last, `_MAX`/`_MIN` suffixes.
Imports nothing from corral. A collection that grows with client input has its bound
here, and the code checks it where the data enters.
"""

FRAME_SIZE_MAX = 0xFFFFF  # bytes; ZooKeeper's jute.maxbuffer default (1 048 575)
FRAME_SIZE_HARD_MAX = 0x7FFFFFF  # bytes; the largest jute.maxbuffer we accept in config
ACL_ENTRIES_MAX = 1_024  # entries in one ACL list
MULTI_OPS_MAX = 10_000  # ops in one multi / multiRead request
AUTH_IDS_PER_CONNECTION_MAX = 64  # identities one connection may accumulate
PASSWORD_SIZE = 16  # bytes; every client expects exactly 16
SEQUENCE_DIGITS = 10  # %010d
TTL_MAX_MS = 0xFF_FFFF_FFFF  # 2**40 - 1, the 40 bits ZooKeeper keeps for a TTL
TTL_MIN_MS = 1

TICK_TIME_DEFAULT_MS = 2_000
# ZooKeeper's initLimit/syncLimit (in tickTimes) when zoo.cfg has none. ZooKeeper requires
# both in an ensemble; corral keeps its earlier timing (an election after 1-2 tickTimes of
# silence) and ZooKeeper's sample initLimit.
SYNC_LIMIT_DEFAULT_TICKS = 1
INIT_LIMIT_DEFAULT_TICKS = 10
MAX_CLIENT_CNXNS_DEFAULT = 60  # connections per client address; 0 = unlimited
PENDING_REQUESTS_PER_CONNECTION_MAX = 10_000  # requests in flight on one connection
HANDSHAKE_TIMEOUT_MS = 10_000  # a connection that sends no ConnectRequest is dropped
# A member of an ensemble without a leader this long (or tickTime, if longer) has lost its
# quorum: it stops serving, or serves read-only clients (ZooKeeper's read-only start delay).
QUORUM_LOST_GRACE_MIN_MS = 2_000
CONTAINER_CHECK_INTERVAL_DEFAULT_MS = 60_000
CONTAINER_DELETES_PER_MINUTE_MAX = 10_000

assert FRAME_SIZE_MAX <= FRAME_SIZE_HARD_MAX

PEER_FRAME_SIZE_MAX = 16 * 1024 * 1024  # bytes in one replica-to-replica frame
PEER_QUEUE_FRAMES_MAX = 4_096  # payloads waiting for one peer before new ones are dropped
PEER_CONNECT_TIMEOUT_MS = 2_000
PEER_HANDSHAKE_TIMEOUT_MS = 5_000
PEER_HANDSHAKES_MAX = 64  # inbound handshakes under way at once; more are closed at accept

# Consensus (replica-to-replica). A peer message stays well under the peer frame size.
APPEND_ENTRIES_MAX = 1_024  # entries in one APPEND message
APPEND_SIZE_MAX = 4 * 1_048_576  # bytes of entry data in one APPEND (one entry may exceed it)
INFLIGHT_APPENDS_PER_PEER_MAX = 64  # APPEND messages with entries unacknowledged per peer
SNAPSHOT_CHUNK_SIZE_MAX = 1_048_576  # bytes of snapshot data in one SNAPSHOT_CHUNK message
SNAPSHOT_SIZE_MAX = 1 << 32  # bytes; a receiver assembles a snapshot in memory up to this
# A SNAPSHOT_CHUNK payload: the chunk, its message fields and the snapshot's membership.
SNAPSHOT_CHUNK_MESSAGE_SIZE_MAX = SNAPSHOT_CHUNK_SIZE_MAX + 1_024
SNAPSHOT_CHUNKS_QUEUED_MAX = 4  # chunks of a snapshot waiting for a peer link at once
assert SNAPSHOT_CHUNK_MESSAGE_SIZE_MAX <= PEER_FRAME_SIZE_MAX
READS_PENDING_MAX = 100_000  # read-index requests a leader holds awaiting confirmation
assert FRAME_SIZE_MAX <= APPEND_SIZE_MAX

# getChildren answers in Java hash-set order, costly to compute for many children: the
# tree keeps the order of the parents read since their children last changed.
CHILDREN_ORDER_CACHE_ENTRIES_MAX = 4_096  # parents
# ... and of those, the encoded child list of getChildren's reply (encoding a long list
# costs more than the rest of the read), up to this many bytes in all.
CHILDREN_REPLY_CACHE_BYTES_MAX = 16 * 1_048_576
# Equal ACL lists share one tuple in the tree (ZooKeeper keeps an ACL cache too).
ACL_LISTS_SHARED_MAX = 65_536  # distinct lists kept for sharing; more are stored as given

# Output a client has not read yet (replies and watch events), per connection.
DRAIN_OUTPUT_BYTES_MAX = 1_048_576  # answers built for one connection before waiting for it
CLIENT_OUTPUT_HIGH_WATER_BYTES = 4 * 1_048_576  # stop answering it (and reading it) above this
CLIENT_OUTPUT_BYTES_MAX = 64 * 1_048_576  # drop the connection above this
# Room for many replies of the default maximum size; a jute.maxbuffer configured near
# this bound makes a single huge reply drop its connection.
assert 16 * FRAME_SIZE_MAX <= CLIENT_OUTPUT_BYTES_MAX
assert CLIENT_OUTPUT_HIGH_WATER_BYTES < CLIENT_OUTPUT_BYTES_MAX

# AdminServer (HTTP, server/admin.py)
ADMIN_REQUEST_HEAD_SIZE_MAX = 8_192  # bytes of request line and headers; Jetty's default
ADMIN_HEADERS_MAX = 100  # header fields in one request
ADMIN_QUERY_FIELDS_MAX = 64  # query parameters in one request
ADMIN_CONNECTIONS_MAX = 64  # open admin connections; more are closed at accept
ADMIN_LINGER_MS = 1_000  # after an answer, how long unread input is still taken
ADMIN_LINGER_SIZE_MAX = 1_048_576  # bytes of unread input taken after an answer
