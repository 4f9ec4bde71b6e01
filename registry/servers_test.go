package registry_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/registry"
)

func openServers(t *testing.T) *registry.Servers {
	t.Helper()
	s, err := registry.OpenServers(filepath.Join(t.TempDir(), registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServersRoundTrip(t *testing.T) {
	s := openServers(t)
	want := registry.Server{Name: "relay-1", Address: "203.0.113.7:7000", Latency: 3 * time.Millisecond, LastSeen: t0, Fingerprint: "ab12"}
	if err := s.Upsert(want); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(registry.Server{Address: "relay.example:7000"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(s.Path())
	for _, key := range []string{`"reverse_proxy_servers"`, `"Server_name"`, `"Address"`, `"Latency": 3000000`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("file lacks %s:\n%s", key, raw)
		}
	}
	if strings.Count(string(raw), `"Last_seen"`) != 1 {
		t.Errorf("a never-seen relay should have no Last_seen:\n%s", raw)
	}
	again, err := registry.OpenServers(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Get(want.Address); got != want {
		t.Fatalf("reloaded %+v, want %+v", got, want)
	}
}

func TestUpsertKeepsWhatItIsNotTold(t *testing.T) {
	s := openServers(t)
	s.Upsert(registry.Server{Name: "r1", Address: "203.0.113.7:7000", Latency: 5 * time.Millisecond, Fingerprint: "ab12"})
	if err := s.Upsert(registry.Server{Address: "203.0.113.7:7000", Latency: 2 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get("203.0.113.7:7000")
	if got.Name != "r1" || got.Fingerprint != "ab12" || got.Latency != 2*time.Millisecond {
		t.Fatalf("after Upsert: %+v; want name and pin kept, latency updated", got)
	}
	for _, addr := range []string{"203.0.113.7", ":7000", "203.0.113.7:0", "203.0.113.7:70000", "h:+7"} {
		if err := s.Upsert(registry.Server{Address: addr}); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Upsert(%q) = %v; want ErrInvalid", addr, err)
		}
	}
}

func TestMerge(t *testing.T) {
	s := openServers(t)
	mine := registry.Server{Name: "mine", Address: "203.0.113.7:7000", Latency: 4 * time.Millisecond, Fingerprint: "pin"}
	s.Upsert(mine)
	added, err := s.Merge([]registry.Server{
		{Name: "theirs", Address: "203.0.113.7:7000", Latency: time.Millisecond, Fingerprint: "evil"},
		{Name: "new", Address: "203.0.113.8:7000", Latency: time.Millisecond, Fingerprint: "f8"},
		{Name: "new again", Address: "203.0.113.8:7000"},
		{Name: "bad", Address: "no-port"},
		{Name: "bad", Address: "203.0.113.9:0"},
	})
	if err != nil || added != 1 {
		t.Fatalf("Merge = %d, %v; want 1, nil", added, err)
	}
	if got, _ := s.Get(mine.Address); got != mine {
		t.Errorf("Merge changed a known relay: %+v", got)
	}
	got, _ := s.Get("203.0.113.8:7000")
	if got.Name != "new" || got.Fingerprint != "" || got.Latency != 0 {
		t.Errorf("merged relay = %+v; want name and pin kept, unmeasured", got)
	}
	if added, err := s.Merge(nil); added != 0 || err != nil {
		t.Errorf("empty Merge = %d, %v", added, err)
	}
}

func TestMergeCap(t *testing.T) {
	s := openServers(t)
	var in []registry.Server
	for i := range registry.MaxMergedServers + 10 {
		in = append(in, registry.Server{Address: fmt.Sprintf("10.0.%d.%d:7000", i/256, i%256)})
	}
	added, err := s.Merge(in)
	if err != nil || added != registry.MaxMergedServers {
		t.Fatalf("Merge = %d, %v; want %d", added, err, registry.MaxMergedServers)
	}
	if added, _ := s.Merge([]registry.Server{{Address: "203.0.113.1:7000"}}); added != 0 {
		t.Fatal("Merge grew a full table")
	}
	if err := s.Upsert(registry.Server{Address: "203.0.113.1:7000"}); err != nil {
		t.Fatalf("Upsert into a full table: %v", err)
	}
}

func TestServersListOrder(t *testing.T) {
	s := openServers(t)
	for _, sv := range []registry.Server{
		{Address: "d:1"}, {Address: "c:1", Latency: 9}, {Address: "a:1"}, {Address: "b:1", Latency: 9}, {Address: "e:1", Latency: 1},
	} {
		if err := s.Upsert(sv); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, sv := range s.List() {
		got = append(got, sv.Address)
	}
	if strings.Join(got, " ") != "e:1 b:1 c:1 a:1 d:1" {
		t.Fatalf("List order %v; want fastest first, unmeasured last, then by address", got)
	}
	if err := s.Remove("e:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("e:1"); err != nil {
		t.Fatalf("Remove of an absent relay = %v", err)
	}
	if _, ok := s.Get("e:1"); ok {
		t.Fatal("Remove kept the relay")
	}
}

func TestServersRollBackOnFailedSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(dir, 0o700)
	path := filepath.Join(dir, registry.ServerFileName)
	s, err := registry.OpenServers(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Upsert(registry.Server{Address: "a:1", Latency: 7})
	os.RemoveAll(dir)
	os.WriteFile(dir, nil, 0o600) // the state dir is now a file: saves fail, even as root
	if err := s.Upsert(registry.Server{Address: "a:1", Latency: 1}); err == nil {
		t.Fatal("Upsert succeeded with no directory to save in")
	}
	if n, err := s.Merge([]registry.Server{{Address: "b:1"}}); err == nil || n != 0 {
		t.Fatalf("Merge = %d, %v; want 0 and an error", n, err)
	}
	if got := s.List(); len(got) != 1 || got[0].Latency != 7 {
		t.Fatalf("after failed saves the table is %+v; want it unchanged", got)
	}
}

func TestOpenCorruptServers(t *testing.T) {
	path := filepath.Join(t.TempDir(), registry.ServerFileName)
	body := `{"reverse_proxy_servers": [{"Address": "a:1"}, {"Address": "a:1"}]}`
	os.WriteFile(path, []byte(body), 0o600)
	if _, err := registry.OpenServers(path); !errors.Is(err, registry.ErrCorrupt) || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("OpenServers with a duplicate = %v; want ErrCorrupt saying so", err)
	}
}

// Two processes (two tables) on one file: neither loses the other's update.
func TestServersSharedFileLosesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), registry.ServerFileName)
	a, err := registry.OpenServers(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := registry.OpenServers(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Upsert(registry.Server{Address: "203.0.113.1:8700"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Upsert(registry.Server{Address: "203.0.113.2:8700", Latency: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := a.Upsert(registry.Server{Address: "203.0.113.3:8700"}); err != nil {
		t.Fatal(err)
	}
	c, err := registry.OpenServers(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(c.List()); got != 3 {
		t.Fatalf("the file holds %d relays, want all 3: %+v", got, c.List())
	}
}

// A relay heard of from a peer stays marked as such through measurements,
// until this machine vouches for it.
func TestLearntRelaysUntilVouchedFor(t *testing.T) {
	s, err := registry.OpenServers(filepath.Join(t.TempDir(), registry.ServerFileName))
	if err != nil {
		t.Fatal(err)
	}
	addr := "203.0.113.9:8700"
	if _, err := s.Merge([]registry.Server{{Address: addr}}); err != nil {
		t.Fatal(err)
	}
	if sv, _ := s.Get(addr); !sv.Learnt {
		t.Fatalf("a merged relay is not marked learnt: %+v", sv)
	}
	s.Upsert(registry.Server{Address: addr, Name: "r", Latency: time.Millisecond}) // a greeting measured it
	if sv, _ := s.Get(addr); !sv.Learnt || sv.Latency != time.Millisecond {
		t.Fatalf("a measurement changed the mark: %+v", sv)
	}
	if err := s.Vouch(addr); err != nil {
		t.Fatal(err)
	}
	if sv, _ := s.Get(addr); sv.Learnt || sv.Name != "r" {
		t.Fatalf("after Vouch: %+v", sv)
	}
	if err := s.Vouch("198.51.100.1:8700"); err != nil { // unknown: added
		t.Fatal(err)
	}
	if sv, ok := s.Get("198.51.100.1:8700"); !ok || sv.Learnt {
		t.Fatalf("Vouch of an unknown relay: %+v %v", sv, ok)
	}
}
