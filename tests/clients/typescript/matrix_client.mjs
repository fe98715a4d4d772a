#!/usr/bin/env node
// One cell of ARES's client matrix, driven by the official TypeScript MCP SDK: v1
// (`@modelcontextprotocol/sdk`) or v2 (`@modelcontextprotocol/client`, which replaces it).
//
//   node matrix_client.mjs --sdk v2 --transport stdio --revision 2025-06-18 \
//       --bin target/debug/ares --database-url sqlite:///tmp/x/ares.db
//   ARES_API_KEY=... node matrix_client.mjs --sdk v1 --transport http --revision 2025-11-25 \
//       --url http://127.0.0.1:8080/mcp
//
// Connects on exactly the protocol revision asked for and checks that it was negotiated, then
// runs the core lifecycle (register an agent, create a task, assign it, submit evidence,
// verify with a progress token, get_reliability), validates every tool result's
// structuredContent against the tool's outputSchema with the SDK's own validator, and
// subscribes to the agent's resource in the revision's own way (`resources/subscribe` after
// the handshake, `subscriptions/listen` on 2026-07-28), causes a change and waits for
// `notifications/resources/updated`.
//
// The last line on stdout is one JSON object: {client, sdk, transport, revision,
// result: "pass" | "unsupported" | "fail", negotiated, detail}. Exit code 0 for pass, 2 for a
// revision this SDK cannot speak, 1 for a failure. tests/client_matrix.rs runs it.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const UPDATE_WAIT_MS = 10_000;

const { values: args } = parseArgs({
    options: {
        sdk: { type: 'string' },
        transport: { type: 'string' },
        revision: { type: 'string' },
        bin: { type: 'string' },
        'database-url': { type: 'string' },
        url: { type: 'string' },
    },
});

class CellFailed extends Error {}

function check(condition, message) {
    if (!condition) throw new CellFailed(message);
}

/** "name version" of the installed package that `entry` (one of its exports) resolves into. */
function sdkVersion(pkg, entry) {
    // The packages do not export their package.json; walk up from the entry point.
    let dir = path.dirname(fileURLToPath(import.meta.resolve(entry)));
    for (;;) {
        const candidate = path.join(dir, 'package.json');
        if (fs.existsSync(candidate)) {
            const json = JSON.parse(fs.readFileSync(candidate, 'utf8'));
            if (json.name === pkg) return `${pkg} ${json.version}`;
        }
        const up = path.dirname(dir);
        if (up === dir) return pkg;
        dir = up;
    }
}

/** A transport that offers `revision` in `initialize` (v1 always offers its newest) and
 *  records what the server answered. Everything else passes through. */
class OfferRevision {
    constructor(inner, revision) {
        this.inner = inner;
        this.revision = revision;
        this.answered = undefined;
        this.initializeId = undefined;
    }
    async start() {
        this.inner.onmessage = (message, extra) => {
            if (message.id !== undefined && message.id === this.initializeId && message.result) {
                this.answered = message.result.protocolVersion;
            }
            this.onmessage?.(message, extra);
        };
        this.inner.onclose = () => this.onclose?.();
        this.inner.onerror = (error) => this.onerror?.(error);
        return this.inner.start();
    }
    send(message, options) {
        if (message.method === 'initialize') {
            this.initializeId = message.id;
            message = { ...message, params: { ...message.params, protocolVersion: this.revision } };
        }
        return this.inner.send(message, options);
    }
    close() {
        return this.inner.close();
    }
    get sessionId() {
        return this.inner.sessionId;
    }
    setProtocolVersion(version) {
        this.inner.setProtocolVersion?.(version);
    }
}

function stdioParams() {
    return {
        command: args.bin,
        args: ['serve'],
        env: { ...process.env, DATABASE_URL: args['database-url'], ARES_LOG: 'warn' },
        stderr: 'inherit',
    };
}

function httpOptions() {
    return { requestInit: { headers: { Authorization: `Bearer ${process.env.ARES_API_KEY ?? ''}` } } };
}

