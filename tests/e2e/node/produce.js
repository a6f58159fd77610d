// A kafkajs producer (Node.js, from npm), as a Node team writes one: keyed records with a
// header, acks=all (kafkajs' default), gzip for every other batch. Used by tests/e2e.
//
//   NODE_PATH=.cache/node/node_modules node tests/e2e/node/produce.js BOOTSTRAP TOPIC COUNT
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, count] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'saltproxy-e2e', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const n = parseInt(count, 10);
  for (let start = 0; start < n; start += 50) {
    const messages = [];
    for (let i = start; i < Math.min(n, start + 50); i++) {
      messages.push({ key: `key-${i % 7}`, value: `node-${i}`, headers: { origin: 'kafkajs' } });
    }
    await producer.send({
      topic,
      messages,
      compression: (start / 50) % 2 ? CompressionTypes.GZIP : CompressionTypes.None,
    });
  }
  await producer.disconnect();
  console.log(`sent ${n}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
