// A Java team's use of what saltproxy does not serve, one at a time: a transactional producer,
// a consumer group, a plain fetch (assign and seek to 0, no group), a consumer that starts from
// the end (assign, no seek: it asks ListOffsets first) and an admin call (createTopics).
// Prints how long the client took to raise an error and the error as the user sees it, or that
// it raised none within its own limit. Used by tests/e2e/unserved_apis_real_kafka_test.cc.
//
//   java -cp 'lib/*:.' UnservedUse BOOTSTRAP transactions|group|fetch|offsets|admin TOPIC
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class UnservedUse {
  // Longer than the test's deadline: a client that retries shows up as "no error".
  static final long LIMIT_MS = 45_000;

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0], use = args[1], topic = args[2];
    long start = System.nanoTime();
    try {
      switch (use) {
        case "transactions": transactions(bootstrap, topic); break;
        case "group": consume(bootstrap, topic, true, false); break;
        case "fetch": consume(bootstrap, topic, false, true); break;
        case "offsets": consume(bootstrap, topic, false, false); break;
        case "admin": admin(bootstrap, topic); break;
        default: throw new IllegalArgumentException("unknown use " + use);
      }
      System.out.printf("no error after %d ms%n", (System.nanoTime() - start) / 1_000_000);
      System.exit(2);
    } catch (Exception e) {
      Throwable shown = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
      System.out.printf("error after %d ms: %s: %s%n", (System.nanoTime() - start) / 1_000_000,
                        shown.getClass().getName(), shown.getMessage());
      System.exit(0);
    }
  }

  static void transactions(String bootstrap, String topic) {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "saltproxy-e2e-" + topic);
    props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, (int) LIMIT_MS);
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
      producer.initTransactions();
    }
  }

  static void consume(String bootstrap, String topic, boolean group, boolean seek) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    if (group) props.put(ConsumerConfig.GROUP_ID_CONFIG, "saltproxy-e2e-" + topic);
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
      if (group) {
        consumer.subscribe(List.of(topic));
      } else {
        TopicPartition partition = new TopicPartition(topic, 0);
        consumer.assign(List.of(partition));
        if (seek) consumer.seek(partition, 0);
      }
      long deadline = System.nanoTime() + LIMIT_MS * 1_000_000;
      while (System.nanoTime() < deadline) consumer.poll(Duration.ofMillis(200));
    }
  }

  static void admin(String bootstrap, String topic) throws Exception {
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(props)) {
      admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all()
          .get(LIMIT_MS, TimeUnit.MILLISECONDS);
    }
  }
}
