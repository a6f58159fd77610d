// A Go team's use, with kafka-go, of what saltproxy does not serve: a transactional producer's
// first step (kafka-go has no transactional writer: Client.InitProducerID with a transactional
// id), a consumer group, a plain fetch (a Reader on one partition, no group) and an admin call
// (Client.CreateTopics). kafka-go does not ask ApiVersions before these. Prints how long the
// client took to return an error and the error as the user sees it, or that it returned none
// within its own limit. Used by tests/e2e/unserved_apis_real_kafka_test.cc.
//
//	go build -o kafka-go-unserved . && ./kafka-go-unserved BOOTSTRAP USE TOPIC
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
)

// Longer than the test's deadline: a client that retries shows up as "no error".
const limit = 45 * time.Second

func use(ctx context.Context, bootstrap, what, topic string) error {
	client := &kafka.Client{Addr: kafka.TCP(bootstrap)}
	switch what {
	case "transactions":
		res, err := client.InitProducerID(ctx, &kafka.InitProducerIDRequest{
			TransactionalID: "saltproxy-e2e-" + topic, TransactionTimeoutMs: 10000})
		if err != nil {
			return err
		}
		return res.Error
	case "group", "fetch":
		config := kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic, MaxWait: time.Second}
		if what == "group" {
			config.GroupID = "saltproxy-e2e-" + topic
		}
		reader := kafka.NewReader(config)
		defer reader.Close()
		_, err := reader.ReadMessage(ctx)
		return err
	case "admin":
		res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
			Topics: []kafka.TopicConfig{{Topic: topic + "-new", NumPartitions: 3, ReplicationFactor: 1}}})
		if err != nil {
			return err
		}
		for _, e := range res.Errors {
			if e != nil {
				return e
			}
		}
		return nil
	}
	return fmt.Errorf("unknown use %s", what)
}

func main() {
	bootstrap, what, topic := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	err := use(ctx, bootstrap, what, topic)
	if err != nil && ctx.Err() == nil {
		fmt.Printf("error after %d ms: %v\n", time.Since(start).Milliseconds(), err)
		return
	}
	fmt.Printf("no error after %d ms\n", time.Since(start).Milliseconds())
	os.Exit(2)
}
