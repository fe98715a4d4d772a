#!/usr/bin/env python3
"""An agent's round trip through ARES with the official Python MCP SDK.

Registers an agent, creates a task with acceptance criteria, lets ARES route it, submits
evidence, verifies it and prints the verdict and the agent's reliability score.

    pip install mcp
    python examples/python/lifecycle.py                          # spawns ares over stdio
    ARES_API_KEY=... python examples/python/lifecycle.py --http http://127.0.0.1:8080/mcp

Over stdio the script starts the ARES binary itself (--bin, or $ARES_BIN, or
target/release/ares, or target/debug/ares) with a throwaway SQLite database; stdio needs
no key (the local user is the admin).

Over HTTP every request carries `Authorization: Bearer $ARES_API_KEY`. The key needs the
admin role, because the script registers an agent and creates a task: the server's
ARES_ADMIN_TOKEN, or a key from `ares key create --role admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO = Path(__file__).resolve().parents[2]


class Refused(Exception):
    """ARES answered a tool call with isError: a refusal or an unknown id."""


def find_binary(explicit: str | None) -> str:
    candidates = [explicit, os.environ.get("ARES_BIN")]
    candidates += [str(REPO / "target/release/ares"), str(REPO / "target/debug/ares")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit("no ares binary found: run `cargo build` first, or pass --bin / set ARES_BIN")


@contextlib.asynccontextmanager
async def http_streams(url: str, key: str) -> AsyncIterator[Any]:
    """The streamable HTTP transport, sending `Authorization: Bearer <key>` on every request."""
    headers = {"Authorization": f"Bearer {key}"}
    try:  # newer SDKs: headers ride on the HTTP client the transport is given
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client
    except ImportError:  # older mcp 1.x: the transport takes the headers itself
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(url, headers=headers) as streams:
            yield streams
        return
    async with create_mcp_http_client(headers=headers) as client:
        async with streamable_http_client(url, http_client=client) as streams:
            yield streams


async def call(session: ClientSession, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Calls a tool and returns its structured content."""
    result = await session.call_tool(name, arguments)
    # mcp 2.x uses snake_case attributes, mcp 1.x the wire names.
    is_error = getattr(result, "is_error", None) or getattr(result, "isError", False)
    if is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        raise Refused(f"{name} refused: {text}")
    structured = getattr(result, "structured_content", None)
    if structured is None:
        structured = getattr(result, "structuredContent", None)
    if structured is None:
        raise RuntimeError(f"{name} returned no structured content")
    return structured


async def lifecycle(session: ClientSession) -> None:
    try:
        init = await session.initialize()
    except Exception as error:  # over HTTP, a missing or wrong key (401) surfaces here
        raise Refused(
            f"initialize failed: {error} (over HTTP: is ARES_API_KEY a valid key for this server?)"
        ) from error
    server = getattr(init, "server_info", None) or getattr(init, "serverInfo", None)
    print(f"connected to {server.name} {server.version}")

    # A unique name and capability, so routing picks this agent even on a shared server.
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    capability = f"example-{stamp}"

    agent = await call(
        session,
        "register_agent",
        {"name": f"python-agent-{stamp}", "capabilities": ["python", capability]},
    )
    print(f"registered agent {agent['name']} ({agent['id']})")

    task = await call(
        session,
        "create_task",
        {
            "description": "Fix the off-by-one in pagination and cover it with tests",
            "required_capabilities": [capability],
            "criteria": [
                {"type": "tests_pass"},
                {"type": "evidence_present", "kind": "diff"},
            ],
        },
    )
    print(f"created task {task['id']} ({task['status']})")

    # No agent_id: ARES routes the task to the best capable agent.
    assigned = await call(session, "assign_task", {"task_id": task["id"]})
    print(f"task routed to agent {assigned['agent_id']} ({assigned['status']})")

    receipt = await call(
        session,
        "submit_evidence",
        {
            "task_id": task["id"],
            "agent_id": agent["id"],
            "evidence": [
                {
                    "kind": "diff",
                    "content": "--- a/page.py\n+++ b/page.py\n@@ -1 +1 @@\n"
                    "-end = start + size + 1\n+end = start + size\n",
                },
                {"kind": "test_results", "passed": 12, "failed": 0},
            ],
        },
    )
    evidence = receipt["evidence"]
    print(
        f"evidence recorded: digest {evidence['content_digest'][:12]}…, "
        f"chain index {evidence['chain_index']}, task {receipt['task_status']}"
    )

    verdict = await call(session, "verify_task", {"task_id": task["id"]})
    print(
        f"verdict: success={verdict['success']} outcome={verdict['outcome']} "
        f"quality_score={verdict['quality_score']:.3f} task={verdict['task_status']}"
    )
    for result in verdict["results"]:
        print(
            f"  {result['criterion']['type']:<17} {result['status']:<13} "
            f"{result['detail']} (via {result['checked_via']})"
        )

    reliability = await call(session, "get_reliability", {"agent_id": agent["id"]})
    print(
        f"reliability_score={reliability['reliability_score']:.3f} "
        f"(success_rate {reliability['success_rate']}, "
        f"verifications {reliability['verifications']})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", metavar="URL", help="a running server's /mcp endpoint")
    parser.add_argument("--bin", help="the ares binary to spawn over stdio")
    args = parser.parse_args()

    if args.http:
        key = os.environ.get("ARES_API_KEY", "").strip()
        if not key:
            sys.exit(
                "set ARES_API_KEY to an admin API key (the server's ARES_ADMIN_TOKEN, "
                "or one from `ares key create --role admin`)"
            )
        print(f"connecting to {args.http}")
        async with http_streams(args.http, key) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await lifecycle(session)
        return

    binary = find_binary(args.bin)
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "ares.db"
        print(f"spawning {binary} serve (database {database})")
        params = StdioServerParameters(
            command=binary,
            args=["serve"],
            env={"DATABASE_URL": f"sqlite://{database}", "ARES_LOG": "warn"},
        )
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await lifecycle(session)


def explain(error: BaseException) -> str | None:
    """Why ARES said no, looking through the SDK's exception groups: a refusal, or an HTTP
    401 (missing or wrong key) or 429 (over the key's rate limit). None for anything else."""
    if isinstance(error, Refused):
        return str(error)
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status in (401, 429):
        return f"ARES answered HTTP {status}: {error} (check ARES_API_KEY)"
    for inner in getattr(error, "exceptions", ()):
        found = explain(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(main())
        except Exception as error:
            why = explain(error)
            if why is None:
                raise
            sys.exit(why)
