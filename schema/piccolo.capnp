# Piccolo's one schema: the native client protocol and (later) node-to-node
# traffic. Code in src/protocol/gen is generated from this file by
# `npm run codegen` (capnp compile + capnp-es); never edit it by hand.
#
# Evolution rules (Cap'n Proto's): never renumber or retype a field; add new
# fields and union members at the end with the next ordinal.
#
# Conventions:
#  - Keys and values are Data (bytes). Keys are 1..65536 bytes.
#  - Versions are per-key write stamps from the shard's monotonic counter:
#    every write of any key on a shard takes the next number, so a version
#    never repeats for a key, even across delete and re-insert (no ABA for
#    compare-and-swap). 0 means "no version / absent".
#  - Times are milliseconds. ttlMs is relative to the node's clock when the
#    request arrives; expireAtMs is absolute Unix time. 0 means "not set".
@0xa34e1baa72aa5059;

struct Request {
  id @0 :UInt64;            # chosen by the client, echoed in the Response
  union {
    ping @1 :Void;
    get @2 :Key;
    put @3 :Write;          # insert or overwrite
    insert @4 :Write;       # only if absent, else ALREADY_EXISTS
    update @5 :Write;       # only if present, else NOT_FOUND
    cas @6 :Cas;            # only if the version matches, else VERSION_MISMATCH
    delete @7 :Delete;
    exists @8 :Key;
    expire @9 :Expire;
    persist @10 :Key;       # remove the key's TTL
    ttl @11 :Key;
    mget @12 :Keys;
    mput @13 :MultiPut;
    mdel @14 :Keys;
    stats @15 :Void;
    scan @16 :Scan;
    auth @17 :Auth;         # required first when the node runs with --requirepass
    clusterInfo @18 :Void;  # the cluster as this member sees it (cluster mode only)
    transferLeader @19 :TransferLeader;  # hand a partition's leadership to a member
    replaceReplica @20 :ReplaceReplica;  # one step of moving a partition's replica to another member
    txn @22 :Txn;           # compares, then one of two branches of ops, all or nothing (docs/protocol.md, "Txn")
    watch @23 :Watch;       # a stream: every change to a key or under a prefix (docs/watch.md); answered
                            # by a WatchEvents with created set, then more WatchEvents with this id
    cancelWatch @24 :CancelWatch; # stops a watch of this connection; answered ok
    backup @25 :Void;       # a stream: the node's (or cluster's) backup file (docs/backup.md); answered
                            # by BackupChunk frames with this id, the last with `last` set (admin only)
    restoreKeys @26 :RestoreKeys; # keys with the versions and expiry a backup holds (`piccolo restore
                            # --server`; admin only): answered `versions`
    forgetMember @27 :ForgetMember; # drop a member that holds no replica from this member's address book
    whoami @28 :Void;       # this connection's user and what it may do: answered whoami
    slowlog @30 :SlowlogRequest; # the node's slow log (docs/tracing.md, "Slow requests"; admin only): answered slowlog
  }
  stale @21 :Bool;          # reads only (get, exists, ttl, mget, scan): the caller accepts an
                            # out-of-date answer, so in a cluster any member holding a replica of
                            # the key's partition answers from its own copy, without the leader
                            # (docs/cluster.md, "Stale reads"). Ignored by writes and on a single
                            # node. A request-wide field rather than one per read struct: Key is
                            # shared with persist, a write.
  trace @29 :Bool;          # answer the request's timeline too: a Response with this id and `trace`
                            # set comes right before the answer (docs/tracing.md). Refused
                            # (INVALID_ARGUMENT) on the streams (watch, backup).
}

# Moves a partition's replica from member `remove` to member `add` by Raft
# membership changes, one per request, taken by the partition's leader:
# add as a learner; once it has caught up, promote it to voter; then remove
# the old one. The request is idempotent: send it again until the
# partition's replicas show the change done (`piccolo cluster replace` does).
struct ReplaceReplica {
  partition @0 :UInt32;
  remove @1 :UInt32;        # member id leaving the group
  add @2 :UInt32;           # member id joining it
}

struct TransferLeader {
  partition @0 :UInt32;
  member @1 :UInt32;        # the member id to lead it (it must hold a replica)
}

# Forgets a member for good (`piccolo cluster forget`; docs/cluster.md,
# "Forgetting a member"): the answering member drops it from its address
# book, records that durably, refuses its connections from then on and tells
# its peers in every hello. Refused (INVALID_ARGUMENT) while a partition this
# member holds still lists it as a voter or learner, or when it is the
# answering member itself. Idempotent: a member already forgotten is OK.
struct ForgetMember {
  member @0 :UInt32;        # the member id to forget
}

