package jsonfile_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/p2prc/p2prc/registry/jsonfile"
)

type state struct {
	Names []string `json:"names"`
	Count int      `json:"count"`
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	want := state{Names: []string{"a", "b"}, Count: 2}
	if err := jsonfile.Save(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	var got state
	exists, err := jsonfile.Load(path, &got)
	if err != nil || !exists {
		t.Fatalf("Load = %v, %v; want true, nil", exists, err)
	}
	if got.Count != 2 || strings.Join(got.Names, ",") != "a,b" {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	raw, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(raw), "}\n") || !strings.Contains(string(raw), "\n  \"count\": 2") {
		t.Fatalf("file is not 2-space indented with a trailing newline:\n%s", raw)
	}
}

func TestMissingAndEmptyAreEmptyState(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, nil, 0o600)
	blank := filepath.Join(dir, "blank.json")
	os.WriteFile(blank, []byte(" \n"), 0o600)
	for _, path := range []string{filepath.Join(dir, "missing.json"), empty, blank} {
		v := state{Count: 7}
		exists, err := jsonfile.Load(path, &v)
		if exists || err != nil {
			t.Errorf("Load(%s) = %v, %v; want false, nil", filepath.Base(path), exists, err)
		}
		if v.Count != 7 {
			t.Errorf("Load(%s) changed v to %+v", filepath.Base(path), v)
		}
	}
}

