"""Requests beyond §27's list: reconfig, client-sent deleteContainer, pipelining, multiRead
and ACLs, sequential naming across deletes in every mode."""

from __future__ import annotations

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.records import PathRecord, ReconfigRequest
from tests.differential.ops import (
    acl,
    children,
    create,
    create2,
    delete,
    exists,
    get_data,
    m_children,
    m_get,
    multi_read,
    set_data,
    sync,
)
from tests.support.scenario import Drain, ExpectClosed, Known, Op, Open, Pipeline

pytestmark = pytest.mark.zookeeper


def test_reconfig_disabled_consumes_a_zxid(diff) -> None:
    ns = diff.ns
    request = ReconfigRequest(
        joining_servers=None, leaving_servers=None, new_members=None, cur_config_id=-1
    )
    diff.run(
        [
            Open(session="a"),
            create2("a", f"{ns}/before"),
            Op(session="a", opcode=OpCode.RECONFIG, record=request),
            create2("a", f"{ns}/after"),
        ]
    )


def test_delete_container_from_a_client(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/plain"),
            Op(
                session="a",
                opcode=OpCode.DELETE_CONTAINER,
                record=PathRecord(path=f"{ns}/plain"),
                known=Known.DELETE_CONTAINER_FROM_CLIENT,
            ),
            ExpectClosed(session="a", wait_ms=1_000, known=Known.DELETE_CONTAINER_FROM_CLIENT),
            Open(session="b"),
            exists("b", f"{ns}/plain"),
        ]
    )


def test_pipelined_requests_answer_in_order(diff) -> None:
    ns = diff.ns
    p = f"{ns}/p"
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            Pipeline(
                session="a",
                requests=(
                    create("a", p, b"0").to_request(),
                    get_data("a", p, watch=True).to_request(),
                    sync("a", p).to_request(),
                    set_data("a", p, b"1").to_request(),
                    exists("a", p, watch=True).to_request(),
                    delete("a", p, 5).to_request(),
                    children("a", ns, watch=True).to_request(),
                    delete("a", p).to_request(),
                    exists("a", p).to_request(),
                ),
            ),
            Drain(session="a"),
        ]
    )


def test_multi_read_respects_acls(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/open", b"o"),
            create("a", f"{ns}/secret", b"s", acls=[acl(31 & ~1)]),
            multi_read(
                "a",
                m_get(f"{ns}/open"),
                m_get(f"{ns}/secret"),
                m_children(f"{ns}/secret"),
                m_children(ns),
            ),
        ]
    )


@pytest.mark.parametrize("mode", [2, 3, 6])
def test_sequential_naming_across_deletes(diff, mode: int) -> None:
    # PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL, PERSISTENT_SEQUENTIAL_WITH_TTL: one
    # counter per parent, shared by every prefix and every mode, never decremented.
    from tests.differential.ops import create_ttl

    ns = diff.ns

    def seq(prefix: str) -> Op:
        if mode == 6:
            return create_ttl("a", f"{ns}/{prefix}", 3_600_000, flags=6)
        return create("a", f"{ns}/{prefix}", flags=mode)

    diff.run(
        [
            Open(session="a"),
            seq("x-"),
            create("a", f"{ns}/plain"),
            seq("y-"),
            delete("a", f"{ns}/x-0000000000"),
            delete("a", f"{ns}/plain"),
            seq("x-"),
            create("a", f"{ns}/y-0000000004"),
            seq("y-"),
            children("a", ns),
            *(
                [
                    delete("a", f"{ns}/{n}")
                    for n in ("y-0000000002", "x-0000000003", "y-0000000004", "y-0000000005")
                ]
                if mode == 6
                else []
            ),
        ]
    )
