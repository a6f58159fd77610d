// A producer written the way a Java team writes one: the kafka-clients defaults (idempotent,
// acks=all), string keys, values and a header. Used by tests/e2e to prove that an unmodified
// Java producer works through saltproxy.
//
//   java -cp 'lib/*:.' KeyedProducer BOOTSTRAP TOPIC COUNT COMPRESSION [HOT_EVERY]
//
// With HOT_EVERY, every HOT_EVERY-th record has the key "hot", and each record's RecordMetadata
// is printed as it is given to the application: "meta VALUE PARTITION OFFSET" (-1: unknown).
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
    int hotEvery = args.length > 4 ? Integer.parseInt(args[4]) : 0;
    List<Future<RecordMetadata>> sent = new ArrayList<>();
    List<String> values = new ArrayList<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < count; i++) {
        String key = hotEvery > 0 && i % hotEvery == 0 ? "hot" : "key-" + (i % 7);
        String value = args[3] + "-" + i;
        ProducerRecord<String, String> record = new ProducerRecord<>(args[1], key, value);
        record.headers().add("origin", "java".getBytes(StandardCharsets.UTF_8));
        sent.add(producer.send(record));
        values.add(value);
      }
      producer.flush();
      for (int i = 0; i < sent.size(); i++) {
        RecordMetadata m = sent.get(i).get();  // throws if any record failed
        if (hotEvery > 0) {
          System.out.println("meta " + values.get(i) + " " + m.partition() + " "
              + (m.hasOffset() ? m.offset() : -1));
        }
      }
    }
    System.out.println("sent " + count);
  }
}
