package iptable

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Update works on what is on disk now, so what another program (P2PRC)
// wrote meanwhile is kept, keys this package does not know included.
func TestFileUpdateKeepsOtherWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing table created it: %v", err)
	}
	if err := f.Update(func(tab *Table) bool {
		tab.Upsert(Entry{Name: "ours", IPV4: "203.0.113.7", ServerPort: "8700"})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	// P2PRC rewrites the file with its own entry and a key of its own.
	writeTable(t, dir, `{"ip_address":[{"Name":"ours","IPV4":"203.0.113.7","ServerPort":"8700"},`+
		`{"Name":"p2prc","IPV4":"198.51.100.1","ServerPort":"8088","GPU":"rtx"}],"Version":2}`)
	if err := f.Update(func(tab *Table) bool {
		tab.Upsert(Entry{Name: "ours2", IPV4: "203.0.113.7", ServerPort: "8700"})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	tab, err := f.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Entries) != 2 || tab.Entries[0].Name != "ours2" || string(tab.Entries[1].Extra["GPU"]) != `"rtx"` || string(tab.Extra["Version"]) != "2" {
		t.Fatalf("after the update: %+v", tab)
	}
}

// An update that changes nothing does not write.
func TestFileUpdateUnchangedDoesNotWrite(t *testing.T) {
	dir := t.TempDir()
	path := writeTable(t, dir, `{"ip_address": []}`)
	f, _ := Open(path)
	if err := f.Update(func(*Table) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != `{"ip_address": []}` {
		t.Fatalf("file rewritten: %s", data)
	}
}

// A corrupt table stops Open and Update with the file and line, and is never
// overwritten.
func TestFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	content := "{\"ip_address\": [\n {\"IPV4\": 4}\n]}"
	path := writeTable(t, dir, content)
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("Open: %v", err)
	}
	f := &File{path: path} // as if it broke while in use
	err := f.Update(func(tab *Table) bool { tab.Upsert(Entry{IPV4: "x"}); return true })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Update: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != content {
		t.Fatalf("corrupt file overwritten: %s", data)
	}
}

// Concurrent updates of one File never lose each other's entries.
func TestFileConcurrentUpdates(t *testing.T) {
	f, _ := Open(filepath.Join(t.TempDir(), FileName))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			e := Entry{IPV4: "203.0.113.1", ServerPort: string(rune('a' + i))}
			if err := f.Update(func(tab *Table) bool { tab.Upsert(e); return true }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if tab, _ := f.Read(); len(tab.Entries) != 20 {
		t.Fatalf("%d entries after 20 concurrent updates", len(tab.Entries))
	}
}

func TestRemove(t *testing.T) {
	tab := &Table{Entries: []Entry{
		{Name: "a", IPV4: "203.0.113.1", ServerPort: "30001"},
		{Name: "b", IPV4: "203.0.113.1", ServerPort: "30002"},
		{Name: "c", IPV6: "2001:db8::1"},
	}}
	if n := tab.Remove(Entry{IPV4: "203.0.113.1", ServerPort: "30001", IPV6: "2001:db8::1"}); n != 2 {
		t.Fatalf("removed %d, want 2", n)
	}
	if len(tab.Entries) != 1 || tab.Entries[0].Name != "b" {
		t.Fatalf("left %+v", tab.Entries)
	}
}

// A syntax error inside the value of a key this package keeps unread is
// placed on its own line, not where the value began.
func TestCorruptKeptValueNamesItsLine(t *testing.T) {
	path := writeTable(t, t.TempDir(), "{\"ip_address\": [],\n \"Future\": [1,\n  2,\n }\n}")
	_, err := Load(path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path+":4:") {
		t.Fatalf("Load: %v; want it placed on line 4", err)
	}
}
