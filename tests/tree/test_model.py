"""Model-based property test: DataTree against a small reference model.

Random sequences of create / delete / setData / multi / session open+close / reap /
snapshot round-trips are
applied to both; after every step the error codes, the set of paths, data, versions
and child-create counters must agree, every index must match a recomputation
(`check_invariants`), visible cversion must equal 2*persisted - numChildren, and no
counter may go backwards. Failures print the shrunk step list (hypothesis) to replay.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import Id, MultiRequest, MultiResponse, Record
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.tree import DataTree
from corral.tree.txn import ClientTxn, CloseSessionTxn, CreateSessionTxn, ReapTxn
from tests.tree.harness import PASSWORD, create_op, delete_op, set_data_op
from tests.tree.test_snapshot import state_of

NAMES = st.sampled_from(["a", "b", "c"])
SESSIONS = st.sampled_from([11, 12])
IDS = (Id(scheme="ip", id="127.0.0.1"),)


@dataclass
class ModelNode:
    data: bytes
    version: int = 0
    created_children: int = 0  # persisted cversion
    owner: int = 0
    container: bool = False
    children: set[str] = field(default_factory=set)


def _parent(path: str) -> str:
    index = path.rfind("/")
    return path[:index] if index > 0 else "/"


class Model:
    def __init__(self) -> None:
        self.nodes: dict[str, ModelNode] = {
            "/": ModelNode(data=b"", children={"zookeeper"}),
            "/zookeeper": ModelNode(data=b"", children={"quota", "config"}),
            "/zookeeper/quota": ModelNode(data=b""),
            "/zookeeper/config": ModelNode(data=b""),
        }
        self.sessions: set[int] = set()

    def create(
        self, path: str, data: bytes, flags: int, container: bool, session: int
    ) -> tuple[ErrorCode, str]:
        parent_path = _parent(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            return ErrorCode.NO_NODE, path
        if flags in (2, 3):
            path += f"{parent.created_children:010d}"
        if path in self.nodes:
            return ErrorCode.NODE_EXISTS, path
        if parent.owner:
            return ErrorCode.NO_CHILDREN_FOR_EPHEMERALS, path
        owner = session if flags in (1, 3) and not container else 0
        self.nodes[path] = ModelNode(data=data, owner=owner, container=container)
        parent.children.add(path[path.rfind("/") + 1 :])
        parent.created_children += 1
        return ErrorCode.OK, path

    def delete(self, path: str, version: int) -> ErrorCode:
        if path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
            return ErrorCode.BAD_ARGUMENTS
        if _parent(path) not in self.nodes or path not in self.nodes:
            return ErrorCode.NO_NODE
        node = self.nodes[path]
        if version != -1 and version != node.version:
            return ErrorCode.BAD_VERSION
        if node.children:
            return ErrorCode.NOT_EMPTY
        self._remove(path)
        return ErrorCode.OK

    def _remove(self, path: str) -> None:
        del self.nodes[path]
        self.nodes[_parent(path)].children.remove(path[path.rfind("/") + 1 :])

    def set_data(self, path: str, data: bytes, version: int) -> ErrorCode:
        node = self.nodes.get(path)
        if node is None:
            return ErrorCode.NO_NODE
        if version != -1 and version != node.version:
            return ErrorCode.BAD_VERSION
        node.data = data
        node.version += 1
        return ErrorCode.OK

    def close(self, session: int) -> ErrorCode:
        if session not in self.sessions:
            return ErrorCode.SESSION_EXPIRED
        for path in [p for p, n in self.nodes.items() if n.owner == session]:
            self._remove(path)
        self.sessions.remove(session)
        return ErrorCode.OK


OPS = st.one_of(
    st.tuples(
        st.just("create"),
        st.lists(NAMES, min_size=1, max_size=3),
        st.sampled_from([0, 1, 2, 3]),
        st.booleans(),
    ),
    st.tuples(
        st.just("delete"), st.lists(NAMES, min_size=1, max_size=3), st.sampled_from([-1, 0, 1])
    ),
    st.tuples(st.just("set"), st.lists(NAMES, min_size=1, max_size=3), st.sampled_from([-1, 0, 1])),
)


class TreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = DataTree()
        self.model = Model()
        self.zxid = 0
        self.time_ms = 0
        self.high_water: dict[str, tuple[int, int, int]] = {}

    def _apply(self, txn):  # type: ignore[no-untyped-def]
        self.zxid += 1
        return self.tree.apply(txn, self.zxid)

    def _client(self, session: int, opcode: int, request: Record | None):  # type: ignore[no-untyped-def]
        self.time_ms += 7
        return self._apply(
            ClientTxn(
                session_id=session,
                opcode=opcode,
                request=request,
                identities=IDS,
                time_ms=self.time_ms,
            )
        )

    def _op_request(self, op: tuple) -> tuple[int, Record]:  # type: ignore[type-arg]
        kind, names, arg = op[0], op[1], op[2]
        path = "/" + "/".join(names)
        if kind == "create":
            opcode = OpCode.CREATE_CONTAINER if op[3] and arg in (0, 2) else OpCode.CREATE
            return opcode, create_op(path, path.encode(), flags=arg, opcode=opcode)
        if kind == "delete":
            return delete_op(path, arg)
        return set_data_op(path, b"v" + path.encode(), arg)

    def _model_op(self, model: Model, opcode: int, request: Record, session: int) -> ErrorCode:
        if opcode in (OpCode.CREATE, OpCode.CREATE_CONTAINER):
            err, _ = model.create(
                request.path,
                request.data,
                request.flags,  # type: ignore[attr-defined]
                opcode == OpCode.CREATE_CONTAINER,
                session,
            )
            return err
        if opcode == OpCode.DELETE:
            return model.delete(request.path, request.version)  # type: ignore[attr-defined]
        return model.set_data(request.path, request.data, request.version)  # type: ignore[attr-defined]

    @rule(session=SESSIONS)
    def open_session(self, session: int) -> None:
        self.time_ms += 7
        self._apply(
            CreateSessionTxn(
                session_id=session, password=PASSWORD, timeout_ms=4000, time_ms=self.time_ms
            )
        )
        self.model.sessions.add(session)

    @rule(session=SESSIONS, explicit=st.booleans())
    def close_session(self, session: int, explicit: bool) -> None:
        if explicit:
            result = self._client(session, OpCode.CLOSE_SESSION, None)
        else:
            self.time_ms += 7
            result = self._apply(CloseSessionTxn(session_id=session, time_ms=self.time_ms))
        assert result.err == self.model.close(session)

    @rule(session=SESSIONS, op=OPS)
    def single(self, session: int, op: tuple) -> None:  # type: ignore[type-arg]
        opcode, request = self._op_request(op)
        result = self._client(session, opcode, request)
        if session not in self.model.sessions:
            assert result.err == ErrorCode.SESSION_EXPIRED
            return
        expected = self._model_op(self.model, opcode, request, session)
        assert result.err == expected, (op, result)

    @rule(session=SESSIONS, ops=st.lists(OPS, max_size=4))
    def multi(self, session: int, ops: list[tuple]) -> None:  # type: ignore[type-arg]
        requests = [self._op_request(op) for op in ops]
        result = self._client(session, OpCode.MULTI, MultiRequest(ops=tuple(requests)))
        if session not in self.model.sessions:
            assert result.err == ErrorCode.SESSION_EXPIRED
            return
        assert result.err == ErrorCode.OK
        assert isinstance(result.body, MultiResponse)
        trial = copy.deepcopy(self.model)
        errors = [self._model_op(trial, opcode, request, session) for opcode, request in requests]
        failed = next((i for i, e in enumerate(errors) if e != ErrorCode.OK), None)
        if failed is None:
            self.model = trial
            assert all(r.err == 0 and r.type != -1 for r in result.body.results)
        else:
            codes = [r.err for r in result.body.results]
            assert codes[:failed] == [0] * failed
            assert codes[failed] == errors[failed]
            assert codes[failed + 1 :] == [ErrorCode.RUNTIME_INCONSISTENCY] * (
                len(ops) - failed - 1
            )
            assert result.events == ()

    @rule()
    def reap(self) -> None:
        self.time_ms += 7
        for path in self.tree.reap_candidates(self.time_ms):
            node = self.model.nodes[path]
            assert node.container and not node.children and node.created_children > 0
            assert self._apply(ReapTxn(path=path, time_ms=self.time_ms)).err == ErrorCode.OK
            self.model._remove(path)

    @rule()
    def snapshot_round_trip(self) -> None:
        restored = decode_snapshot(encode_snapshot(self.tree))
        assert state_of(restored) == state_of(self.tree)
        self.tree = restored  # later steps run on the restored tree

    @invariant()
    def matches_model(self) -> None:
        self.tree.check_invariants()
        for path, node in self.model.nodes.items():
            znode = self.tree.get(path)
            assert znode is not None, path
            assert znode.data == node.data, path
            assert znode.version == node.version, path
            assert znode.cversion == node.created_children, path
            assert znode.children == node.children, path
            stat = znode.stat()
            assert stat.num_children == len(znode.children)
            assert stat.cversion == 2 * znode.cversion - stat.num_children
            assert stat.ephemeral_owner == node.owner
            # Reading fills the tree's getChildren order cache; check_invariants at the
            # next step checks that no later change left a stale order in it.
            assert set(self.tree.children_in_order(path, znode)) == node.children
        assert self.tree.node_count == len(self.model.nodes) + 1
        assert set(self.tree.sessions) == self.model.sessions

    @invariant()
    def counters_never_decrease(self) -> None:
        for path in self.model.nodes:
            znode = self.tree.get(path)
            assert znode is not None
            key = (znode.czxid, znode.mzxid, znode.pzxid)
            previous = self.high_water.get(path)
            if previous is not None and previous[0] == znode.czxid:
                # Same incarnation of the path: its zxids only grow.
                assert all(now >= before for now, before in zip(key, previous, strict=True)), path
            self.high_water[path] = key
        assert self.tree.last_zxid == self.zxid


TreeMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_tree_matches_model = TreeMachine.TestCase
