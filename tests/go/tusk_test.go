// franz-go (github.com/twmb/franz-go) against a real Tusk process: admin (kadm), an
// idempotent producer, a group consumer with commits, and a transactional session
// (GroupTransactSession: consume-transform-produce with exactly-once offsets).
package tusktest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startTusk runs TUSK_BIN on a free port with its own data dir; stopped at the end of the test.
func startTusk(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("TUSK_BIN")
	if bin == "" {
		bin = "../../target/release/tusk"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	log, err := os.Create(filepath.Join(dir, "tusk.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--group-initial-rebalance-delay-ms", "0", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "tusk.log"))
			t.Logf("tusk log:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("tusk did not listen within 20 s")
	return ""
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestAdminProduceAndGroupConsume(t *testing.T) {
	addr := startTusk(t)
	c := ctx(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	created, err := adm.CreateTopics(c, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, "franz")
	if err != nil || created["franz"].Err != nil {
		t.Fatalf("create: %v %v", err, created["franz"].Err)
	}
	topics, err := adm.ListTopics(c, "franz")
	if err != nil || len(topics["franz"].Partitions) != 3 {
		t.Fatalf("list: %v %+v", err, topics)
	}
	rc, err := adm.DescribeTopicConfigs(c, "franz")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rc.On("franz", nil); err != nil || !hasConfig(v, "retention.ms", "3600000") {
		t.Fatalf("describe configs: %v %+v", err, v)
	}

	// Idempotent producer (franz-go's default), 1,000 records over 10 keys.
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("franz"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < 1000; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%10)), Value: []byte(fmt.Sprintf("%d", i))})
	}
	if err := prod.ProduceSync(c, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("franz-g"),
		kgo.ConsumeTopics("franz"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	last := map[string]int{}
	n := 0
	for n < 1000 {
		fs := cons.PollFetches(c)
		if err := fs.Err(); err != nil {
			t.Fatalf("poll after %d: %v", n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var v int
			fmt.Sscanf(string(r.Value), "%d", &v)
			if prev, ok := last[string(r.Key)]; ok && v <= prev {
				t.Errorf("key %s: %d after %d", r.Key, v, prev)
			}
			last[string(r.Key)] = v
			n++
		})
	}
	if err := cons.CommitUncommittedOffsets(c); err != nil {
		t.Fatal(err)
	}
	offs, err := adm.FetchOffsets(c, "franz-g")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != 1000 {
		t.Fatalf("committed offsets sum to %d, want 1000", total)
	}
}

func hasConfig(rc kadm.ResourceConfig, name, value string) bool {
	for _, c := range rc.Configs {
		if c.Key == name && c.Value != nil && *c.Value == value {
			return true
		}
	}
	return false
}

// Consume-transform-produce with franz-go's GroupTransactSession: every input record lands in
// the output exactly once and the group's offsets commit with the transaction.
func TestGroupTransactSession(t *testing.T) {
	addr := startTusk(t)
	c := ctx(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopics(c, 1, 1, nil, "in", "out"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < 200; i++ {
		recs = append(recs, &kgo.Record{Topic: "in", Value: []byte(fmt.Sprintf("%d", i))})
	}
	if err := cl.ProduceSync(c, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(addr),
		kgo.TransactionalID("franz-eos"), kgo.ConsumerGroup("eos-g"), kgo.ConsumeTopics("in"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequireStableFetchOffsets())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	done := 0
	for done < 200 {
		fs := sess.PollFetches(c)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			sess.Produce(c, &kgo.Record{Topic: "out", Value: append([]byte("x"), r.Value...)}, nil)
			done++
		})
		committed, err := sess.End(c, kgo.TryCommit)
		if err != nil || !committed {
			t.Fatalf("end: committed=%v err=%v", committed, err)
		}
	}

	rd, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	seen := map[string]bool{}
	for len(seen) < 200 {
		fs := rd.PollFetches(c)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if seen[string(r.Value)] {
				t.Errorf("%s twice", r.Value)
			}
			seen[string(r.Value)] = true
		})
	}
	offs, err := adm.FetchOffsets(c, "eos-g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("in", 0); !ok || o.At != 200 {
		t.Fatalf("group offset %+v, want 200", o)
	}
}
