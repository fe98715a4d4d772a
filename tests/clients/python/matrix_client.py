#!/usr/bin/env python3
"""One cell of ARES's client matrix, driven by the official Python MCP SDK (`mcp`).

    matrix_client.py --transport stdio --revision 2025-06-18 --bin target/debug/ares \
        --database-url sqlite:///tmp/x/ares.db
    ARES_API_KEY=... matrix_client.py --transport http --revision 2026-07-28 \
        --url http://127.0.0.1:8080/mcp

Connects on exactly the protocol revision asked for and checks that it was negotiated, then
runs the core lifecycle (register an agent, create a task, assign it, submit evidence,
verify with a progress token, get_reliability), validates every tool result's
`structuredContent` against the tool's `outputSchema`, and subscribes to the agent's
resource in the revision's own way (`resources/subscribe` after the handshake,
`subscriptions/listen` on 2026-07-28), causes a change and waits for
`notifications/resources/updated`.

The last line on stdout is one JSON object: {"client", "sdk", "transport", "revision",
"result": "pass" | "unsupported" | "fail", "negotiated", "detail"}. Exit code 0 for pass,
2 for a revision this SDK cannot speak, 1 for a failure. tests/client_matrix.rs runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import sys
import traceback
import warnings
from typing import Any, AsyncIterator

import anyio
import jsonschema
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

try:  # where mcp 2.x keeps the revisions it speaks
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
except ImportError:  # mcp 1.x: the handshake revisions only
    from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS as HANDSHAKE_PROTOCOL_VERSIONS

    MODERN_PROTOCOL_VERSIONS = ()

# `resources/subscribe` is the handshake revisions' mechanism; the SDK flags it as superseded
# by 2026-07-28's `subscriptions/listen`, which is beside the point here.
warnings.filterwarnings("ignore", message=r"resources/(un)?subscribe is removed")

SDK = f"mcp {importlib.metadata.version('mcp')}"
UPDATE_WAIT_SECONDS = 10.0


class CellFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CellFailed(message)


@contextlib.asynccontextmanager
async def streams(args: argparse.Namespace) -> AsyncIterator[Any]:
    if args.transport == "stdio":
        params = StdioServerParameters(
            command=args.bin,
            args=["serve"],
            env={"DATABASE_URL": args.database_url, "ARES_LOG": "warn"},
        )
        async with stdio_client(params) as pair:
            yield pair
        return
    key = args.key
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as client:
        async with streamable_http_client(args.url, http_client=client) as pair:
            yield pair


async def connect(session: ClientSession, revision: str) -> str:
    """Negotiates `revision` and returns the version the server agreed to."""
    if revision in MODERN_PROTOCOL_VERSIONS:
        # Per-request protocol: `server/discover`, then every request carries the revision.
        discovered = await session.discover()
        check(
            revision in discovered.supported_versions,
            f"server/discover listed {discovered.supported_versions}, not {revision}",
        )
        return session.protocol_version or ""
    if revision == HANDSHAKE_PROTOCOL_VERSIONS[-1]:
        # The SDK's own initialize() offers its newest handshake revision.
        result = await session.initialize()
    else:
        # initialize() always offers the newest handshake revision; to offer an older one,
        # send the SDK's InitializeRequest with it and adopt the answer, which is exactly
        # what initialize() does with its default.
        result = await session.send_request(
            types.InitializeRequest(
                params=types.InitializeRequestParams(
                    protocol_version=revision,
                    capabilities=types.ClientCapabilities(),
                    client_info=types.Implementation(name="ares-matrix-python", version="1"),
                )
            ),
            types.InitializeResult,
        )
        session.adopt(result)
        await session.send_notification(types.InitializedNotification())
    check(
        result.protocol_version == revision,
        f"offered {revision}, the server answered initialize with {result.protocol_version}",
    )
    return session.protocol_version or ""


class Lifecycle:
    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.schemas: dict[str, dict[str, Any]] = {}
        self.validated = 0

    async def list_tools(self) -> None:
        tools = await self.session.list_tools()
        for tool in tools.tools:
            if tool.output_schema is not None:
                self.schemas[tool.name] = tool.output_schema
        missing = {"register_agent", "create_task", "assign_task", "submit_evidence",
                   "verify_task", "get_reliability", "enforce"} - set(self.schemas)
        check(not missing, f"tools without an outputSchema: {sorted(missing)}")

    async def call(self, name: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        result = await self.session.call_tool(name, arguments, **kwargs)
        text = " ".join(getattr(c, "text", "") for c in result.content)
        check(not result.is_error, f"{name} refused: {text}")
        structured = result.structured_content
        check(isinstance(structured, dict), f"{name} returned no structuredContent")
        try:
            jsonschema.validate(structured, self.schemas[name])
        except jsonschema.ValidationError as error:
            raise CellFailed(f"{name}: structuredContent does not match outputSchema: {error.message}")
        self.validated += 1
        return structured


async def run_cell(args: argparse.Namespace) -> tuple[str, str]:
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)

    async with streams(args) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            negotiated = await connect(session, args.revision)
            check(negotiated == args.revision, f"negotiated {negotiated}, asked for {args.revision}")
            life = Lifecycle(session)
            await life.list_tools()

            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            capability = f"py-{args.transport}-{args.revision}-{stamp}"
            agent = await life.call(
                "register_agent",
                {"name": f"python-{capability}", "capabilities": [capability]},
            )
            agent_uri = f"ares://agents/{agent['id']}"

            async with contextlib.AsyncExitStack() as stack:
                subscription = None
                if args.revision in MODERN_PROTOCOL_VERSIONS:
                    from mcp.client.subscriptions import listen

                    subscription = await stack.enter_async_context(
                        listen(session, resource_subscriptions=[agent_uri])
                    )
                    honored = subscription.honored.resource_subscriptions or []
                    check(agent_uri in honored, f"listen acknowledged {honored}, not {agent_uri}")
                else:
                    await session.subscribe_resource(agent_uri)

                task = await life.call(
                    "create_task",
                    {
                        "description": "Fix the off-by-one in pagination",
                        "required_capabilities": [capability],
                        "criteria": [
                            {"type": "tests_pass"},
                            {"type": "evidence_present", "kind": "diff"},
                        ],
                    },
                )
                assigned = await life.call("assign_task", {"task_id": task["id"]})
                check(assigned["agent_id"] == agent["id"], f"routed to {assigned['agent_id']}")
                await life.call(
                    "submit_evidence",
                    {
                        "task_id": task["id"],
                        "agent_id": agent["id"],
                        "evidence": [
                            {"kind": "diff", "content": "-end = start + size + 1\n+end = start + size\n"},
                            {"kind": "test_results", "passed": 12, "failed": 0},
                        ],
                    },
                )

                progress: list[tuple[float, float | None, str | None]] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    progress.append((value, total, message))

                # With a progress callback the SDK sends a progressToken in `_meta`.
                verdict = await life.call(
                    "verify_task", {"task_id": task["id"]}, progress_callback=on_progress
                )
                check(verdict["outcome"] == "verified", f"verdict {verdict['outcome']}")
                check(len(progress) >= 1, "no notifications/progress for verify_task")

                reliability = await life.call("get_reliability", {"agent_id": agent["id"]})
                check(reliability["verifications"] >= 1, f"reliability {reliability}")

                # A change to the agent: a manual warning. Its resource must be told.
                seen_before = len(updates)
                await life.call(
                    "enforce",
                    {"agent_id": agent["id"], "action": "warning", "reason": "client matrix"},
                )
                if subscription is not None:
                    with anyio.fail_after(UPDATE_WAIT_SECONDS):
                        async for event in subscription:
                            if getattr(event, "uri", None) == agent_uri:
                                break
                else:
                    with anyio.fail_after(UPDATE_WAIT_SECONDS):
                        while agent_uri not in updates[seen_before:]:
                            await anyio.sleep(0.02)
                    await session.unsubscribe_resource(agent_uri)

            detail = (
                f"{life.validated} results schema-valid; {len(progress)} progress; "
                f"update of {agent_uri} via "
                + ("subscriptions/listen" if subscription is not None else "resources/subscribe")
            )
            return negotiated, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http"], required=True)
    parser.add_argument("--revision", required=True)
    parser.add_argument("--bin", help="the ares binary (stdio)")
    parser.add_argument("--database-url", help="DATABASE_URL for the spawned ares (stdio)")
    parser.add_argument("--url", help="the /mcp endpoint (http)")
    args = parser.parse_args()
    import os

    args.key = os.environ.get("ARES_API_KEY", "")
    report: dict[str, Any] = {
        "client": "python",
        "sdk": SDK,
        "transport": args.transport,
        "revision": args.revision,
        "negotiated": None,
    }
    if args.revision not in (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS):
        report.update(
            result="unsupported",
            detail=f"{SDK} speaks {list(HANDSHAKE_PROTOCOL_VERSIONS) + list(MODERN_PROTOCOL_VERSIONS)}",
        )
        print(json.dumps(report))
        return 2
    try:
        negotiated, detail = asyncio.run(asyncio.wait_for(run_cell(args), timeout=60))
        report.update(result="pass", negotiated=negotiated, detail=detail)
        code = 0
    except BaseException as error:  # noqa: BLE001 - every failure is reported, with its trace
        traceback.print_exc(file=sys.stderr)
        report.update(result="fail", detail=f"{type(error).__name__}: {error}")
        code = 1
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
