package iptable

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

// writeTable writes content as dir/ip_table.json and returns its path.
func writeTable(t testing.TB, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// generic decodes JSON into maps, slices and json.Numbers, so that two
// documents compare equal when they hold the same values, whatever their
// spacing, key order or escapes.
func generic(t testing.TB, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// sameTable reports whether a and b hold the same entries and kept keys, with
// kept values compared as values.
func sameTable(t testing.TB, a, b *Table) bool {
	t.Helper()
	if len(a.Entries) != len(b.Entries) || !sameExtra(t, a.Extra, b.Extra) {
		return false
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if !sameExtra(t, x.Extra, y.Extra) {
			return false
		}
		x.Extra, y.Extra = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func sameExtra(t testing.TB, a, b map[string]json.RawMessage) bool {
	t.Helper()
	if !slices.Equal(slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))) {
		return false
	}
	for k := range a {
		if !reflect.DeepEqual(generic(t, a[k]), generic(t, b[k])) {
			return false
		}
	}
	return true
}

// dirNames lists dir, to check that nothing was left behind.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