/** SDK v1: `@modelcontextprotocol/sdk`. It speaks the initialize handshake only. */
async function sdkV1() {
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
    const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');
    const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
    const types = await import('@modelcontextprotocol/sdk/types.js');
    const { AjvJsonSchemaValidator } = await import('@modelcontextprotocol/sdk/validation/ajv');
    return {
        name: sdkVersion('@modelcontextprotocol/sdk', '@modelcontextprotocol/sdk/client/index.js'),
        speaks: [...types.SUPPORTED_PROTOCOL_VERSIONS],
        // The per-request protocol needs `server/discover` and the per-request `_meta`
        // envelope; v1 has neither, so only handshake revisions count as spoken.
        modern: [],
        validator: new AjvJsonSchemaValidator(),
        async connect(revision) {
            const inner = args.transport === 'stdio'
                ? new StdioClientTransport(stdioParams())
                : new StreamableHTTPClientTransport(new URL(args.url), httpOptions());
            const transport = new OfferRevision(inner, revision);
            const client = new Client({ name: 'ares-matrix-ts-v1', version: '1' });
            await client.connect(transport);
            return {
                client,
                negotiated: transport.answered,
                onUpdated(handler) {
                    client.setNotificationHandler(types.ResourceUpdatedNotificationSchema, (n) => handler(n.params.uri));
                },
                callTool(name, toolArgs, onprogress) {
                    return client.callTool({ name, arguments: toolArgs }, types.CallToolResultSchema, onprogress ? { onprogress } : undefined);
                },
            };
        },
    };
}

/** SDK v2: `@modelcontextprotocol/client`. Handshake revisions and 2026-07-28. */
async function sdkV2() {
    const sdk = await import('@modelcontextprotocol/client');
    const { StdioClientTransport } = await import('@modelcontextprotocol/client/stdio');
    const { AjvJsonSchemaValidator } = await import('@modelcontextprotocol/client/validators/ajv');
    // v2 keeps its modern revisions apart from SUPPORTED_PROTOCOL_VERSIONS (the handshake
    // list); `versionNegotiation: { mode: { pin } }` accepts exactly these.
    const modern = ['2026-07-28'];
    return {
        name: sdkVersion('@modelcontextprotocol/client', '@modelcontextprotocol/client'),
        speaks: [...sdk.SUPPORTED_PROTOCOL_VERSIONS, ...modern],
        modern,
        validator: new AjvJsonSchemaValidator(),
        async connect(revision) {
            const transport = args.transport === 'stdio'
                ? new StdioClientTransport(stdioParams())
                : new sdk.StreamableHTTPClientTransport(new URL(args.url), httpOptions());
            // The SDK's own options: offer only `revision` in the handshake, or pin the
            // per-request revision (then `server/discover` must list it).
            const options = modern.includes(revision)
                ? { supportedProtocolVersions: [revision], versionNegotiation: { mode: { pin: revision } } }
                : { supportedProtocolVersions: [revision] };
            const client = new sdk.Client({ name: 'ares-matrix-ts-v2', version: '1' }, options);
            await client.connect(transport);
            if (modern.includes(revision)) {
                const discovered = client.getDiscoverResult?.();
                check(discovered?.supportedVersions?.includes(revision),
                    `server/discover listed ${JSON.stringify(discovered?.supportedVersions)}, not ${revision}`);
            }
            return {
                client,
                negotiated: client.getNegotiatedProtocolVersion(),
                onUpdated(handler) {
                    client.setNotificationHandler('notifications/resources/updated', (n) => handler(n.params.uri));
                },
                callTool(name, toolArgs, onprogress) {
                    return client.callTool({ name, arguments: toolArgs }, onprogress ? { onprogress } : undefined);
                },
                async listen(uri) {
                    const subscription = await client.listen({ resourceSubscriptions: [uri] });
                    return { honored: subscription.honoredFilter?.resourceSubscriptions ?? [], close: subscription.close };
                },
            };
        },
    };
}