struct Auth {
  password @0 :Text;
  user @1 :Text;            # only "default" (or empty) exists
}

struct Key {
  key @0 :Data;
}

struct Keys {
  keys @0 :List(Key);       # a list of structs, not List(Data): each key is
                            # then set through the generated code alone
}

struct Write {
  key @0 :Data;
  value @1 :Data;
  ttlMs @2 :UInt64;         # 0: no TTL (an existing TTL is cleared, as Redis SET does)
  expireAtMs @3 :UInt64;    # absolute alternative to ttlMs
  keepTtl @4 :Bool;         # keep the key's current TTL (Redis KEEPTTL)
}

struct Cas {
  key @0 :Data;
  value @1 :Data;
  expectedVersion @2 :UInt64;  # must equal the key's current version
  ttlMs @3 :UInt64;
  expireAtMs @4 :UInt64;
}

struct Delete {
  key @0 :Data;
  ifVersion @1 :UInt64;     # 0: unconditional; else delete only at this version
}

struct Expire {
  key @0 :Data;
  ttlMs @1 :UInt64;         # relative; 0 together with expireAtMs 0 expires now
  expireAtMs @2 :UInt64;    # absolute alternative
}

struct MultiPut {
  entries @0 :List(KeyValue);
  ttlMs @1 :UInt64;
}

# Keys as a backup holds them: each is set whole, with its own version (the
# shard's or partition's version counter is raised to it, so versions never
# repeat) and absolute expiry (0: none). Per key, as mput is; not atomic as a
# whole.
struct RestoreKeys {
  entries @0 :List(RestoreEntry);
}

struct RestoreEntry {
  key @0 :Data;
  value @1 :Data;
  version @2 :UInt64;       # at least 1
  expireAtMs @3 :UInt64;
}

struct KeyValue {
  key @0 :Data;
  value @1 :Data;
}

struct Scan {
  cursor @0 :UInt64;        # 0 to start; the cursor of the last answer to go on
  count @1 :UInt32;         # a hint: about this many keys per answer
  prefix @2 :Data;          # only keys that start with these bytes
}

# A transaction, etcd's Txn: if every compare holds, the success ops run,
# else the failure ops; either way as one step, atomic and isolated. On a
# single node the keys may be anywhere; in a cluster they must all be in one
# partition (give them one hash tag: {user:1}:a, {user:1}:b), else
# CROSS_PARTITION. At most 4,096 compares and ops together and 16 MiB of keys
# and values (TXN_TOO_LARGE).
struct Txn {
  compares @0 :List(TxnCompare);   # all must hold (an empty list holds)
  success @1 :List(TxnOp);
  failure @2 :List(TxnOp);
  verdictOnly @3 :Bool;     # answer only which branch ran: TxnResult.results is empty (MSET's promise, less to answer)
}

struct TxnCompare {
  key @0 :Data;
  target @1 :CompareTarget;
  relation @2 :CompareRelation;
  version @3 :UInt64;       # target version: compared with the key's version (0: absent)
  value @4 :Data;           # target value: compared with the key's value, bytewise (an absent key never matches)
}

enum CompareTarget {
  version @0;
  value @1;
}

enum CompareRelation {
  equal @0;
  notEqual @1;
  less @2;
  greater @3;
}

struct TxnOp {
  union {
    put @0 :Write;          # ttlMs, expireAtMs and keepTtl as a put's
    delete @1 :Key;
    get @2 :Key;
  }
}

# The chosen branch's results, one per op in its order.
struct TxnResult {
  succeeded @0 :Bool;       # every compare held: the success branch ran
  results @1 :List(TxnOpResult);
}

struct TxnOpResult {
  union {
    put @0 :Written;
    delete @1 :Bool;        # whether the key existed
    get @2 :Value;
  }
}

struct Response {
  id @0 :UInt64;
  union {
    error @1 :Error;
    pong @2 :Void;
    value @3 :Value;        # get
    written @4 :Written;    # put, insert, update, cas
    deleted @5 :Bool;       # delete: whether a key was removed
    exists @6 :Bool;
    expire @7 :Bool;        # expire, persist: whether the key existed (and changed)
    ttl @8 :Ttl;
    values @9 :List(Value); # mget, in request order
    versions @10 :List(UInt64); # mput, in request order
    count @11 :UInt64;      # mdel: keys removed
    stats @12 :Stats;
    scan @13 :ScanResult;
    ok @14 :Void;           # auth
    cluster @15 :ClusterInfo;
    txn @16 :TxnResult;
    watch @17 :WatchEvents;  # watch: each frame of the stream, with the watch request's id
    backup @18 :BackupChunk; # backup: each frame of the stream, with the backup request's id
    whoami @19 :WhoAmI;
    trace @20 :Trace;       # a traced request's timeline: sent just before its answer, with its id
    slowlog @21 :SlowLog;
  }
}

