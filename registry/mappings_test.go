package registry_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2prc/p2prc/portalloc"
	"github.com/p2prc/p2prc/registry"
)

var _ portalloc.Owners = (*registry.Mappings)(nil)

var t0 = time.Date(2025, 11, 25, 19, 0, 0, 0, time.UTC)

func openMappings(t *testing.T) *registry.Mappings {
	t.Helper()
	tab, err := registry.OpenMappings(filepath.Join(t.TempDir(), registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func mapping(typ string, port int, owner string) registry.Mapping {
	return registry.Mapping{
		ServerName: "relay-1", Address: "203.0.113.7", Type: typ, BlindPort: port,
		Owner: owner, NodeName: "node-" + owner, Local: "127.0.0.1:8080", Created: t0, LastSeen: t0,
	}
}

func TestMappingsRoundTrip(t *testing.T) {
	tab := openMappings(t)
	want := []registry.Mapping{mapping("TCP", 30001, "aa"), mapping("UDP", 30001, "bb")}
	for _, m := range want {
		if err := tab.Put(m); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(tab.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"reverse_proxy_mappings"`, `"Server_name"`, `"Address"`, `"Type"`, `"blind_port"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("file lacks key %s:\n%s", key, raw)
		}
	}
	again, err := registry.OpenMappings(tab.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(again.List()); got != fmt.Sprint(want) {
		t.Fatalf("reloaded %s, want %v", got, want)
	}
}

func TestMappingsEmptyFileIsEmptyList(t *testing.T) {
	tab := openMappings(t)
	if err := tab.Replace(nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(tab.Path())
	if !strings.Contains(string(raw), `"reverse_proxy_mappings": []`) {
		t.Fatalf("empty table saved as %s; want an empty list, not null", raw)
	}
}

func TestMappingHelpers(t *testing.T) {
	m := mapping("UDP", 30053, "aa")
	if m.Network() != "udp" || m.PublicAddr() != "203.0.113.7:30053" {
		t.Errorf("Network, PublicAddr = %q, %q", m.Network(), m.PublicAddr())
	}
	m.Address = "2001:db8::1"
	if m.PublicAddr() != "[2001:db8::1]:30053" {
		t.Errorf("PublicAddr = %q", m.PublicAddr())
	}
	if registry.TypeOf("tcp") != "TCP" || registry.TypeOf("udp") != "UDP" || registry.TypeOf("sctp") != "" {
		t.Error("TypeOf is wrong")
	}
}

func TestPutRefusesAnotherOwner(t *testing.T) {
	tab := openMappings(t)
	if err := tab.Put(mapping("TCP", 30001, "aa")); err != nil {
		t.Fatal(err)
	}
	err := tab.Put(mapping("TCP", 30001, "bb"))
	if !errors.Is(err, registry.ErrOwned) {
		t.Fatalf("Put over another owner's port = %v; want ErrOwned", err)
	}
	if owner, _ := tab.Owner("tcp", 30001); owner != "aa" {
		t.Fatalf("owner = %q after refused Put, want aa", owner)
	}
	renewed := mapping("TCP", 30001, "aa")
	renewed.Created, renewed.Local = time.Time{}, "127.0.0.1:9090"
	if err := tab.Put(renewed); err != nil {
		t.Fatalf("owner replacing its own mapping: %v", err)
	}
	got, _ := tab.Lookup("tcp", 30001)
	if got.Local != "127.0.0.1:9090" || !got.Created.Equal(t0) {
		t.Fatalf("replaced mapping = %+v; want new Local and the old Created", got)
	}
}

func TestPutValidates(t *testing.T) {
	tab := openMappings(t)
	for _, m := range []registry.Mapping{mapping("SCTP", 30001, "aa"), mapping("TCP", 0, "aa"), mapping("UDP", 65536, "aa")} {
		if err := tab.Put(m); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("Put(%s %d) = %v; want ErrInvalid", m.Type, m.BlindPort, err)
		}
	}
	if err := tab.Put(mapping("tcp", 30001, "aa")); err != nil {
		t.Fatal(err)
	}
	if m, _ := tab.Lookup("TCP", 30001); m.Type != "TCP" {
		t.Errorf("Type saved as %q, want TCP", m.Type)
	}
}

func TestTCPAndUDPShareAPort(t *testing.T) {
	tab := openMappings(t)
	if err := tab.Put(mapping("TCP", 30001, "aa")); err != nil {
		t.Fatal(err)
	}
	if err := tab.Put(mapping("UDP", 30001, "bb")); err != nil {
		t.Fatalf("UDP on a TCP mapping's port number: %v", err)
	}
	if o, _ := tab.Owner("udp", 30001); o != "bb" {
		t.Errorf("udp owner = %q, want bb", o)
	}
	if err := tab.Remove("tcp", 30001); err != nil {
		t.Fatal(err)
	}
	if _, ok := tab.Lookup("udp", 30001); !ok {
		t.Error("removing the TCP mapping removed the UDP one")
	}
	if err := tab.Remove("tcp", 30001); err != nil {
		t.Errorf("Remove of an absent mapping = %v", err)
	}
}

func TestFindAndTouch(t *testing.T) {
	tab := openMappings(t)
	tab.Put(mapping("TCP", 30002, "aa"))
	tab.Put(mapping("UDP", 30003, "aa"))
	tab.Put(mapping("TCP", 30004, "bb"))
	if m, ok := tab.Find("aa", "udp", "127.0.0.1:8080"); !ok || m.BlindPort != 30003 {
		t.Errorf("Find = %v, %v; want port 30003", m.BlindPort, ok)
	}
	if _, ok := tab.Find("aa", "tcp", "127.0.0.1:9999"); ok {
		t.Error("Find matched another local target")
	}
	if _, ok := tab.Find("", "tcp", "127.0.0.1:8080"); ok {
		t.Error("Find matched an empty identity")
	}
	later := t0.Add(time.Hour)
	if err := tab.Touch("aa", later); err != nil {
		t.Fatal(err)
	}
	for _, m := range tab.List() {
		if touched := m.LastSeen.Equal(later); touched != (m.Owner == "aa") {
			t.Errorf("%d/%s owned by %s: LastSeen %v", m.BlindPort, m.Type, m.Owner, m.LastSeen)
		}
	}
}

func TestListOrder(t *testing.T) {
	tab := openMappings(t)
	err := tab.Replace([]registry.Mapping{mapping("UDP", 30001, "a"), mapping("TCP", 30009, "b"), mapping("TCP", 30002, "c")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range tab.List() {
		got = append(got, fmt.Sprintf("%s/%d", m.Type, m.BlindPort))
	}
	if strings.Join(got, " ") != "TCP/30002 TCP/30009 UDP/30001" {
		t.Fatalf("List order %v", got)
	}
	if err := tab.Replace([]registry.Mapping{mapping("TCP", 1, "a"), mapping("TCP", 1, "b")}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("Replace with a duplicate port = %v; want ErrInvalid", err)
	}
}

func TestMappingsRollBackOnFailedSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(dir, 0o700)
	tab, err := registry.OpenMappings(filepath.Join(dir, registry.MappingFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Put(mapping("TCP", 30001, "aa")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir) // every later save fails, even as root
	if err := tab.Put(mapping("TCP", 30002, "aa")); err == nil {
		t.Fatal("Put into a removed directory succeeded")
	}
	if err := tab.Remove("tcp", 30001); err == nil {
		t.Fatal("Remove into a removed directory succeeded")
	}
	if err := tab.Touch("aa", t0.Add(time.Hour)); err == nil {
		t.Fatal("Touch into a removed directory succeeded")
	}
	if got := tab.List(); len(got) != 1 || got[0].BlindPort != 30001 || !got[0].LastSeen.Equal(t0) {
		t.Fatalf("after failed saves the table is %v; want it unchanged", got)
	}
}

func TestOpenCorruptMappings(t *testing.T) {
	for name, body := range map[string]string{
		"syntax":    "{\"reverse_proxy_mappings\": [\n  {\"Type\": \"TCP\",}\n]}",
		"bad type":  `{"reverse_proxy_mappings": [{"Type": "ICMP", "blind_port": 1}]}`,
		"duplicate": `{"reverse_proxy_mappings": [{"Type": "TCP", "blind_port": 1}, {"Type": "tcp", "blind_port": 1}]}`,
	} {
		path := filepath.Join(t.TempDir(), registry.MappingFileName)
		os.WriteFile(path, []byte(body), 0o600)
		_, err := registry.OpenMappings(path)
		if !errors.Is(err, registry.ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: OpenMappings = %v; want ErrCorrupt naming the file", name, err)
		}
		if raw, _ := os.ReadFile(path); string(raw) != body {
			t.Errorf("%s: the corrupt file was changed", name)
		}
	}
}

func TestConcurrentPut(t *testing.T) {
	tab := openMappings(t)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			owner := fmt.Sprint("node", i%8)
			if err := tab.Put(mapping("TCP", 30000+i%16, owner)); err != nil && !errors.Is(err, registry.ErrOwned) {
				t.Error(err)
			}
			tab.List()
			tab.Lookup("tcp", 30000+i%16)
		})
	}
	wg.Wait()
	if got := len(tab.List()); got != 16 {
		t.Fatalf("table holds %d mappings, want 16", got)
	}
	again, err := registry.OpenMappings(tab.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.List()) != fmt.Sprint(tab.List()) {
		t.Fatal("the file does not hold the last table")
	}
}