async function runCell(sdk) {
    const conn = await sdk.connect(args.revision);
    const { client } = conn;
    try {
        check(conn.negotiated === args.revision, `negotiated ${conn.negotiated}, asked for ${args.revision}`);
        const listed = await client.listTools();
        const validators = new Map();
        for (const tool of listed.tools) {
            if (tool.outputSchema) validators.set(tool.name, sdk.validator.getValidator(tool.outputSchema));
        }
        let validated = 0;
        const call = async (name, toolArgs, onprogress) => {
            const result = await conn.callTool(name, toolArgs, onprogress);
            const text = (result.content ?? []).map((c) => c.text ?? '').join(' ');
            check(!result.isError, `${name} refused: ${text}`);
            check(result.structuredContent && typeof result.structuredContent === 'object',
                `${name} returned no structuredContent`);
            const validate = validators.get(name);
            check(validate, `${name} has no outputSchema`);
            const verdict = validate(result.structuredContent);
            check(verdict.valid, `${name}: structuredContent does not match outputSchema: ${verdict.errorMessage}`);
            validated += 1;
            return result.structuredContent;
        };

        const updates = [];
        conn.onUpdated((uri) => updates.push(uri));

        const stamp = new Date().toISOString().replace(/[^0-9]/g, '') + Math.random().toString(36).slice(2, 6);
        const capability = `ts-${args.sdk}-${args.transport}-${args.revision}-${stamp}`;
        const agent = await call('register_agent', { name: `typescript-${capability}`, capabilities: [capability] });
        const agentUri = `ares://agents/${agent.id}`;

        let subscription;
        let mechanism;
        if (sdk.modern.includes(args.revision)) {
            subscription = await conn.listen(agentUri);
            check(subscription.honored.includes(agentUri), `listen acknowledged ${JSON.stringify(subscription.honored)}`);
            mechanism = 'subscriptions/listen';
        } else {
            await client.subscribeResource({ uri: agentUri });
            mechanism = 'resources/subscribe';
        }

        const task = await call('create_task', {
            description: 'Fix the off-by-one in pagination',
            required_capabilities: [capability],
            criteria: [{ type: 'tests_pass' }, { type: 'evidence_present', kind: 'diff' }],
        });
        const assigned = await call('assign_task', { task_id: task.id });
        check(assigned.agent_id === agent.id, `routed to ${assigned.agent_id}`);
        await call('submit_evidence', {
            task_id: task.id,
            agent_id: agent.id,
            evidence: [
                { kind: 'diff', content: '-end = start + size + 1\n+end = start + size\n' },
                { kind: 'test_results', passed: 12, failed: 0 },
            ],
        });
        // With `onprogress` the SDK sends a progressToken in `_meta`.
        const progress = [];
        const verdict = await call('verify_task', { task_id: task.id }, (p) => progress.push(p));
        check(verdict.outcome === 'verified', `verdict ${verdict.outcome}`);
        check(progress.length >= 1, 'no notifications/progress for verify_task');
        const reliability = await call('get_reliability', { agent_id: agent.id });
        check(reliability.verifications >= 1, `reliability ${JSON.stringify(reliability)}`);

        // A change to the agent: a manual warning. Its resource must be told.
        const before = updates.length;
        await call('enforce', { agent_id: agent.id, action: 'warning', reason: 'client matrix' });
        const deadline = Date.now() + UPDATE_WAIT_MS;
        while (!updates.slice(before).includes(agentUri)) {
            check(Date.now() < deadline, `no notifications/resources/updated for ${agentUri} within ${UPDATE_WAIT_MS} ms (got ${JSON.stringify(updates)})`);
            await new Promise((resolve) => setTimeout(resolve, 20));
        }
        if (subscription) await subscription.close();
        else await client.unsubscribeResource({ uri: agentUri });
        return {
            negotiated: conn.negotiated,
            detail: `${validated} results schema-valid; ${progress.length} progress; update of ${agentUri} via ${mechanism}`,
        };
    } finally {
        await client.close().catch(() => {});
    }
}

async function main() {
    const report = { client: 'typescript', sdk: args.sdk, transport: args.transport, revision: args.revision, negotiated: null };
    let code;
    try {
        const sdk = args.sdk === 'v1' ? await sdkV1() : args.sdk === 'v2' ? await sdkV2() : null;
        check(sdk, `--sdk must be v1 or v2, not ${args.sdk}`);
        report.sdk = sdk.name;
        const handshake = sdk.speaks.filter((v) => !sdk.modern.includes(v) && v < '2026-07-28');
        if (!handshake.includes(args.revision) && !sdk.modern.includes(args.revision)) {
            report.result = 'unsupported';
            report.detail = `${sdk.name} speaks ${JSON.stringify(handshake.concat(sdk.modern))}`;
            code = 2;
        } else {
            const outcome = await Promise.race([
                runCell(sdk),
                new Promise((_, reject) => setTimeout(() => reject(new CellFailed('cell timed out after 60 s')), 60_000).unref()),
            ]);
            Object.assign(report, { result: 'pass' }, outcome);
            code = 0;
        }
    } catch (error) {
        console.error(error);
        report.result = 'fail';
        report.detail = `${error?.name ?? 'Error'}: ${error?.message ?? error}`;
        code = 1;
    }
    console.log(JSON.stringify(report));
    process.exit(code);
}

main();