func TestCorruptNamesFileAndLine(t *testing.T) {
	tests := []struct {
		name, body, where string
	}{
		{"syntax", "{\n  \"names\": [\"a\"],\n  \"count\": }\n", "line 3, column 12"},
		{"type", "{\n  \"names\": [\"a\"],\n\n  \"count\": \"x\"\n}\n", "line 4, column 14"},
		{"trailing", "{}\n{}", "line 2, column 1"},
		{"truncated", "{\"names\": [", "line 1, column 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "reverse_proxy_mapping.json")
			os.WriteFile(path, []byte(tt.body), 0o600)
			var v state
			exists, err := jsonfile.Load(path, &v)
			if !exists || !errors.Is(err, jsonfile.ErrCorrupt) {
				t.Fatalf("Load = %v, %v; want true and ErrCorrupt", exists, err)
			}
			msg := err.Error()
			for _, want := range []string{path, tt.where, "fix or move the file away"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
			raw, _ := os.ReadFile(path)
			if string(raw) != tt.body {
				t.Errorf("Load changed the corrupt file")
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.json")
	f, _ := os.Create(path)
	f.Truncate(jsonfile.MaxSize + 1)
	f.Close()
	var v state
	_, err := jsonfile.Load(path, &v)
	if !errors.Is(err, jsonfile.ErrCorrupt) || !strings.Contains(err.Error(), "64 MiB") {
		t.Fatalf("Load of an oversized file = %v; want ErrCorrupt naming the 64 MiB cap", err)
	}
}

type checked struct{ OK bool }

func (c checked) Validate() error {
	if !c.OK {
		return errors.New("not ok")
	}
	return nil
}

func TestValidatorFailureIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.json")
	os.WriteFile(path, []byte(`{"OK": false}`), 0o600)
	var v checked
	_, err := jsonfile.Load(path, &v)
	if !errors.Is(err, jsonfile.ErrCorrupt) || !strings.Contains(err.Error(), "not ok") {
		t.Fatalf("Load = %v; want ErrCorrupt carrying the Validate error", err)
	}
}

func TestSyntaxErrorStillReachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.json")
	os.WriteFile(path, []byte(`{`), 0o600)
	var v state
	_, err := jsonfile.Load(path, &v)
	var syntax *json.SyntaxError
	if !errors.As(err, &syntax) {
		t.Fatalf("errors.As(%v, *json.SyntaxError) = false", err)
	}
}

func TestSaveLeavesNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := jsonfile.Save(path, state{Count: 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := jsonfile.Save(path, make(chan int), 0o600); err == nil {
		t.Fatal("Save of a channel succeeded")
	}
	if err := jsonfile.Save(path, map[string]any{"f": func() {}}, 0o600); err == nil {
		t.Fatal("Save of a func succeeded")
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatalf("failed Save changed the file:\n%s", after)
	}
	// A save that fails after writing its temporary file (the rename onto
	// a directory fails) removes it too.
	if err := os.Mkdir(filepath.Join(dir, "taken"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "taken", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := jsonfile.Save(filepath.Join(dir, "taken"), state{}, 0o600); err == nil {
		t.Fatal("Save onto a directory succeeded")
	}
	os.RemoveAll(filepath.Join(dir, "taken"))
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v; want only state.json", names)
	}
}

func TestSaveIntoMissingDirFailsCleanly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "state.json")
	if err := jsonfile.Save(path, state{}, 0o600); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Save into a missing directory = %v; want an error naming %s", err, path)
	}
}

func TestSaveHonoursPerm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for _, perm := range []os.FileMode{0o644, 0o600} {
		if err := jsonfile.Save(path, state{}, perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("mode = %v, want %v", fi.Mode().Perm(), perm)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"names":["a"],"count":1}`))
	f.Add([]byte("{\n\"count\": }"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "f.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var v state
		exists, err := jsonfile.Load(path, &v)
		if err != nil && !errors.Is(err, jsonfile.ErrCorrupt) {
			t.Fatalf("Load error %v does not wrap ErrCorrupt", err)
		}
		if err != nil || !exists {
			return
		}
		if err := jsonfile.Save(path, v, 0o600); err != nil {
			t.Fatal(err)
		}
		var again state
		if _, err := jsonfile.Load(path, &again); err != nil {
			t.Fatal(err)
		}
		if strings.Join(v.Names, "\x00") != strings.Join(again.Names, "\x00") || v.Count != again.Count {
			t.Fatalf("round trip: %+v != %+v", v, again)
		}
	})
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.token")
	for _, body := range []string{"first\n", "second\n"} {
		if err := jsonfile.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if raw, _ := os.ReadFile(path); string(raw) != body {
			t.Fatalf("file holds %q, want %q", raw, body)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(entries))
	}
}

// A temporary file left by a process killed mid-write is removed by a later
// save once it is old; a fresh one (a save in progress) is left alone.
func TestSaveRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	stale := filepath.Join(dir, ".f.json.tmp-111")
	fresh := filepath.Join(dir, ".f.json.tmp-222")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	if err := jsonfile.Save(path, map[string]int{"a": 1}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
}

// A state file that is a symbolic link (say P2PRC's IP table, kept
// elsewhere and linked into the state dir) stays a link: the file it points
// to gets the new contents. A dangling link names the file to create; a
// loop of links is refused with the file left alone.
func TestWriteFileFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	real := filepath.Join(elsewhere, "ip_table.json")
	os.WriteFile(real, []byte("old\n"), 0o600)
	link := filepath.Join(dir, "ip_table.json")
	if err := os.Symlink("elsewhere/ip_table.json", link); err != nil {
		if runtime.GOOS == "windows" {
			t.Skipf("symbolic links need a privilege here: %v", err)
		}
		t.Fatal(err)
	}
	if err := jsonfile.WriteFile(link, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced by a file (%v)", err)
	}
	if got, _ := os.ReadFile(real); string(got) != "new\n" {
		t.Errorf("the linked file holds %q, want the new contents", got)
	}

	dangling := filepath.Join(dir, "mappings.json")
	os.Symlink(filepath.Join(elsewhere, "mappings.json"), dangling)
	if err := jsonfile.WriteFile(dangling, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(elsewhere, "mappings.json")); string(got) != "{}\n" {
		t.Errorf("through a dangling link: %q, want the file created where it points", got)
	}

	loop := filepath.Join(dir, "loop.json")
	os.Symlink("loop.json", loop)
	if err := jsonfile.WriteFile(loop, []byte("x"), 0o600); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Errorf("a link to itself: %v, want an error naming a loop", err)
	}
	if fi, err := os.Lstat(loop); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the looping link was replaced (%v)", err)
	}
}
