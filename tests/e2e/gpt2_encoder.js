// GPT-2's ids of each FILE's text by the npm package gpt-3-encoder (a port of OpenAI's
// encoder.py), one JSON array per line, end-of-text (50256) first as lockstep tokenize
// writes a document: the reference tests/e2e/tokenize.sh compares lockstep with.
//   node gpt2_encoder.js PATH/TO/gpt-3-encoder/Encoder.js FILE...
const fs = require('fs');
const enc = require(process.argv[2]);
for (const f of process.argv.slice(3)) {
  const text = fs.readFileSync(f, 'utf-8');
  console.log(JSON.stringify([50256].concat(enc.encode(text))));
}
