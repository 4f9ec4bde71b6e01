package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTokenCreatedOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), TokenFileName)
	tok, created, err := LoadOrCreateToken(path)
	if err != nil || !created || len(tok) != 2*tokenBytes {
		t.Fatalf("first load: %q %v %v", tok, created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateToken(path)
	if err != nil || created || !bytes.Equal(again, tok) {
		t.Fatalf("second load gave another token or error: %v", err)
	}
}

func TestReadTokenRefusesEmptyAndHuge(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := ReadToken(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty token file: %v", err)
	}
	huge := filepath.Join(dir, "huge")
	os.WriteFile(huge, bytes.Repeat([]byte("x"), maxTokenFile+1), 0o600)
	if _, err := ReadToken(huge); err == nil {
		t.Error("huge token file accepted")
	}
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte("  s3cret\n"), 0o600)
	if tok, err := ReadToken(ok); err != nil || string(tok) != "s3cret" {
		t.Errorf("token %q, %v", tok, err)
	}
}

func TestKeyCreatedOnceAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), KeyFileName)
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first load: %v %v", created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second load: another key or error: %v", err)
	}
}

func TestCorruptKeyIsAnErrorAndKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), KeyFileName)
	os.WriteFile(path, []byte("not a key"), 0o600)
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt key: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "not a key" {
		t.Fatal("a corrupt key file was overwritten")
	}
}
