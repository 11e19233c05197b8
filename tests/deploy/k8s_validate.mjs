// Validates Kubernetes objects against the API's OpenAPI schemas, offline.
//
//   node k8s_validate.mjs MODELS_DIR DOCS.json
//
// DOCS.json: [{"file": ..., "doc": {...}}, ...] (kubernetes_test.sh converts
// the YAML manifests). MODELS_DIR: a node_modules holding the npm package
// kubernetes-models, whose validators are compiled from the Kubernetes
// OpenAPI schemas: types, required fields, enums and formats.
//
// Those schemas do not forbid unknown fields, which the API server rejects
// (kubectl's default --validate=strict). So every object is wrapped in a
// Proxy that records which fields the validator looked up; a field it never
// looked up, in an object whose keys it never enumerated (maps such as labels
// enumerate theirs), is not in the schema: a typo or a field of another
// version.
//
// Prints one line per object; exits 1 when any object is invalid.
import path from "node:path";
import fs from "node:fs";
import { pathToFileURL } from "node:url";

const [modelsDir, docsFile] = process.argv.slice(2);
const docs = JSON.parse(fs.readFileSync(docsFile, "utf8"));

function modelModule(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const dir = group ? `${group}/${version}` : version;
  return path.join(modelsDir, "kubernetes-models", dir, `${kind}.mjs`);
}

function track(value, where, records) {
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${where}/${i}`, records));
  if (value === null || typeof value !== "object") return value;
  const rec = { where, read: new Set(), enumerated: false, keys: Object.keys(value) };
  records.push(rec);
  const target = {};
  for (const k of Object.keys(value)) target[k] = track(value[k], `${where}/${k}`, records);
  return new Proxy(target, {
    get(t, k, r) {
      if (typeof k === "string") rec.read.add(k);
      return Reflect.get(t, k, r);
    },
    has(t, k) {
      if (typeof k === "string") rec.read.add(k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      rec.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

let failed = 0;
for (const { file, doc } of docs) {
  const name = `${file}: ${doc?.kind ?? "?"}/${doc?.metadata?.name ?? "?"}`;
  if (!doc || typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") {
    console.log(`FAIL ${name}: no apiVersion or kind`);
    failed++;
    continue;
  }
  const mod = modelModule(doc.apiVersion, doc.kind);
  if (!fs.existsSync(mod)) {
    console.log(`FAIL ${name}: ${doc.apiVersion} ${doc.kind} is not a Kubernetes API type`);
    failed++;
    continue;
  }
  const Model = (await import(pathToFileURL(mod).href))[doc.kind];
  const records = [];
  const proxied = track(doc, "", records);
  const problems = [];
  try {
    Model.prototype.validate.call(proxied);
  } catch (e) {
    const errors = e.errors ?? [{ instancePath: "", message: e.message }];
    for (const err of errors) problems.push(`${err.instancePath || "/"} ${err.message}`);
  }
  if (problems.length === 0) {
    const unknown = [];
    for (const rec of records) {
      if (rec.enumerated || unknown.some((u) => rec.where === u || rec.where.startsWith(u + "/"))) continue;
      for (const k of rec.keys) if (!rec.read.has(k)) unknown.push(`${rec.where}/${k}`);
    }
    for (const u of unknown) problems.push(`${u}: unknown field`);
  }
  if (problems.length) {
    failed++;
    console.log(`FAIL ${name}:`);
    for (const p of problems) console.log(`     | ${p}`);
  } else {
    console.log(`ok   ${name} (${doc.apiVersion}): valid, no unknown field in ${records.length} objects`);
  }
}
process.exit(failed ? 1 : 0);