struct SlowlogRequest {
  count @0 :UInt32;         # the newest this many entries (0: none, only the figures)
  reset @1 :Bool;           # then empty the log (as SLOWLOG RESET)
}

# The slow log as the answering node keeps it: its newest entries, newest first.
struct SlowLog {
  entries @0 :List(SlowEntry);
  length @1 :UInt32;        # entries it holds
  slowerThanUs @2 :Int64;   # the threshold (negative: off)
  maxLen @3 :UInt32;
}

struct SlowEntry {
  id @0 :UInt64;
  timeMs @1 :UInt64;        # when the request was received, Unix ms
  durationUs @2 :UInt64;    # receipt to answer made
  args @3 :List(Text);      # the command and its first key (truncated)
  client @4 :Text;          # host:port
  clientName @5 :Text;
  port @6 :Text;            # native | resp
  spans @7 :List(TraceSpan); # its timeline, when it was traced
  traced @8 :Bool;
}

# A traced request's timeline (docs/tracing.md): where it went and how long
# each stage took, in microseconds from when the answering node received it.
struct Trace {
  spans @0 :List(TraceSpan);   # in the order the stages began
  dropped @1 :UInt32;          # spans left out over TRACE_MAX_SPANS (src/limits.ts)
  node @2 :Text;               # who answered: "node" or "member N"
}

struct TraceSpan {
  stage @0 :Text;           # received, routed, ring, executed, journal, notify, forwarded, proposed, ...
  where @1 :Text;           # "io", "worker N", "member N", "inline"
  startUs @2 :UInt64;       # from the request's receipt
  durationUs @3 :UInt64;
  detail @4 :Text;          # e.g. "shard 2", "partition 7 index 41 term 3", "fsync always"
}

# The answer to whoami: the connection's user and its permissions
# (docs/security.md), so a tool can offer only what the user may do (the
# web console shows its admin actions to admins only). The node still
# checks every request.
struct WhoAmI {
  user @0 :Text;
  read @1 :Bool;
  write @2 :Bool;
  admin @3 :Bool;
  allKeys @4 :Bool;         # false: only keys matching the user's patterns
}

# One frame of a backup stream: the file's next bytes, in order. An error
# frame with the same id ends the stream early (the file is then incomplete:
# discard it).
struct BackupChunk {
  data @0 :Data;
  last @1 :Bool;            # the file is complete (its own checksum, at its end, says so too)
}

# A watch: every change to `key` (or, with prefix, to every key starting
# with it), resumable. `from` is a position a WatchEvents gave ("" starts
# now); one older than the node keeps ends the watch with COMPACTED and the
# current position. At most 256 watches per connection.
struct Watch {
  key @0 :Data;
  prefix @1 :Bool;
  from @2 :Text;
}

struct CancelWatch {
  id @0 :UInt64;            # the id of the watch request
}

# One frame of a watch's stream. The first has created set (and no events);
# the last, if the node ends the watch, has endCode set (COMPACTED: read the
# keys again and watch from `position`).
struct WatchEvents {
  position @0 :Text;        # the watch's position after these events: resume from it
  created @1 :Bool;
  events @2 :List(WatchEvent);
  endCode @3 :UInt16;       # 0 while the watch goes on
  endMessage @4 :Text;
  shard @5 :UInt32;         # the shard (partition) the events come from: the position after event i
                            # is `position` with this shard's number replaced by event i's seq
}

struct WatchEvent {
  kind @0 :ChangeKind;
  key @1 :Data;             # empty for flush
  value @2 :Data;           # put: the new value, if hasValue
  hasValue @3 :Bool;        # false for a put whose value is over 64 KiB (valueBytes says its size)
  valueBytes @4 :UInt32;
  version @5 :UInt64;       # put: the key's new version
  expireAtMs @6 :UInt64;    # put, expire: the key's expiry (0: none)
  seq @7 :UInt64;           # the change's number on its shard (see WatchEvents.shard)
}

enum ChangeKind {
  put @0;
  delete @1;
  expire @2;                # the key's TTL was set or cleared
  expired @3;               # the key's TTL ran out: it is gone
  flush @4;                 # every key is gone
}

struct ClusterInfo {
  self @0 :UInt32;          # the answering member's id
  members @1 :List(ClusterMember);
  partitions @2 :List(PartitionInfo);
  stats @3 :ClusterStats;   # the answering member's counters since it started
  forgotten @4 :List(ClusterMember); # members this one has forgotten (id and name only; not in `members`)
}

