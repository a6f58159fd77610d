// A producer written the way a Java team writes one: the kafka-clients defaults (idempotent,
// acks=all), string keys, values and a header. Used by tests/e2e to prove that an unmodified
// Java producer works through saltproxy.
//
//   java -cp 'lib/*:.' KeyedProducer BOOTSTRAP TOPIC COUNT COMPRESSION
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class KeyedProducer {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, args[3]);
    int count = Integer.parseInt(args[2]);
    List<Future<RecordMetadata>> sent = new ArrayList<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < count; i++) {
        ProducerRecord<String, String> record =
            new ProducerRecord<>(args[1], "key-" + (i % 7), args[3] + "-" + i);
        record.headers().add("origin", "java".getBytes(StandardCharsets.UTF_8));
        sent.add(producer.send(record));
      }
      producer.flush();
      for (Future<RecordMetadata> f : sent) f.get();  // throws if any record failed
    }
    System.out.println("sent " + count);
  }
}
