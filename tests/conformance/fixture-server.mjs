// A legacy STDIO MCP server (2025-11-25) with what the conformance CLI's
// server scenarios call: the test_* tools, prompts and resources, built on
// the low-level Server of the 1.32.2 SDK. The reference "everything" server
// has none of them, so its runs pass a third of the scenarios for want of a
// fixture; this one lets the suite exercise mcpgate on each: STDIO routes,
// HTTP routes, and the 2026-07-28 front.
//
//   node fixture-server.mjs              STDIO (one session per process)
//   node fixture-server.mjs --http PORT  Streamable HTTP on 127.0.0.1:PORT/mcp,
//                                        one Server per session
import { randomUUID } from 'node:crypto';
import http from 'node:http';

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, CreateMessageResultSchema, ElicitResultSchema, GetPromptRequestSchema,
  ListPromptsRequestSchema, ListResourceTemplatesRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema,
  ReadResourceRequestSchema, SetLevelRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
const WAV = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVEfmt ')]).toString('base64');
const TEXT_RESOURCE = { uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' };
const noArgs = { type: 'object', properties: {} };


const tools = [
  ['test_simple_text', 'Returns simple text'],
  ['test_image_content', 'Returns an image'],
  ['test_audio_content', 'Returns audio'],
  ['test_embedded_resource', 'Returns an embedded resource'],
  ['test_multiple_content_types', 'Returns text, an image and a resource'],
  ['test_tool_with_logging', 'Logs three messages'],
  ['test_tool_with_progress', 'Reports progress three times'],
  ['test_error_handling', 'Always fails'],
  ['test_sampling', 'Asks the client for a completion', { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] }],
  ['test_elicitation', 'Asks the user', { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] }],
  ['test_elicitation_sep1034_defaults', 'Asks the user, with a default for every primitive type'],
  ['test_elicitation_sep1330_enums', 'Asks the user, with each of the five enum forms'],
].map(([name, description, inputSchema = noArgs]) => ({ name, description, inputSchema }));

