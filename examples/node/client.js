// Example client for the mmsearch sidecar. Loads the .proto at run time (no codegen).
//   node client.js --address 127.0.0.1:50051 --base emoji --text "red heart" [--image a.png]
//                  [--id google:2764-FE0F] [--token TOKEN] [--output-fields label,category]
//                  [--min-score 0.5]
// Prints one JSON object: info, health, search hits, and a rerank of those hits.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const args = { address: '127.0.0.1:50051', base: 'items', topK: 5 };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1];
  }
  args.topK = Number(args.topK);
  return args;
}

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync('mmsearch/v1/search.proto', {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).mmsearch.v1;
const healthDefinition = protoLoader.loadSync(path.join(__dirname, 'health.proto'),
  { enums: String });
const health = grpc.loadPackageDefinition(healthDefinition).grpc.health.v1;
// retry UNAVAILABLE and RESOURCE_EXHAUSTED with backoff: the policy the README recommends
const CHANNEL_OPTIONS = {
  'grpc.service_config': fs.readFileSync(path.join(PROTO_ROOT, 'mmsearch/v1/service_config.json'),
    'utf8'),
};

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30000 }, (err, reply) =>
      (err ? reject(err) : resolve(reply)));
  });
}

async function main() {
  const args = parseArgs(process.argv);
  const credentials = grpc.credentials.createInsecure();
  const metadata = new grpc.Metadata();
  if (args.token) metadata.add('authorization', `Bearer ${args.token}`);
  const info = await call(new v1.InfoService(args.address, credentials, CHANNEL_OPTIONS), 'Info', {}, metadata);
  const status = await call(new health.Health(args.address, credentials, CHANNEL_OPTIONS), 'Check',
    { service: '' }, new grpc.Metadata());
  const query = {};
  if (args.text) query.text = args.text;
  if (args.image) query.image = fs.readFileSync(args.image);
  if (args.id) query.id = args.id;
  const options = {};
  if (args.minScore !== undefined) options.min_score = Number(args.minScore);
  const outputFields = args.outputFields ? args.outputFields.split(',') : [];
  const search = await call(new v1.SearchService(args.address, credentials, CHANNEL_OPTIONS), 'Search',
    { base: args.base, top_k: args.topK, query, options, output_fields: outputFields }, metadata);
  // a Value arrives with its oneof case named in `kind`: read the value of that case
  const fields = (h) => Object.fromEntries(Object.entries(h.fields || {}).map(
    ([name, v]) => [name, v.kind === 'null_value' ? null : v[v.kind]]));
  const hits = search.hits.map((h) => ({ id: h.id, score: h.score, stages: h.stages,
    fields: fields(h) }));
  let rerank = null;
  if (info.scorer) {
    const candidates = search.hits.map((h) => ({ id: h.id }));
    const reply = await call(new v1.RerankService(args.address, credentials, CHANNEL_OPTIONS), 'Rerank',
      { base: args.base, query, candidates, top_k: 0 }, metadata);
    rerank = reply.results.map((r) => ({ index: r.index, id: r.id, score: r.score }));
  }
  // many queries in one call: each item answers or fails alone
  const batch = await call(new v1.SearchService(args.address, credentials, CHANNEL_OPTIONS),
    'SearchBatch', { requests: [
      { base: args.base, top_k: args.topK, query },
      { base: args.base, top_k: args.topK, query: { id: 'no-such-item' } },
    ] }, metadata);
  const batchOutcomes = batch.items.map((item) => (item.outcome === 'error'
    ? { error: item.error.code } : { hits: item.response.hits.map((h) => h.id) }));
  let badRequest = null;  // how a validation error looks from Node
  try {
    await call(new v1.SearchService(args.address, credentials, CHANNEL_OPTIONS), 'Search',
      { base: args.base, top_k: 0, query }, metadata);
  } catch (err) {
    badRequest = { code: grpc.status[err.code], details: err.details };
  }
  console.log(JSON.stringify({
    info: { model_id: info.model_id, widths: info.widths, scorer: info.scorer },
    health: status.status, hits, timings_ms: search.metadata.timings_ms,
    timings: search.metadata.timings, min_score_applied: search.metadata.min_score_applied,
    rerank, badRequest, batch: batchOutcomes,
  }));
}

main().catch((err) => {
  console.error(`error: ${err.code !== undefined ? grpc.status[err.code] : ''} ${err.details || err.message}`);
  process.exit(1);
});