struct ClusterStats {
  proposals @0 :UInt64;       # writes proposed by this member as leader and applied
  proposalP50Us @1 :UInt64;   # proposal to applied, microseconds
  proposalP99Us @2 :UInt64;
  walWrites @3 :UInt64;       # storage rounds (one write, fsynced when needed)
  walP50Us @4 :UInt64;
  walP99Us @5 :UInt64;
  forwarded @6 :UInt64;       # commands this member forwarded to a leader
  leaderChanges @7 :UInt64;   # times a hosted partition's leader changed, as seen here
  elections @8 :UInt64;       # elections this member's replicas started (became candidates)
  snapshotsInstalled @9 :UInt64;  # snapshots from a leader that replaced a replica's state here
  quiescedGroups @10 :UInt64;     # hosted groups quiet right now (idle: no heartbeats, no ticks)
}

struct ClusterMember {
  id @0 :UInt32;
  name @1 :Text;
  peerAddress @2 :Text;     # host:port of its peer (Raft) listener
  connected @3 :Bool;       # the answering member has a live connection to it (itself: true)
  clientAddress @4 :Text;   # host:port its clients connect to, as it last said ("" if never)
}

struct PartitionInfo {
  partition @0 :UInt32;
  replicas @1 :List(UInt32);
  leader @2 :UInt32;        # as the answering member knows it (0: unknown)
  term @3 :UInt64;          # the following are the answering member's own, 0 when it
  commit @4 :UInt64;        # holds no replica of the partition
  applied @5 :UInt64;
  hosted @6 :Bool;          # the answering member holds a replica
  leaderChanges @7 :UInt64; # times its leader changed, as seen by the answering member
  lastIndex @8 :UInt64;     # the answering member's last log index (0 when not hosted)
  learners @9 :List(UInt32); # replicas catching up that do not vote yet
  followers @10 :List(FollowerInfo); # filled only when the answering member leads the partition
}

struct FollowerInfo {
  member @0 :UInt32;
  match @1 :UInt64;         # highest index known to be in its log
  lag @2 :UInt64;           # the leader's last index minus match: entries it has yet to receive
  state @3 :Text;           # probe | replicate | snapshot (see src/raft/progress.ts)
  active @4 :Bool;          # heard from within about one election timeout
  learner @5 :Bool;
}

struct Error {
  code @0 :UInt16;          # a stable code from src/errors.ts
  message @1 :Text;
  version @2 :UInt64;       # VERSION_MISMATCH: the current version (0 if absent)
}

struct Value {
  found @0 :Bool;
  value @1 :Data;
  version @2 :UInt64;
  expireAtMs @3 :UInt64;    # 0: no TTL
}

struct Written {
  version @0 :UInt64;
  created @1 :Bool;         # true when the write created the key (put, insert)
}

struct Ttl {
  ttlMs @0 :Int64;          # -2: no such key; -1: no TTL (as Redis PTTL)
}

struct Stats {
  shards @0 :List(ShardStats);
  uptimeMs @1 :UInt64;
  connections @2 :UInt32;
}

struct ShardStats {
  shard @0 :UInt32;
  keys @1 :UInt64;
  memoryBytes @2 :UInt64;
  reads @3 :UInt64;
  writes @4 :UInt64;
  expired @5 :UInt64;
  # A single node's journal (docs/durability.md); all zero when it keeps nothing on disk.
  durable @6 :Bool;
  logBytes @7 :UInt64;          # the log since the last snapshot
  snapshotBytes @8 :UInt64;     # the newest snapshot
  lastSaveMs @9 :UInt64;        # when it finished (ms since the epoch; 0: none yet)
  fsyncs @10 :UInt64;
  fsyncTotalUs @11 :UInt64;     # time spent in fsync, in microseconds (average = total / fsyncs)
  fsyncMaxUs @12 :UInt64;
  refusingWrites @13 :Bool;     # the log cannot be written (a full or failing disk)
}

struct ScanResult {
  cursor @0 :UInt64;        # 0 when the scan is complete
  keys @1 :List(Key);
}

# ---- Node-to-node traffic (issue #7) ----------------------------------------
#
# Peers exchange PeerFrames over one connection per node pair, framed like the
# client protocol. Raft messages of many groups (partitions) travel together
# in one RaftBatch per flush, so a node with 64 partitions sends one frame per
# peer per tick, not 64. The fields mirror src/raft/messages.ts one to one;
# src/cluster/peer-codec.ts converts.