const DEFAULTS_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', default: 'John Doe' },
    age: { type: 'integer', default: 30 },
    score: { type: 'number', default: 95.5 },
    status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', default: true },
  },
};
const ENUMS_SCHEMA = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    titledSingle: { type: 'string', oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' }, { const: 'value3', title: 'Third Option' }] },
    legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
    untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
    titledMulti: { type: 'array', items: { anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' }, { const: 'value3', title: 'Third Choice' }] } },
  },
};

function makeServer() {
  const server = new Server({ name: 'mcpgate-conformance-fixture', version: '1.0.0' },
    { capabilities: { tools: {}, prompts: {}, resources: { subscribe: true }, logging: {}, completions: {} } });
  const subscribed = new Set();
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools }));
  server.setRequestHandler(SetLevelRequestSchema, async () => ({}));

  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    const { name, arguments: args = {} } = req.params;
    switch (name) {
      case 'test_simple_text':
        return { content: [{ type: 'text', text: 'This is a simple text response for testing.' }] };
      case 'test_image_content':
        return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
      case 'test_embedded_resource':
        return { content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'embedded' } }] };
      case 'test_multiple_content_types':
        return {
          content: [{ type: 'text', text: 'mixed' }, { type: 'image', data: PNG, mimeType: 'image/png' },
            { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"a":1}' } }],
        };
      case 'test_tool_with_logging':
        for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
          await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
        }
        return { content: [{ type: 'text', text: 'logged' }] };
      case 'test_tool_with_progress': {
        const token = req.params._meta?.progressToken;
        for (const progress of [0, 50, 100]) {
          if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } });
        }
        return { content: [{ type: 'text', text: 'progress done' }] };
      }
      case 'test_error_handling':
        return { isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] };
      case 'test_sampling': {
        const r = await extra.sendRequest({
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt) } }], maxTokens: 100 },
        }, CreateMessageResultSchema);
        return { content: [{ type: 'text', text: `LLM response: ${r.content?.text ?? ''}` }] };
      }
      case 'test_elicitation': {
        const r = await extra.sendRequest({
          method: 'elicitation/create',
          params: {
            message: String(args.message),
            requestedSchema: { type: 'object', properties: { username: { type: 'string' }, email: { type: 'string' } }, required: ['username', 'email'] },
          },
        }, ElicitResultSchema);
        return { content: [{ type: 'text', text: `User response: ${JSON.stringify(r)}` }] };
      }
      case 'test_elicitation_sep1034_defaults':
      case 'test_elicitation_sep1330_enums': {
        const requestedSchema = name === 'test_elicitation_sep1034_defaults' ? DEFAULTS_SCHEMA : ENUMS_SCHEMA;
        const r = await extra.sendRequest({ method: 'elicitation/create', params: { message: 'Please review these fields', requestedSchema } }, ElicitResultSchema);
        return { content: [{ type: 'text', text: `Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}` }] };
      }
      default:
        throw new Error(`Unknown tool: ${name}`);
    }
  });

  const prompts = [
    { name: 'test_simple_prompt', description: 'A simple prompt' },
    { name: 'test_prompt_with_arguments', description: 'A prompt with arguments', arguments: [{ name: 'arg1', required: true }, { name: 'arg2', required: true }] },
    { name: 'test_prompt_with_embedded_resource', description: 'A prompt with a resource', arguments: [{ name: 'resourceUri', required: true }] },
    { name: 'test_prompt_with_image', description: 'A prompt with an image' },
  ];
  server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts }));
  server.setRequestHandler(GetPromptRequestSchema, async (req) => {
    const { name, arguments: a = {} } = req.params;
    const text = (t) => ({ role: 'user', content: { type: 'text', text: t } });
    switch (name) {
      case 'test_simple_prompt':
        return { messages: [text('This is a simple prompt for testing.')] };
      case 'test_prompt_with_arguments':
        return { messages: [text(`Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'`)] };
      case 'test_prompt_with_embedded_resource':
        return { messages: [{ role: 'user', content: { type: 'resource', resource: { uri: String(a.resourceUri), mimeType: 'text/plain', text: 'embedded' } } }, text('Use it.')] };
      case 'test_prompt_with_image':
        return { messages: [{ role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } }, text('Describe it.')] };
      default:
        throw Object.assign(new Error(`Prompt ${name} not found`), { code: -32602 });
    }
  });
  server.setRequestHandler(CompleteRequestSchema, async (req) => {
    const v = String(req.params.argument?.value ?? '');
    return { completion: { values: ['test1', 'test2', 'test3'].filter((x) => x.startsWith(v)), total: 3, hasMore: false } };
  });

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: [
      { uri: 'test://static-text', name: 'static-text', mimeType: 'text/plain' },
      { uri: 'test://static-binary', name: 'static-binary', mimeType: 'image/png' },
    ],
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [{ uriTemplate: 'test://template/{id}/data', name: 'template', mimeType: 'application/json' }],
  }));
  server.setRequestHandler(ReadResourceRequestSchema, async (req) => {
    const { uri } = req.params;
    if (uri === 'test://static-text') return { contents: [TEXT_RESOURCE] };
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] };
    const m = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (m) return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id: m[1], data: `data for ${m[1]}` }) }] };
    throw Object.assign(new Error(`Resource ${uri} not found`), { code: -32002 });
  });
  server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    subscribed.add(req.params.uri);
    return {};
  });
  server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    subscribed.delete(req.params.uri);
    return {};
  });
  return server;
}

const httpAt = process.argv.indexOf('--http');
if (httpAt < 0) {
  await makeServer().connect(new StdioServerTransport());
} else {
  const sessions = new Map(); // Mcp-Session-Id → transport
  const readBody = (req) => new Promise((resolve, reject) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
  http.createServer(async (req, res) => {
    if (!req.url.startsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    // DNS rebinding: a loopback server answers only to loopback names.
    if (!/^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(req.headers.host || '')) {
      res.writeHead(403, { 'content-type': 'application/json' })
        .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Forbidden Host' } }));
      return;
    }
    const id = req.headers['mcp-session-id'];
    let transport = id && sessions.get(id);
    let body;
    if (req.method === 'POST') {
      const text = await readBody(req);
      try {
        body = JSON.parse(text);
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } }));
        return;
      }
    }
    if (!transport) {
      if (id || req.method !== 'POST' || body?.method !== 'initialize') {
        res.writeHead(id ? 404 : 400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: id ? 'Session not found' : 'No session' } }));
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await makeServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  }).listen(Number(process.argv[httpAt + 1]), '127.0.0.1');
}
