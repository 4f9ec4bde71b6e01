package iptable

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func names(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Name)
	}
	return out
}

func TestMergeDedupe(t *testing.T) {
	tab := &Table{Entries: []Entry{
		{Name: "a", IPV4: "203.0.113.1", ServerPort: "8088"},
		{Name: "v6", IPV6: "2001:db8::1"},
	}}
	in := []Entry{
		{Name: "a-from-peer", IPV4: "203.0.113.1", ServerPort: "8088", Latency: 5}, // same IPV4+port: ours kept
		{Name: "a-other-port", IPV4: "203.0.113.1", ServerPort: "30001"},           // same IPV4, other port: new
		{Name: "v6-again", IPV4: "203.0.113.9", IPV6: "2001:db8::1"},               // same IPV6: duplicate
		{Name: "b", IPV4: "203.0.113.2", ServerPort: "8088", IPV6: "2001:db8::2"},  // new
		{Name: "b-v6", IPV4: "203.0.113.3", IPV6: "2001:db8::2"},                   // same IPV6 as b, in the batch
		{Name: "b-v4", IPV4: "203.0.113.2", ServerPort: "8088"},                    // same IPV4+port as b
		{Name: "no-address", ServerPort: "8088"},                                   // cannot be dialled
		{Name: "unreachable", IPV4: "203.0.113.4", NAT: true, EscapeImplementation: "None"},
		{Name: "nat-frp", IPV4: "203.0.113.5", NAT: true, EscapeImplementation: "FRP"}, // P2PRC keeps it
		{Name: "relayed", IPV4: "198.51.100.1", ServerPort: "30002", EscapeImplementation: EscapeImplementation},
	}
	added := tab.Merge(in)
	want := []string{"a", "v6", "a-other-port", "b", "nat-frp", "relayed"}
	if added != 4 || !reflect.DeepEqual(names(tab.Entries), want) {
		t.Fatalf("Merge added %d, table %q; want 4, %q", added, names(tab.Entries), want)
	}
	if tab.Entries[0].Latency != 0 {
		t.Errorf("existing entry overwritten: %+v", tab.Entries[0])
	}
	if again := tab.Merge(in); again != 0 {
		t.Errorf("merging the same entries again added %d", again)
	}
}

func TestMergeCap(t *testing.T) {
	var in []Entry
	for i := range MaxEntries + 100 {
		in = append(in, Entry{IPV4: fmt.Sprintf("10.%d.%d.1", i/256, i%256), ServerPort: "8088"})
	}
	tab := &Table{}
	if added := tab.Merge(in); added != MaxEntries || len(tab.Entries) != MaxEntries {
		t.Fatalf("added %d, have %d; want %d", added, len(tab.Entries), MaxEntries)
	}
	if added := tab.Merge([]Entry{{IPV4: "192.0.2.1"}}); added != 0 {
		t.Fatalf("full table took %d more", added)
	}
	// Upsert records first-hand knowledge, past the cap.
	tab.Upsert(RelayedEntry("self", "198.51.100.1", 30001))
	if len(tab.Entries) != MaxEntries+1 {
		t.Fatalf("Upsert on a full table: %d entries", len(tab.Entries))
	}
}

func TestMergeCopies(t *testing.T) {
	in := []Entry{{IPV4: "203.0.113.1", Extra: map[string]json.RawMessage{"k": json.RawMessage(`1`)}}}
	tab := &Table{}
	tab.Merge(in)
	in[0].Extra["k"][0] = '2'
	in[0].Extra["j"] = json.RawMessage(`3`)
	if got := tab.Entries[0].Extra; len(got) != 1 || string(got["k"]) != "1" {
		t.Fatalf("table shares the caller's Extra: %s", got)
	}
}

func TestUpsert(t *testing.T) {
	tab := &Table{Entries: []Entry{
		{Name: "a", IPV4: "203.0.113.1", ServerPort: "8088"},
		{Name: "b", IPV6: "2001:db8::1"},
		{Name: "c", IPV4: "203.0.113.3", ServerPort: "8088"},
	}}
	tab.Upsert(Entry{Name: "a2", IPV4: "203.0.113.1", ServerPort: "8088"})
	tab.Upsert(Entry{Name: "b2", IPV4: "203.0.113.2", IPV6: "2001:db8::1"})
	tab.Upsert(Entry{Name: "d", IPV4: "203.0.113.1", ServerPort: "9000"})
	if want := []string{"a2", "b2", "c", "d"}; !reflect.DeepEqual(names(tab.Entries), want) {
		t.Fatalf("table %q, want %q", names(tab.Entries), want)
	}
	// An entry that matches two entries (one by IPV4+port, one by IPV6)
	// replaces the first and removes the other.
	tab.Upsert(Entry{Name: "ac", IPV4: "203.0.113.3", ServerPort: "8088", IPV6: "2001:db8::1"})
	if want := []string{"a2", "ac", "d"}; !reflect.DeepEqual(names(tab.Entries), want) {
		t.Fatalf("table %q, want %q", names(tab.Entries), want)
	}
}

func TestRelayedEntry(t *testing.T) {
	e := RelayedEntry("home", "198.51.100.1", 30001)
	want := Entry{Name: "home", IPV4: "198.51.100.1", ServerPort: "30001", EscapeImplementation: "p2prc-relay"}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got %+v", e)
	}
	// P2PRC drops NAT entries that have no escape; ours must survive.
	if tab := (&Table{}); tab.Merge([]Entry{e}) != 1 || e.NAT {
		t.Fatal("a relayed entry is not kept as reachable")
	}
}
