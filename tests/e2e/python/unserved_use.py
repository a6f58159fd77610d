"""A Python team's use, with confluent-kafka (librdkafka), of what saltproxy does not serve: a
transactional producer, a consumer group, a plain fetch (an assigned partition from offset 0,
no group) and an admin call (create_topics). Prints how long the client took to raise an error
and the error as the user sees it, or that it raised none within its own limit. Used by
tests/e2e/unserved_apis_real_kafka_test.cc.

    python unserved_use.py BOOTSTRAP transactions|group|fetch|admin TOPIC
"""
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

LIMIT_S = 45  # longer than the test's deadline: a client that retries shows up as "no error"


def transactions(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap,
                         "transactional.id": "saltproxy-e2e-" + topic})
    producer.init_transactions(LIMIT_S)


def consume(bootstrap, topic, group):
    # confluent-kafka wants a group.id even for assign(), and librdkafka then looks its
    # coordinator up: its plain fetch meets the group's refusal first.
    conf = {"bootstrap.servers": bootstrap, "group.id": "saltproxy-e2e-" + topic,
            "enable.partition.eof": False}
    consumer = Consumer(conf)
    try:
        if group:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + LIMIT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error():
                raise KafkaException(message.error())
    finally:
        consumer.close()


def admin(bootstrap, topic):
    client = AdminClient({"bootstrap.servers": bootstrap})
    for future in client.create_topics([NewTopic(topic, 3, 1)], request_timeout=LIMIT_S).values():
        future.result(timeout=LIMIT_S)


def main():
    bootstrap, use, topic = sys.argv[1:4]
    start = time.monotonic()
    try:
        {"transactions": lambda: transactions(bootstrap, topic),
         "group": lambda: consume(bootstrap, topic, True),
         "fetch": lambda: consume(bootstrap, topic, False),
         "admin": lambda: admin(bootstrap, topic)}[use]()
    except KafkaException as e:
        elapsed = int((time.monotonic() - start) * 1000)
        print(f"error after {elapsed} ms: KafkaException: {e.args[0].str()}", flush=True)
        return 0
    print(f"no error after {int((time.monotonic() - start) * 1000)} ms", flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