struct PeerFrame {
  union {
    hello @0 :PeerHello;    # first frame on a connection, both directions
    raft @1 :RaftBatch;
    forward @2 :Forward;    # a request for a partition this member does not lead
    forwardReply @3 :ForwardReply;
    transfer @4 :TransferLeader;  # to the partition's leader: hand leadership over
    replace @5 :ReplaceReplica;   # to the partition's leader: take the next membership step
    publish @6 :Publish;    # a Redis PUBLISH, for this member's own subscribers (every member gets it)
    leaving @7 :Leaving;    # this member is stopping: forward nothing more to it (and the answer to that)
  }
}

# A stopping member's last exchange with each peer (src/cluster/member.ts,
# close; decision 0298). It sends `ack = false`: "I am leaving". The peer
# forwards nothing more to it on this connection and answers `ack = true`.
# Frames between two members arrive in order, so once the leaving member
# reads the ack it has read every request that peer forwarded to it: it
# answers them all, then closes. A peer of an older build closes the
# connection on this frame kind, as on any it does not know.
struct Leaving {
  ack @0 :Bool;
}

# Redis pub/sub across a cluster: the member a client PUBLISHes to sends the
# message to every other member, each delivering it to its own subscribers,
# as Redis Cluster's bus does. Fire-and-forget, like Redis's pub/sub.
struct Publish {
  channel @0 :Data;
  message @1 :Data;
}

# A shard command (src/shard/command.ts) sent to the member believed to lead
# its partition, which proposes it (writes) or serves it after ReadIndex
# (reads) and answers with the shard's encoded Result.
struct Forward {
  id @0 :UInt64;            # chosen by the sender, echoed in the reply
  group @1 :UInt32;
  write @2 :Bool;
  command @3 :Data;
}

struct ForwardReply {
  id @0 :UInt64;
  union {
    result @1 :Data;        # the encoded Result
    notLeader @2 :UInt32;   # not the leader; the leader it knows of (0: none)
    failed @3 :Text;        # no outcome known (timed out waiting for commit)
  }
}

struct PeerHello {
  clusterId @0 :UInt64;     # hash of the member list and partition count: peers
                            # configured differently refuse each other
  member @1 :UInt32;        # the sender's member id (1-based position in the list)
  clientAddress @2 :Text;   # host:port its clients connect to (status tools find every member from one)
  name @3 :Text;            # the sender's member name, and
  peerAddress @4 :Text;     # its peer host:port: how a member joined after bootstrap (--joined)
                            # introduces itself to members that do not list it yet
  forgotten @5 :List(ForgottenMember); # every member the sender has forgotten (`piccolo cluster
                            # forget`): the receiver forgets them too, and a receiver that finds
                            # itself here stops (it is no longer a member)
}

struct ForgottenMember {
  id @0 :UInt32;
  name @1 :Text;
}

struct RaftBatch {
  messages @0 :List(RaftMessage);   # messages with a snapshot (rare, large)
  small @1 :Data;                   # messages without entries (heartbeats, acknowledgements,
                                    # votes): fixed 64-byte records, little-endian, laid out
                                    # in src/cluster/peer-codec.ts (SMALL_RECORD_BYTES)
  appends @2 :Data;                 # messages with entries (appends): the same 64-byte record,
                                    # then the entries, laid out in src/cluster/peer-codec.ts
                                    # (encodeAppends); decisions 0187 and 0191
}

struct RaftMessage {
  group @0 :UInt32;         # the partition (Raft group) the message belongs to
  type @1 :UInt8;           # MessageType in src/raft/messages.ts
  from @2 :UInt32;
  to @3 :UInt32;
  term @4 :UInt64;
  logTerm @5 :UInt64;
  index @6 :UInt64;
  entries @7 :List(RaftEntry);
  commit @8 :UInt64;
  reject @9 :Bool;
  rejectHint @10 :UInt64;
  context @11 :UInt64;
  snapshot @12 :RaftSnapshot;   # set only for type Snap
  transfer @13 :Bool;
  quiesce @14 :Bool;            # Heartbeat: the group goes quiet (src/raft/raft.ts, Quiescence)
  handoff @15 :Bool;            # TimeoutNow: a stopping leader's hand-off, not a placement (src/raft/messages.ts)
}

struct RaftEntry {
  index @0 :UInt64;
  term @1 :UInt64;
  type @2 :UInt8;           # EntryType in src/raft/types.ts
  data @3 :Data;
}

struct RaftSnapshot {
  index @0 :UInt64;
  term @1 :UInt64;
  voters @2 :List(UInt32);
  learners @3 :List(UInt32);
  data @4 :Data;
}
