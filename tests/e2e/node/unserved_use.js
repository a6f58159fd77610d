// A Node team's use, with kafkajs, of what saltproxy does not serve: a transactional producer,
// a consumer group, a topic's offsets (admin.fetchTopicOffsets: kafkajs has no consumer without
// a group) and an admin call (createTopics).
// Prints how long the client took to raise an error and the error as the user sees it, or
// that it raised none within its own limit. Used by tests/e2e/unserved_apis_real_kafka_test.cc.
//
//   NODE_PATH=.cache/node/node_modules node tests/e2e/node/unserved_use.js BOOTSTRAP USE TOPIC
const { Kafka, logLevel } = require('kafkajs');

const LIMIT_MS = 45000; // longer than the test's deadline: a retrying client shows "no error"

function describe(e) {
  const inner = (e.errors || []).map((x) => `${x.name}: ${x.message}`).join('; ');
  return `${e.name}: ${e.message}${inner ? ` (${inner})` : ''}`;
}

async function main() {
  const [bootstrap, use, topic] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: 'saltproxy-e2e', brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const start = Date.now();
  const limit = new Promise((resolve) => setTimeout(resolve, LIMIT_MS, 'limit')).then(() => null);
  let work;
  if (use === 'transactions') {
    const producer = kafka.producer({ transactionalId: `saltproxy-e2e-${topic}`, maxInFlightRequests: 1, idempotent: true });
    work = producer.connect().then(() => producer.transaction());
  } else if (use === 'group') {
    const consumer = kafka.consumer({ groupId: `saltproxy-e2e-${topic}` });
    // A consumer's failure after run() reaches the application as its CRASH event.
    work = new Promise((resolve, reject) => {
      consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error));
      consumer.connect()
        .then(() => consumer.subscribe({ topics: [topic] }))
        .then(() => consumer.run({ eachMessage: async () => {} }))
        .catch(reject);
    });
  } else if (use === 'offsets') {
    const admin = kafka.admin();
    work = admin.connect().then(() => admin.fetchTopicOffsets(topic));
  } else if (use === 'admin') {
    const admin = kafka.admin();
    work = admin.connect().then(() => admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }));
  } else {
    throw new Error(`unknown use ${use}`);
  }
  try {
    await Promise.race([work.then(() => null), limit]);
    console.log(`no error after ${Date.now() - start} ms`);
    process.exit(2);
  } catch (e) {
    console.log(`error after ${Date.now() - start} ms: ${describe(e)}`);
    process.exit(0);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
